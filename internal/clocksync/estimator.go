package clocksync

import (
	"math"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Defaults of Options; each field's comment says what it is.
const (
	DefaultBucketNs         = 50_000_000    // 50 ms
	DefaultWindowNs         = 2_000_000_000 // ±2 s
	DefaultSpanNs           = 250_000_000   // ±250 ms
	DefaultMaxDriftNsPerS   = 100_000       // 100 µs/s
	DefaultDriftSlackNsPerS = 20_000        // 20 µs/s
)

// Options tune an Estimator. The zero value is the defaults.
type Options struct {
	// BucketNs is the width of a bucket of samples, on the controller's
	// clock: each keeps its least u and least v, and when they came.
	// Narrower buckets follow a slewing clock more closely but hold
	// fewer samples each. Default 50 ms; kept within [1 ms, 1 s].
	BucketNs int64
	// WindowNs is the half-width of the window over which the drift is
	// fitted around a time. Default 2 s.
	WindowNs int64
	// SpanNs is the half-width of the window whose bounds are carried
	// along the fitted drift to a time: wider finds tighter bounds but
	// carries them further, through more of the drift's uncertainty.
	// Default 250 ms.
	SpanNs int64
	// LeadNs is how far past a time samples of both directions must
	// reach before Ready says yes there. Default SpanNs.
	LeadNs int64
	// MaxDriftNsPerS is the largest drift expected between the two
	// clocks: the slope's uncertainty before a fit exists. Default
	// 100 µs/s (Huygens saw server clocks drift 5–30 µs/s apart).
	MaxDriftNsPerS float64
	// DriftSlackNsPerS is how far, beyond what the fit itself can
	// tell, the clocks' true relative rate may stray from the fitted
	// slope within a window. Default 20 µs/s.
	DriftSlackNsPerS float64
	// KeepBuckets is how many buckets are held; older ones are folded
	// into Report's summary and dropped. At least what two windows and
	// spans cover plus a few seconds for samples that come late;
	// default that, and at most 65536.
	KeepBuckets int
}

// withDefaults fills zero fields and clamps the rest to what works.
func (o Options) withDefaults() Options {
	if o.BucketNs <= 0 {
		o.BucketNs = DefaultBucketNs
	}
	o.BucketNs = min(max(o.BucketNs, 1_000_000), 1_000_000_000)
	if o.WindowNs <= 0 {
		o.WindowNs = DefaultWindowNs
	}
	o.WindowNs = min(max(o.WindowNs, 2*o.BucketNs), 600_000_000_000)
	if o.SpanNs <= 0 {
		o.SpanNs = DefaultSpanNs
	}
	o.SpanNs = min(max(o.SpanNs, o.BucketNs), o.WindowNs)
	if o.LeadNs <= 0 {
		o.LeadNs = o.SpanNs
	}
	if !(o.MaxDriftNsPerS > 0) || math.IsInf(o.MaxDriftNsPerS, 0) {
		o.MaxDriftNsPerS = DefaultMaxDriftNsPerS
	}
	if !(o.DriftSlackNsPerS > 0) || math.IsInf(o.DriftSlackNsPerS, 0) {
		o.DriftSlackNsPerS = DefaultDriftSlackNsPerS
	}
	need := int(2*(o.WindowNs+o.SpanNs)/o.BucketNs) + int(5_000_000_000/o.BucketNs)
	o.KeepBuckets = min(max(o.KeepBuckets, need), 1<<16)
	return o
}

// maxAbs bounds a sample's one-way value: clocks further apart than
// this (36 years) are garbage, and the bound keeps every sum of two
// values within int64.
const maxAbs = 1 << 60

// minFitPoints is the fewest buckets a drift is fitted from.
const minFitPoints = 6

// weightFloor keeps a bucket whose bounds nearly meet from taking all
// the drift fit's weight: its half-width counts as at least this.
const weightFloor = 1000

// bucket holds the least u and least v of the samples whose controller
// time falls in it, and when those came. Only the least matter: every
// other sample's bound is looser, short of the drift within the bucket.
type bucket struct {
	idx          int64 // which bucket: (t − origin) / BucketNs
	minU, minV   int64
	tU, tV       int64 // controller times of minU and minV
	nU, nV       int32
	pingU, pingV bool // the least came from a ping
}

func (b *bucket) both() bool { return b.nU > 0 && b.nV > 0 }

// point is a bucket with both directions as one point of the drift fit:
// the middle of its bounds, at the middle of their times, and its
// half-width. With the bounds at times tU and tV, θ's drift between them
// moves both by the same amount at their middle, so the point needs no
// slope.
func (b *bucket) point() (t, theta, half int64) {
	t = b.tU + (b.tV-b.tU)/2
	theta = b.minU - (b.minU+b.minV)/2
	half = max((b.minU+b.minV)/2, 0)
	return
}

// Estimator fits θ(t), the agent's clock minus the controller's, from
// one-way samples in both directions: the lower envelope of the samples,
// carried along a drift fitted over a sliding window.
//
// Why not the fitted line itself as the estimate: a least-squares line
// through the buckets' midpoints inherits the paths' asymmetry all the
// same, and its error has no bound a reader can trust. The envelope does:
// θ(t) ≤ u_i + the integral of θ's rate from t_i to t, and θ(t) ≥ −v_j +
// the same from t_j, so with the rate known to lie in [r_lo, r_hi] every
// bound carries to t, at r_hi·(t − t_i) for an upper bound carried
// forward, at r_lo backward (and the other way round for a lower one).
// The interval at t is the intersection of the bounds of the buckets
// within SpanNs; the estimate is the middle of the same bounds carried
// at the fitted rate alone, kept within the interval (eval says why not
// the interval's middle). The rate comes from a
// weighted least-squares fit of the buckets' midpoints within WindowNs
// (weights: tricube in time, so a slew is followed, and 1/half-width²,
// so tight buckets count most); [r_lo, r_hi] spans that fit's slope and
// the slopes of the window's two halves apart (which part where the rate
// changed), widened by the slack and three standard errors. Too few
// points for a fit, or a time beyond the buckets kept, and the range is
// every rate up to MaxDriftNsPerS. The linear program of the lower
// envelope (Moon et al.) would find a slope too, but only one that fits
// all bounds in the window at once, which a slewed clock does not have.
//
// An Estimator is not safe for concurrent use. Memory is bounded:
// KeepBuckets buckets and a fixed summary.
type Estimator struct {
	o      Options
	ring   []bucket // bucket k at ring[k mod len]; live if idx == k and newest−len < k ≤ newest
	origin int64    // controller time of bucket 0's start
	newest int64    // highest bucket index seen
	start  bool     // a sample was placed (origin and newest are set)

	hasU, hasV   bool
	maxTU, maxTV int64  // latest controller time of a sample, per direction
	gen          uint64 // bumps when a fit point appears or goes
	fit          slopeFit
	lastTheta    int64 // the last estimate: ToController's first guess
	haveLast     bool

	sum summary
}

// slopeFit is the drift fitted around one bucket, cached until the
// points change.
type slopeFit struct {
	c   int64
	gen uint64
	ok  bool    // cached
	b   float64 // ns per s
	r   rates
}

// summary is what Report needs of buckets already dropped.
type summary struct {
	samplesAB, samplesBA, pings, dropped int64

	first      int64 // controller time of the first sample
	haveFirst  bool
	offFirst   int64 // θ there, fixed when the first bucket is dropped
	firstFixed bool

	points       int64 // fit points (buckets with both directions) dropped
	pingBound    int64 // of which one bound or both came from a ping
	inconsistent int64
	halves       *hdrhistogram.Histogram // half-width at each point, ns
	maxHalf      int64
	resSq        float64 // Σ (midpoint − estimate)²
	line         lineSums
	slopeMin     float64
	slopeMax     float64
}

// lineSums accumulates an unweighted least-squares line through the
// estimates at each point: the run's mean drift. x is seconds from the
// first sample, y ns from the first point's estimate.
type lineSums struct {
	n                  float64 // the sum of the weights
	points             int
	y0                 int64
	sx, sy, sxx, sxy   float64
	haveY0, haveSlopes bool
}

// New returns an Estimator with o's settings (zero fields: defaults).
func New(o Options) *Estimator {
	o = o.withDefaults()
	e := &Estimator{o: o, ring: make([]bucket, o.KeepBuckets)}
	e.sum.halves = hdrhistogram.New(1, 1<<40, 2)
	return e
}

// AddAB adds a sample sent at sendA on the controller's clock and
// received at recvB on the agent's: u = recvB − sendA ≥ θ.
func (e *Estimator) AddAB(sendA, recvB int64) { e.addU(sendA, recvB, false) }

// AddBA adds a sample sent at sendB on the agent's clock and received at
// recvA on the controller's: v = recvA − sendB ≥ −θ.
func (e *Estimator) AddBA(sendB, recvA int64) { e.addV(sendB, recvA, false) }

// AddExchange adds a ping: sent at t1A, answered at t2B (the agent's
// clock, read while handling it), its answer received at t3A. An
// exchange whose answer came before its question is dropped.
func (e *Estimator) AddExchange(t1A, t2B, t3A int64) {
	if t3A < t1A {
		e.sum.dropped += 2
		return
	}
	e.sum.pings++
	e.addU(t1A, t2B, true)
	e.addV(t2B, t3A, true)
}

func (e *Estimator) addU(sendA, recvB int64, ping bool) {
	u, ok := sub(recvB, sendA)
	b := e.place(sendA)
	if !ok || u > maxAbs || u < -maxAbs || b == nil {
		e.sum.dropped++
		return
	}
	e.sum.samplesAB++
	if b.nU == 0 || u < b.minU {
		b.minU, b.tU, b.pingU = u, sendA, ping
	}
	if b.nU == 0 && b.nV > 0 {
		e.gen++
	}
	b.nU++
	if !e.hasU || sendA > e.maxTU {
		e.maxTU = sendA
	}
	e.hasU = true
}

func (e *Estimator) addV(sendB, recvA int64, ping bool) {
	v, ok := sub(recvA, sendB)
	b := e.place(recvA)
	if !ok || v > maxAbs || v < -maxAbs || b == nil {
		e.sum.dropped++
		return
	}
	e.sum.samplesBA++
	if b.nV == 0 || v < b.minV {
		b.minV, b.tV, b.pingV = v, recvA, ping
	}
	if b.nV == 0 && b.nU > 0 {
		e.gen++
	}
	b.nV++
	if !e.hasV || recvA > e.maxTV {
		e.maxTV = recvA
	}
	e.hasV = true
}

// place returns the bucket of controller time t, making room for it:
// nil if it is older than every bucket kept, or out of reach of int64.
func (e *Estimator) place(t int64) *bucket {
	if !e.start {
		e.start = true
		e.origin = t
		e.newest = 0
		e.sum.first, e.sum.haveFirst = t, true
		for i := range e.ring {
			e.ring[i] = bucket{idx: math.MinInt64}
		}
	}
	d, ok := sub(t, e.origin)
	if !ok {
		return nil
	}
	k := floorDiv(d, e.o.BucketNs)
	n := int64(len(e.ring))
	if k <= e.newest-n {
		return nil
	}
	if k > e.newest {
		e.advance(k)
	}
	b := &e.ring[mod(k, n)]
	if b.idx != k {
		*b = bucket{idx: k}
	}
	return b
}

// advance makes k the newest bucket, folding the buckets whose slots it
// takes (indices newest−len+1 … k−len, those that exist) into the
// summary, oldest first.
func (e *Estimator) advance(k int64) {
	n := int64(len(e.ring))
	for j := e.newest - n + 1; j <= min(e.newest, k-n); j++ {
		e.retire(j)
	}
	e.newest = k
}

// retire folds bucket i, if live, into the summary and frees its slot.
func (e *Estimator) retire(i int64) {
	n := int64(len(e.ring))
	b := &e.ring[mod(i, n)]
	if b.idx != i || (b.nU == 0 && b.nV == 0) {
		return
	}
	if !e.sum.firstFixed {
		if est, ok := e.eval(e.sum.first); ok {
			e.sum.offFirst, e.sum.firstFixed = est.theta, true
		}
	}
	if b.both() {
		e.fold(&e.sum, b)
		e.gen++
	}
	b.idx = math.MinInt64
}

// fold adds bucket b, a fit point, to summary s.
func (e *Estimator) fold(s *summary, b *bucket) {
	t, mid, _ := b.point()
	est, ok := e.eval(t)
	if !ok {
		return
	}
	s.points++
	if b.pingU || b.pingV {
		s.pingBound++
	}
	if !est.consistent {
		s.inconsistent++
	}
	_ = s.halves.RecordValue(min(max(est.half, 1), 1<<40))
	s.maxHalf = max(s.maxHalf, est.half)
	r := float64(mid - est.theta)
	s.resSq += r * r
	if !s.line.haveSlopes {
		s.slopeMin, s.slopeMax, s.line.haveSlopes = est.slope, est.slope, true
	}
	s.slopeMin, s.slopeMax = min(s.slopeMin, est.slope), max(s.slopeMax, est.slope)
	if !s.line.haveY0 {
		s.line.y0, s.line.haveY0 = est.theta, true
	}
	// Weighted by 1/half-width², as the drift fit is: a bucket bounded
	// only by pings (before the load, or a stretch without traffic) is
	// known to tens of µs where a segment-bound one is known to one, and
	// must not tilt the run's line.
	dt, _ := sub(t, s.first)
	x, y := float64(dt)/1e9, float64(est.theta-s.line.y0)
	hw := float64(max(est.half, weightFloor))
	w := 1 / (hw * hw)
	s.line.n += w
	s.line.sx += w * x
	s.line.sy += w * y
	s.line.sxx += w * x * x
	s.line.sxy += w * x * y
	s.line.points++
}

// estimate is θ at one time, the half-width of an interval around it
// that holds the bounds there, and the fitted slope.
type estimate struct {
	theta, half int64
	slope       float64
	consistent  bool // the bounds did not cross
}

// At is θ at controller time tA (agent − controller, ns) and the
// half-width of the interval around it that holds θ as long as every
// sample was a true one-way time and the rate strayed no further than
// the fit allows; ok is false before samples of both directions. Times
// outside the buckets kept are answered from the nearest, with the
// interval growing with the distance.
func (e *Estimator) At(tA int64) (theta, halfWidth int64, ok bool) {
	est, ok := e.eval(tA)
	if !ok {
		return 0, 0, false
	}
	e.lastTheta, e.haveLast = est.theta, true
	return est.theta, est.half, true
}

// ToController maps tB, a time on the agent's clock, onto the
// controller's: the t with t + θ(t) = tB. θ changes by microseconds per
// second, so a guess of t off by Δ moves θ(t) by a millionth of Δ: from
// the last estimate, one step lands within a nanosecond unless tB is far
// from the last time asked, and a second step then does.
func (e *Estimator) ToController(tB int64) (tA int64, ok bool) {
	guess := e.lastTheta
	if !e.haveLast {
		est, ok := e.eval(e.origin + e.newest*e.o.BucketNs)
		if !ok {
			return 0, false
		}
		guess = est.theta
	}
	t := satSub(tB, guess)
	for range 4 {
		est, ok := e.eval(t)
		if !ok {
			return 0, false
		}
		e.lastTheta, e.haveLast = est.theta, true
		next := satSub(tB, est.theta)
		if d := next - t; d >= -1 && d <= 1 {
			return next, true
		}
		t = next
	}
	return t, true
}

// Ready says whether samples of both directions reach LeadNs past tA, so
// that the bounds around tA are in and At there will move little as more
// samples come: a later sample near tA can only narrow the interval
// (one more bound in the intersection), short of a refitted slope. The
// caller holds an agent's events until Ready, and maps what is left at
// the end of a run regardless (At's interval says how well).
func (e *Estimator) Ready(tA int64) bool {
	if !e.hasU || !e.hasV {
		return false
	}
	need := satAdd(tA, e.o.LeadNs)
	return e.maxTU >= need && e.maxTV >= need
}

// eval computes θ at t: the bounds of the buckets within SpanNs of t (or,
// if that finds none of one direction, of every bucket kept), each
// carried to t along the fitted slope with its uncertainty.
func (e *Estimator) eval(t int64) (estimate, bool) {
	if !e.hasU || !e.hasV {
		return estimate{}, false
	}
	n := int64(len(e.ring))
	oldest := e.newest - n + 1
	c := e.clampIndex(t, oldest)
	b, r := e.slope(c)
	if lo, hi := e.origin+oldest*e.o.BucketNs, e.origin+(e.newest+1)*e.o.BucketNs; t < lo || t >= hi {
		// Beyond the buckets kept the fit says nothing: the rate may
		// be anything up to the largest drift expected.
		r = r.widen(e.o.MaxDriftNsPerS)
	}
	span := e.o.SpanNs / e.o.BucketNs
	from, to := max(c-span, oldest), min(c+span, e.newest)
	bd, ok := e.bounds(t, from, to, r, b)
	if !ok {
		from, to = oldest, e.newest
		if bd, ok = e.bounds(t, from, to, r, b); !ok {
			return estimate{}, false
		}
	}
	lo, hi := bd.lo, bd.hi
	est := estimate{slope: b, consistent: lo <= hi}
	if lo > hi {
		// Bounds that cross prove that the rate strayed further from
		// the fit than allowed (a slew sharper than the window follows)
		// or that a sample was no true one-way time. Carry them again
		// allowing any rate up to the largest drift expected; if they
		// still cross, the interval spans the crossing.
		wide, _ := e.bounds(t, from, to, r.widen(e.o.MaxDriftNsPerS), b)
		lo, hi = min(wide.lo, wide.hi), max(wide.lo, wide.hi)
	}
	// The estimate is the middle of the bounds carried along the fitted
	// drift itself, within the interval; the half-width reaches the
	// interval's farther end. The interval's own middle would move at the
	// mean of its range's two ends, which are not the fit's: past the
	// last tight bounds (a sampled watch's window ending, pings alone
	// after it) one half of the fitting window holds only the pings'
	// loose, lopsided points, its slope widens the range on one side
	// only, and the middle drifted by microseconds within 30 ms.
	est.theta = min(max(bd.pLo+(bd.pHi-bd.pLo)/2, lo), hi)
	est.half = max(hi-est.theta, est.theta-lo)
	return est, true
}

// clampIndex is t's bucket index, within the buckets kept.
func (e *Estimator) clampIndex(t, oldest int64) int64 {
	d, ok := sub(t, e.origin)
	if !ok {
		if t < e.origin {
			return oldest
		}
		return e.newest
	}
	return min(max(floorDiv(d, e.o.BucketNs), oldest), e.newest)
}

// carried is what bounds finds at a time: the interval (lo, hi) with
// the bounds carried at the rates allowed, and (pLo, pHi) with them
// carried at the fitted drift alone (which may cross).
type carried struct{ lo, hi, pLo, pHi int64 }

// bounds intersects the bounds of buckets from … to carried to t: hi
// from the least u's, lo from the least v's; at the rates r, and at the
// fitted drift b. ok is false unless both directions have a bound.
func (e *Estimator) bounds(t, from, to int64, r rates, b float64) (c carried, ok bool) {
	n := int64(len(e.ring))
	okLo, okHi := false, false
	for i := from; i <= to; i++ {
		k := &e.ring[mod(i, n)]
		if k.idx != i {
			continue
		}
		if k.nU > 0 {
			dt := satSub(t, k.tU)
			cr, cb := r.carry(dt, true, b)
			h, p := k.minU+cr, k.minU+cb
			if !okHi || h < c.hi {
				c.hi = h
			}
			if !okHi || p < c.pHi {
				c.pHi = p
			}
			okHi = true
		}
		if k.nV > 0 {
			dt := satSub(t, k.tV)
			cr, cb := r.carry(dt, false, b)
			l, p := -k.minV+cr, -k.minV+cb
			if !okLo || l > c.lo {
				c.lo = l
			}
			if !okLo || p > c.pLo {
				c.pLo = p
			}
			okLo = true
		}
	}
	return c, okLo && okHi
}

// rates is the range θ's rate of change may take (ns per s) near a time.
type rates struct{ lo, hi float64 }

// widen makes r hold every rate up to ±m.
func (r rates) widen(m float64) rates { return rates{min(r.lo, -m), max(r.hi, m)} }

// carry is how far θ may move over dt ns at the rates r (the most for
// an upper bound, the least for a lower one), and how far it moves at
// the fitted rate b: eval carries every bound both ways.
func (r rates) carry(dt int64, upper bool, b float64) (atRange, atFit int64) {
	s := float64(dt) / 1e9
	m := r.lo
	if (s > 0) == upper {
		m = r.hi
	}
	return clampRound(m * s), clampRound(b * s)
}

// clampRound rounds c to ns within ±2⁶¹, so that adding it to a sample
// cannot overflow.
func clampRound(c float64) int64 {
	const lim = 1 << 61
	if !(c > -lim) {
		return -lim
	}
	if !(c < lim) {
		return lim
	}
	return int64(math.Round(c))
}

// slope is the drift (ns per s) fitted around bucket c and the range
// the true rate may take there, cached while the points stay.
func (e *Estimator) slope(c int64) (b float64, r rates) {
	if e.fit.ok && e.fit.c == c && e.fit.gen == e.gen {
		return e.fit.b, e.fit.r
	}
	b, r = e.fitSlope(c)
	e.fit = slopeFit{c: c, gen: e.gen, ok: true, b: b, r: r}
	return b, r
}

// wls accumulates a weighted least-squares line.
type wls struct {
	n                         int
	s0, sx, sy, sxx, sxy, syy float64
	xmin, xmax                float64
}

func (w *wls) add(x, y, wt float64) {
	if w.n == 0 || x < w.xmin {
		w.xmin = x
	}
	if w.n == 0 || x > w.xmax {
		w.xmax = x
	}
	w.n++
	w.s0 += wt
	w.sx += wt * x
	w.sy += wt * y
	w.sxx += wt * x * x
	w.sxy += wt * x * y
	w.syy += wt * y * y
}

// slope is the fitted slope and its variance; ok false with fewer than
// three points or no spread in x.
func (w *wls) slope() (b, v float64, ok bool) {
	if w.n < 3 || !(w.s0 > 0) {
		return 0, 0, false
	}
	sxx := w.sxx - w.sx*w.sx/w.s0
	sxy := w.sxy - w.sx*w.sy/w.s0
	syy := w.syy - w.sy*w.sy/w.s0
	if !(sxx > 1e-12*w.sxx) || !(sxx > 0) {
		return 0, 0, false
	}
	b = sxy / sxx
	rss := max(syy-b*sxy, 0)
	v = rss / float64(w.n-2) / sxx
	if math.IsNaN(b) || math.IsInf(b, 0) || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, 0, false
	}
	return b, v, true
}

