package stats

import (
	"math"
	"math/bits"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Batcher layout. The per-batch histograms use HdrHistogram's own layout
// for NewHistogram (1 ns to 100 s, 3 significant digits): values below 2048
// ns are exact, and above that each power of two holds 1024 bins, so a bin
// is at most 1/1024 (0.1%) of its value wide. A bin's index is the same as
// HdrHistogram's counts index, which is what lets a batch quantile and
// Hist's ValueAtQuantile agree to the nanosecond.
//
// Where HdrHistogram keeps one flat []int64 of ~28,700 counts (230 KB),
// a batch keeps 28 blocks of 1024 uint32 counts, one block per power of two
// above 1 µs, allocated only when a value lands in it (4 KB each). Latencies
// of a run span a dozen powers of two at most, so a batch costs ~50 KB, and
// even 65 batches with every block in use stay at 7.3 MiB.
const (
	blockBits = 10
	blockLen  = 1 << blockBits // bins per block
	numBlocks = 28             // blocks 0..27 reach 2^37 ns > maxNs
	maxNs     = 100e9          // NewHistogram's highest trackable value

	// lowBatches is K: the Batcher keeps between K and 2K full batches,
	// and merges neighbours pairwise when there are 2K.
	lowBatches = 32
)

// block holds the counts of 1024 neighbouring bins. uint32 counts are exact
// up to 4·10⁹ samples in one bin of one batch; a batch is 1/32 to 1/64 of
// the run, so that is more than 10¹¹ round trips.
type block [blockLen]uint32

// batch is one contiguous stretch of the stream.
type batch struct {
	n, sum int64
	tot    [numBlocks]int64 // samples in each block, to skip to a quantile
	blk    [numBlocks]*block
}

// Batcher accumulates a time-ordered stream of latencies (ns) for interval
// estimates of the mean and of quantiles that stay valid when the latencies
// are autocorrelated, in memory that does not grow with the stream's length.
//
// The stream is cut into contiguous batches of equal size. Batches start at
// one sample; when 64 (2K) batches are full, neighbours are merged pairwise
// into 32 batches of twice the size, so at any time there are 32 to 63 full
// batches, each 1/64 to 1/32 of the stream, plus a partial one filling up.
// Batches therefore grow with the run and come to span many correlation
// times of any stationary process, which makes their statistics nearly
// independent. Each batch keeps its count, its sum and a histogram at 0.1%
// resolution; nothing else is kept, so memory is bounded (7.3 MiB at most,
// ~3 MiB for latencies that span a factor of 1000) at any length.
//
// The estimators use the full batches only, grouping neighbours further
// when a batch is too short for its statistic or when the lag-1
// autocorrelation of the batch statistics exceeds 0.2; Interval.Batches
// and Interval.BatchSize say what was used. Every estimate is centred on
// the whole stream, partial batch included.
//
// A Batcher is not safe for concurrent use. Its zero value is not usable;
// call NewBatcher.
type Batcher struct {
	bs   [2*lowBatches + 1]batch // bs[:m] full, bs[m] filling
	m    int                     // full batches
	size int64                   // samples per full batch
	n    int64
	sum  int64
	hist *hdrhistogram.Histogram
	free []*block // blocks emptied by merges, for reuse

	// Scratch for the estimators, so that they allocate nothing.
	stat [2 * lowBatches]float64
	aux  [2 * lowBatches]float64
	acc  [blockLen]int64
}

// NewBatcher returns an empty Batcher.
func NewBatcher() *Batcher {
	return &Batcher{size: 1, hist: NewHistogram()}
}

// Add appends one latency in ns to the stream. Values are clamped to
// NewHistogram's range, 0 to 100 s. Add allocates only when a batch first
// touches a new power of two and no emptied block is free.
func (b *Batcher) Add(ns int64) {
	v := min(max(ns, 0), maxNs)
	_ = b.hist.RecordValue(v) // in range: cannot fail
	j, off := binOf(v)
	c := &b.bs[b.m]
	blk := c.blk[j]
	if blk == nil {
		blk = b.newBlock()
		c.blk[j] = blk
	}
	blk[off]++
	c.tot[j]++
	c.n++
	c.sum += v
	b.n++
	b.sum += v
	if c.n == b.size {
		b.m++
		if b.m == 2*lowBatches {
			b.merge()
		}
	}
}

// binOf returns the block and the bin within it that hold v (0 ≤ v < 2^37).
// Block 0 holds 0..1023 and block j ≥ 1 holds [2^(j+9), 2^(j+10)) in bins
// of 2^(j−1) ns, HdrHistogram's bucket j−1, upper half.
func binOf(v int64) (j, off int) {
	j = max(bits.Len64(uint64(v))-blockBits, 0)
	return j, int(v>>max(j-1, 0)) & (blockLen - 1)
}

// binHigh is the highest value in bin off of block j, which is what
// HdrHistogram's ValueAtQuantile reports for a sample in that bin.
func binHigh(j, off int) int64 {
	if j == 0 {
		return int64(off)
	}
	sh := uint(j - 1)
	return int64(blockLen+off)<<sh + 1<<sh - 1
}

func (b *Batcher) newBlock() *block {
	if n := len(b.free); n > 0 {
		blk := b.free[n-1]
		b.free = b.free[:n-1]
		return blk
	}
	return new(block)
}

// merge halves 2K full batches into K of twice the size. Slot i receives
// batches 2i and 2i+1; slot i is already empty by then (i ≤ 2i−1 for i ≥ 1).
func (b *Batcher) merge() {
	for i := 0; i < lowBatches; i++ {
		dst, src := &b.bs[2*i], &b.bs[2*i+1]
		for j, sb := range src.blk {
			if sb == nil {
				continue
			}
			if db := dst.blk[j]; db == nil {
				dst.blk[j] = sb
			} else {
				for k, c := range sb {
					db[k] += c
				}
				*sb = block{}
				b.free = append(b.free, sb)
			}
			dst.tot[j] += src.tot[j]
		}
		dst.n += src.n
		dst.sum += src.sum
		*src = batch{}
		if i > 0 {
			b.bs[i] = *dst
			*dst = batch{}
		}
	}
	b.m = lowBatches
	b.size *= 2
}

// Count is the number of latencies added.
func (b *Batcher) Count() int64 { return b.n }

// Hist is everything added, in one histogram from NewHistogram. It is the
// Batcher's own, kept up to date by Add: read it, do not modify it.
func (b *Batcher) Hist() *hdrhistogram.Histogram { return b.hist }

// Minimum batch sizes. A batch mean needs a few samples. A batch q-quantile needs quantileTail samples on its
// far side, i.e. 40/min(q, 1−q) in all: 80 for p50, 4000 for p99. Sectioning
// stays valid with fewer on iid and AR(1) data (99% coverage measured down
// to 5 beyond the p99), but latency tails come in bursts (a preemption or
// a GC pause slows several consecutive round trips), and a batch p99 then
// depends on how many bursts fell in the batch: with bursts of 10 slow
// round trips, batches with 10 or 20 beyond the p99 covered 93–96% at 99%
// and batches with 40 covered 97–98%. 40 still lets a p99 interval (10
// groups of ≥ 4000) appear from 40,960 round trips on.
const (
	minBatchSize = 10
	quantileTail = 40
)

// groupFor is the smallest power-of-two number of full batches per group
// that holds at least need samples.
func (b *Batcher) groupFor(need int64) int {
	g := 1
	for int64(g)*b.size < need {
		g *= 2
	}
	return g
}

// firstCount is the smallest stream length at which 10 groups of full
// batches hold need samples each. At size s > 1 there are 32 to 63 full
// batches, so the first length that works is s·max(10g, 32) at the first
// size s whose group count g (the least power of two with g·s ≥ need)
// allows 10g ≤ 63.
func firstCount(need int64) int64 {
	for s := int64(1); ; s *= 2 {
		g := int64(1)
		for g*s < need {
			g *= 2
		}
		if minBatches*g < 2*lowBatches {
			if s == 1 {
				return minBatches * g
			}
			return s * max(minBatches*g, lowBatches)
		}
	}
}

// Mean is the stream's mean (ns) with a batch-means Student-t interval at
// level conf (0 < conf < 1) over groups of full batches: groups of at
// least 10 samples, merged pairwise while the lag-1 autocorrelation of
// their means exceeds 0.2 and 20 or more groups remain. Low is never below
// 0. Batches == 0 means not enough round trips for an interval: fewer than
// 10 groups (before 160 round trips); Mean is then still the
// stream's mean (0 when empty).
func (b *Batcher) Mean(conf float64) Interval {
	if b.n == 0 {
		return Interval{}
	}
	iv := Interval{Mean: float64(b.sum) / float64(b.n)}
	g := b.groupFor(minBatchSize)
	k := b.m / g
	if k < minBatches {
		return iv
	}
	g, k = b.grouped(g, func(lo, hi int) float64 {
		var n, s int64
		for _, c := range b.bs[lo:hi] {
			n += c.n
			s += c.sum
		}
		return float64(s) / float64(n)
	})
	means := b.stat[:k]
	m := mean(means)
	var ss float64
	for _, v := range means {
		ss += (v - m) * (v - m)
	}
	h := tQuantile(conf, k-1) * math.Sqrt(ss/float64(k-1)/float64(k))
	iv.Low, iv.High = max(iv.Mean-h, 0), iv.Mean+h
	iv.Batches, iv.BatchSize = k, int(int64(g)*b.size)
	return iv
}

// Quantile is the stream's q-quantile (ns, 0 < q < 1) with an interval at
// level conf by sectioning (Nakayama 2014; Asmussen & Glynn §IV.5): the
// interval is centred on the whole stream's quantile θ̂, and its half-width
// is t(k−1)·S/√k with S² = Σ(θⱼ−θ̂)²/(k−1) over the quantiles θⱼ of k groups
// of contiguous full batches. Measuring the spread around θ̂ rather than
// around the mean of the θⱼ counts the small-batch bias of the θⱼ in the
// width instead of moving the centre by it. The groups hold at least
// 40/min(q, 1−q) samples each (80 for p50, 4000 for p99) and are merged
// pairwise while the lag-1 autocorrelation of their quantiles exceeds 0.2
// and 20 or more groups remain.
//
// Mean is θ̂ as Hist().ValueAtQuantile(100·q) reports it (the top of its
// 0.1% bin). Low is never below 0. Batches == 0 means not enough round
// trips for an interval: fewer than 10 groups (before 40,960 round trips
// for p99, 1280 for p50). Mean is then still θ̂ (0 when empty), and so it
// is for q outside (0, 1), which never gets an interval.
func (b *Batcher) Quantile(q, conf float64) Interval {
	if b.n == 0 {
		return Interval{}
	}
	center := float64(b.quantileOf(0, b.m+1, q))
	iv := Interval{Mean: center}
	if !(q > 0 && q < 1) {
		return iv
	}
	g := b.groupFor(max(minBatchSize, int64(math.Ceil(quantileTail/min(q, 1-q)))))
	k := b.m / g
	if k < minBatches {
		return iv
	}
	g, k = b.grouped(g, func(lo, hi int) float64 { return float64(b.quantileOf(lo, hi, q)) })
	var ss float64
	for _, v := range b.stat[:k] {
		ss += (v - center) * (v - center)
	}
	h := tQuantile(conf, k-1) * math.Sqrt(ss/float64(k-1)/float64(k))
	iv.Low, iv.High = max(center-h, 0), center+h
	iv.Batches, iv.BatchSize = k, int(int64(g)*b.size)
	return iv
}

// grouped fills b.stat with f over the k groups of g contiguous full
// batches, doubling g while the lag-1 autocorrelation of the group
// statistics exceeds maxLag1 and halving k would leave minBatches or more.
// It returns the group size and count used.
func (b *Batcher) grouped(g int, f func(lo, hi int) float64) (int, int) {
	for {
		k := b.m / g
		for i := 0; i < k; i++ {
			b.stat[i] = f(i*g, (i+1)*g)
		}
		if k/2 < minBatches || lag1(b.stat[:k]) <= maxLag1 {
			return g, k
		}
		g *= 2
	}
}

// quantileOf is the q-quantile of batches bs[lo:hi] together, by
// HdrHistogram's rule: the top of the bin holding the sample of rank
// ⌊q·n + ½⌋ (at least 1, at most n). It is 0 when they are empty.
func (b *Batcher) quantileOf(lo, hi int, q float64) int64 {
	bs := b.bs[lo:hi]
	var n int64
	for i := range bs {
		n += bs[i].n
	}
	if n == 0 {
		return 0
	}
	rank := hdrRank(q, n)
	var cum int64
	j := 0
	for ; j < numBlocks-1; j++ {
		var t int64
		for i := range bs {
			t += bs[i].tot[j]
		}
		if cum+t >= rank {
			break
		}
		cum += t
	}
	if len(bs) == 1 {
		// One batch: read its block directly.
		blk := bs[0].blk[j]
		for off, c := range blk {
			if cum += int64(c); cum >= rank {
				return binHigh(j, off)
			}
		}
		return binHigh(j, blockLen-1)
	}
	acc := &b.acc
	*acc = [blockLen]int64{}
	for i := range bs {
		if blk := bs[i].blk[j]; blk != nil {
			for off, c := range blk {
				acc[off] += int64(c)
			}
		}
	}
	for off, c := range acc {
		if cum += c; cum >= rank {
			return binHigh(j, off)
		}
	}
	return binHigh(j, blockLen-1)
}

// hdrRank is the rank HdrHistogram's ValueAtQuantile reads for quantile q
// of n samples, computed the same way so that the two agree exactly.
func hdrRank(q float64, n int64) int64 {
	p := min(q*100, 100)
	r := (p/100)*float64(n) + 0.5
	if !(r >= 1) {
		return 1
	}
	if r >= float64(n) {
		return n
	}
	return int64(r)
}
