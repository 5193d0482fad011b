package report

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/stats"
)

// FromLoad fills the latency and run sections of r from a load result.
func FromLoad(r *Results, res *loadgen.Result) {
	o := res.Options
	r.Meta.Clients = o.Clients
	r.Meta.Proto = string(o.Proto)
	if o.Proto == loadgen.Echo {
		r.Meta.Size = o.Size
	}
	r.Meta.ClientCPUs = o.ClientCPUs
	r.Meta.StartedAt = res.Started.UTC()
	l := res.Latency
	r.Latency = Latency{
		Count: l.Count, Mean: l.Mean, P50: l.P50, P90: l.P90, P99: l.P99, P999: l.P999, P9999: l.P9999, Max: l.Max,
		CILevel: o.Confidence,
	}
	if res.Mean.Batches > 0 {
		r.Latency.CILow, r.Latency.CIHigh = finite(res.Mean.Low), finite(res.Mean.High)
	}
	if res.P99.Batches > 0 {
		r.Latency.P99CILow, r.Latency.P99CIHigh = finite(res.P99.Low), finite(res.P99.High)
	}
	r.ThroughputRPS = res.ThroughputRPS
	r.Run = RunInfo{
		StopReason: res.StopReason, CITarget: o.CI, CIAchieved: finite(res.Mean.RelHalfWidth()),
		Batches: res.Mean.Batches, BatchSize: res.Mean.BatchSize,
		WarmupNs: o.Warmup.Nanoseconds(), WarmupDiscarded: res.WarmupDiscarded, MSERDiscarded: res.MSERDiscarded, WarmupIncluded: res.WarmupIncluded,
		MeasuredNs: max(0, res.MeasureEnd-res.MeasureStart),
	}
	if r.Errors == nil {
		r.Errors = []string{}
	}
}

// PerRequest gives the breakdown of one round trip (connection, index in
// that connection's records) as values in the order of Columns; ok is false
// for a round trip that was not joined.
type PerRequest struct {
	Columns []string
	Row     func(conn, seq int) (vals []int64, ok bool)
}

// WriteRequestsCSV writes one row per round trip: conn, seq, t0_ns, t1_ns,
// latency_ns, warmup (1 for discarded warm-up round trips), then the
// breakdown columns (empty when the round trip was not joined).
func WriteRequestsCSV(w io.Writer, res *loadgen.Result, pr *PerRequest) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	bw.WriteString("conn,seq,t0_ns,t1_ns,latency_ns,warmup")
	if pr != nil {
		for _, c := range pr.Columns {
			bw.WriteString("," + c)
		}
	}
	bw.WriteByte('\n')
	var buf []byte
	for _, c := range res.Conns {
		for i, rec := range c.Records {
			buf = buf[:0]
			buf = strconv.AppendInt(buf, int64(c.ID), 10)
			buf = append(buf, ',')
			buf = strconv.AppendInt(buf, int64(i), 10)
			buf = append(buf, ',')
			buf = strconv.AppendInt(buf, rec.T0, 10)
			buf = append(buf, ',')
			buf = strconv.AppendInt(buf, rec.T1, 10)
			buf = append(buf, ',')
			buf = strconv.AppendInt(buf, rec.Latency(), 10)
			if rec.T0 < res.MeasureStart {
				buf = append(buf, ",1"...)
			} else {
				buf = append(buf, ",0"...)
			}
			if pr != nil {
				vals, ok := pr.Row(c.ID, i)
				for k := range pr.Columns {
					buf = append(buf, ',')
					if ok {
						buf = strconv.AppendInt(buf, vals[k], 10)
					}
				}
			}
			buf = append(buf, '\n')
			if _, err := bw.Write(buf); err != nil {
				return fmt.Errorf("write requests csv: %w", err)
			}
		}
	}
	return bw.Flush()
}

// WriteHdrLog writes the measured round trips as an HdrHistogram interval
// log, one interval per second of the run, readable by HdrHistogram's
// plotting and analysis tools.
func WriteHdrLog(w io.Writer, res *loadgen.Result) error {
	type rec struct{ t1, lat int64 }
	var all []rec
	for _, c := range res.Conns {
		for _, r := range c.Records {
			if r.T0 >= res.MeasureStart {
				all = append(all, rec{r.T1, r.Latency()})
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].t1 < all[j].t1 })
	lw := hdrhistogram.NewHistogramLogWriter(w)
	if err := lw.OutputLogFormatVersion(); err != nil {
		return fmt.Errorf("write hdr log: %w", err)
	}
	startMs := res.Started.UnixMilli()
	lw.SetBaseTime(startMs)
	if err := lw.OutputStartTime(startMs); err != nil {
		return err
	}
	if err := lw.OutputLegend(); err != nil {
		return err
	}
	if len(all) == 0 {
		return nil
	}
	base := res.MeasureStart
	h := stats.NewHistogram()
	cur := int64(0)
	flush := func(sec int64) error {
		if h.TotalCount() == 0 {
			return nil
		}
		h.SetStartTimeMs(startMs + (base-firstT0(res))/1e6 + sec*1000)
		h.SetEndTimeMs(startMs + (base-firstT0(res))/1e6 + (sec+1)*1000)
		err := lw.OutputIntervalHistogram(h)
		h.Reset()
		return err
	}
	for _, r := range all {
		sec := (r.t1 - base) / 1e9
		if sec != cur {
			if err := flush(cur); err != nil {
				return fmt.Errorf("write hdr log: %w", err)
			}
			cur = sec
		}
		_ = h.RecordValue(r.lat)
	}
	return flush(cur)
}

// firstT0 is the CLOCK_MONOTONIC time of the first request, which Started
// (wall clock) corresponds to.
func firstT0(res *loadgen.Result) int64 {
	return res.MeasureStart - res.Options.Warmup.Nanoseconds()
}

// WriteDir writes results.json, requests.csv and latency.hlog into dir,
// creating it. The summary goes first, so a failure later still leaves it.
func WriteDir(dir string, r *Results, res *loadgen.Result, pr *PerRequest) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	write := func(name string, fn func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", name, err)
		}
		return f.Close()
	}
	if err := write("results.json", func(w io.Writer) error { return WriteJSON(w, r) }); err != nil {
		return err
	}
	if res == nil {
		return nil
	}
	if err := write("requests.csv", func(w io.Writer) error { return WriteRequestsCSV(w, res, pr) }); err != nil {
		return err
	}
	return write("latency.hlog", func(w io.Writer) error { return WriteHdrLog(w, res) })
}

// finite maps NaN and ±Inf (an interval not yet defined) to 0, which JSON
// can carry; the batch count says whether an interval exists.
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}