// fitSlope fits the drift over the points within WindowNs of bucket c's
// middle, and over each half of that window apart. The true rate near c
// is taken to lie between the least and the greatest of the three
// slopes, widened by the slack and three standard errors of the whole
// window's: a rate that changed within the window (a slew) parts the
// halves, and the range grows to hold both rates.
func (e *Estimator) fitSlope(c int64) (float64, rates) {
	n := int64(len(e.ring))
	w := e.o.WindowNs / e.o.BucketNs
	tc := e.origin + c*e.o.BucketNs + e.o.BucketNs/2
	win := float64(e.o.WindowNs) + float64(e.o.BucketNs)
	var all, left, right wls
	var ref int64
	haveRef := false
	for i := max(c-w, e.newest-n+1); i <= min(c+w, e.newest); i++ {
		k := &e.ring[mod(i, n)]
		if k.idx != i || !k.both() {
			continue
		}
		t, mid, half := k.point()
		if !haveRef {
			ref, haveRef = mid, true
		}
		dt := float64(satSub(t, tc))
		q := 1 - math.Pow(math.Min(math.Abs(dt)/win, 1), 3)
		h := float64(half) + weightFloor
		wt := q * q * q / (h * h)
		if !(wt > 0) {
			continue
		}
		x, y := dt/1e9, float64(mid-ref)
		all.add(x, y, wt)
		if dt < 0 {
			left.add(x, y, wt)
		} else {
			right.add(x, y, wt)
		}
	}
	// Too few points, or too short a stretch of them (the start of a
	// run, a quiet one), and the fit is noise: any rate up to the
	// largest drift expected.
	m := e.o.MaxDriftNsPerS
	b, v, ok := all.slope()
	if !ok || all.n < minFitPoints || all.xmax-all.xmin < float64(e.o.WindowNs)/2e9 || math.Abs(b) > 20*m {
		return 0, rates{-m, m}
	}
	r := rates{b, b}
	for _, h := range []*wls{&left, &right} {
		if bh, _, ok := h.slope(); ok && math.Abs(bh) <= 20*m {
			r = rates{min(r.lo, bh), max(r.hi, bh)}
		}
	}
	// Three standard errors, more with few points (a rough stand-in
	// for Student's t at the 0.1% level).
	d := e.o.DriftSlackNsPerS + (3+12/float64(all.n-2))*math.Sqrt(v)
	return b, rates{max(r.lo-d, b-2*m), min(r.hi+d, b+2*m)}
}

// Report is the clock estimate's account of a run, for results.json.
type Report struct {
	// OffsetFirstNs is θ, the agent's clock minus the controller's, at
	// the first sample; OffsetLastNs at the last.
	OffsetFirstNs int64 `json:"offset_first_ns"`
	OffsetLastNs  int64 `json:"offset_last_ns"`
	// DriftNsPerS is the run's mean drift of θ (ns per second: 1000 is
	// 1 ppm), the slope of a line through the estimates (weighted by their precision); DriftMinNsPerS
	// and DriftMaxNsPerS the range of the local fits (apart when a clock
	// was slewed).
	DriftNsPerS    float64 `json:"drift_ns_per_s"`
	DriftMinNsPerS float64 `json:"drift_min_ns_per_s"`
	DriftMaxNsPerS float64 `json:"drift_max_ns_per_s"`
	// HalfWidthMedianNs and HalfWidthMaxNs are the interval's half-width
	// at the buckets, median and worst.
	HalfWidthMedianNs int64 `json:"half_width_median_ns"`
	HalfWidthMaxNs    int64 `json:"half_width_max_ns"`
	// SamplesAB and SamplesBA count the samples per direction (A: the
	// controller, B: the agent); Pings the ping exchanges among them,
	// the rest came from the run's segments.
	SamplesAB int64 `json:"samples_ab"`
	SamplesBA int64 `json:"samples_ba"`
	Pings     int64 `json:"pings"`
	// Dropped counts samples too late for the buckets kept, or absurd.
	Dropped int64 `json:"samples_dropped"`
	// Buckets counts the buckets with samples of both directions (the
	// drift fit's points), BucketsPingBound those of them whose least u
	// or v was a ping's, and BucketsInconsistent those where the bounds
	// crossed: a sample that was not a true one-way time, or a rate
	// that strayed beyond the fit's allowance.
	Buckets             int64 `json:"buckets"`
	BucketsPingBound    int64 `json:"buckets_ping_bound"`
	BucketsInconsistent int64 `json:"buckets_inconsistent"`
	BucketNs            int64 `json:"bucket_ns"`
	// ResidualNs is the RMS distance of the buckets' midpoints from the
	// estimate: half the paths' asymmetry and their jitter.
	ResidualNs float64 `json:"residual_ns"`
}

// Report summarises the run so far: the buckets already dropped and
// those still kept.
func (e *Estimator) Report() Report {
	s := e.sum
	s.halves = hdrhistogram.Import(e.sum.halves.Export())
	n := int64(len(e.ring))
	if e.start {
		for i := e.newest - n + 1; i <= e.newest; i++ {
			if b := &e.ring[mod(i, n)]; b.idx == i && b.both() {
				e.fold(&s, b)
			}
		}
	}
	r := Report{
		SamplesAB: s.samplesAB, SamplesBA: s.samplesBA, Pings: s.pings, Dropped: s.dropped,
		Buckets: s.points, BucketsPingBound: s.pingBound, BucketsInconsistent: s.inconsistent,
		BucketNs: e.o.BucketNs, HalfWidthMaxNs: s.maxHalf,
		DriftMinNsPerS: s.slopeMin, DriftMaxNsPerS: s.slopeMax,
	}
	if s.points > 0 {
		r.HalfWidthMedianNs = s.halves.ValueAtQuantile(50)
		r.ResidualNs = math.Sqrt(s.resSq / float64(s.points))
	}
	r.OffsetFirstNs = s.offFirst
	if !s.firstFixed {
		if est, ok := e.eval(s.first); ok {
			r.OffsetFirstNs = est.theta
		}
	}
	if est, ok := e.eval(max(e.maxTU, e.maxTV)); ok {
		r.OffsetLastNs = est.theta
		if s.line.points < 2 {
			r.DriftNsPerS = est.slope
		}
	}
	if l := s.line; l.points >= 2 {
		if d := l.n*l.sxx - l.sx*l.sx; d > 0 {
			r.DriftNsPerS = (l.n*l.sxy - l.sx*l.sy) / d
		}
	}
	for _, f := range []*float64{&r.DriftNsPerS, &r.DriftMinNsPerS, &r.DriftMaxNsPerS, &r.ResidualNs} {
		if math.IsNaN(*f) || math.IsInf(*f, 0) {
			*f = 0
		}
	}
	return r
}

// sub is a − b, and whether it fits in an int64.
func sub(a, b int64) (int64, bool) {
	d := a - b
	return d, (d < a) == (b > 0)
}

// satSub is a − b, held at the ends of int64.
func satSub(a, b int64) int64 {
	d, ok := sub(a, b)
	if ok {
		return d
	}
	if b > 0 {
		return math.MinInt64
	}
	return math.MaxInt64
}

// satAdd is a + b, held at the ends of int64.
func satAdd(a, b int64) int64 {
	s := a + b
	if b > 0 && s < a {
		return math.MaxInt64
	}
	if b < 0 && s > a {
		return math.MinInt64
	}
	return s
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
