package report

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/volleyscope/volleyscope/internal/stats"
	"github.com/volleyscope/volleyscope/loadgen"
)

// The files of an output directory (--out).
const (
	ResultsFile  = "results.json"
	RequestsFile = "requests.csv"
	HdrLogFile   = "latency.hlog"
)

// Out is an output directory being written while a run streams: the
// per-round-trip files fill as round trips complete, each in a temporary
// file that Commit renames into place, so a reader never sees a part.
type Out struct {
	dir      string
	csv      *atomicFile
	hlog     *atomicFile
	Requests *RequestsCSV
	Log      *HdrLog
	// Trace samples the joined round trips for trace.json; nil without
	// the probe (no breakdown columns).
	Trace *Trace
}

// OpenOut checks that dir takes files (before anything is measured) and
// opens requests.csv and latency.hlog in it. columns are the breakdown
// columns of requests.csv (nil without the probe); started and firstT0
// are the wall-clock and CLOCK_MONOTONIC times of the first request
// (they may be set later with Begin).
func OpenOut(dir string, columns []string) (*Out, error) {
	if err := PrepareDir(dir); err != nil {
		return nil, err
	}
	o := &Out{dir: dir}
	var err error
	if o.csv, err = createAtomic(filepath.Join(dir, RequestsFile)); err != nil {
		return nil, err
	}
	if o.hlog, err = createAtomic(filepath.Join(dir, HdrLogFile)); err != nil {
		o.csv.abort()
		return nil, err
	}
	o.Requests = NewRequestsCSV(o.csv.w, columns)
	o.Log = NewHdrLog(o.hlog.w)
	if columns != nil {
		o.Trace = NewTrace()
	}
	return o, nil
}

// Commit writes results.json and puts every file in place, then writes
// report.html and, with the probe, trace.json. The summary goes first, so
// a failure later still leaves it.
func (o *Out) Commit(r *Results) error {
	err := WriteFileAtomic(filepath.Join(o.dir, ResultsFile), func(w io.Writer) error { return WriteJSON(w, r) })
	if err != nil {
		o.Abort()
		return err
	}
	if err := o.Requests.Flush(); err != nil {
		o.Abort()
		return err
	}
	if err := o.Log.Close(); err != nil {
		o.Abort()
		return err
	}
	return errors.Join(o.csv.commit(), o.hlog.commit(), o.writeViews(r))
}

// Abort removes the temporary files.
func (o *Out) Abort() {
	o.csv.abort()
	o.hlog.abort()
}

// atomicFile is a file written under a temporary name and renamed into
// place once complete.
type atomicFile struct {
	path string
	f    *os.File
	w    *bufio.Writer
	done bool
}

func createAtomic(path string) (*atomicFile, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil { // CreateTemp makes it 0600
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &atomicFile{path: path, f: f, w: bufio.NewWriterSize(f, 1<<16)}, nil
}

func (a *atomicFile) commit() error {
	if a.done {
		return nil
	}
	a.done = true
	err := a.w.Flush()
	if err == nil {
		err = a.f.Sync()
	}
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(a.f.Name(), a.path)
	}
	if err != nil {
		os.Remove(a.f.Name())
		return fmt.Errorf("write %s: %w", a.path, err)
	}
	return nil
}

func (a *atomicFile) abort() {
	if a.done {
		return
	}
	a.done = true
	a.f.Close()
	os.Remove(a.f.Name())
}

// RequestsCSV writes requests.csv as round trips complete: one row per
// round trip, warm-up included: conn, seq, t0_ns, t1_ns, intended_ns
// (open loop; empty in closed loop), latency_ns, measured (1 inside the
// measured window), then the breakdown columns, empty when the round trip
// was not joined or is outside the window. Rows come in the order round
// trips complete (and, with the probe, are joined), not sorted by
// connection.
type RequestsCSV struct {
	bw   *bufio.Writer
	cols int
	buf  []byte
	err  error
}

// NewRequestsCSV writes the header to w.
func NewRequestsCSV(w io.Writer, columns []string) *RequestsCSV {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		bw = bufio.NewWriterSize(w, 1<<16)
	}
	c := &RequestsCSV{bw: bw, cols: len(columns)}
	c.bw.WriteString("conn,seq,t0_ns,t1_ns,intended_ns,latency_ns,measured")
	for _, col := range columns {
		c.bw.WriteString("," + col)
	}
	c.bw.WriteByte('\n')
	return c
}

// Row writes one round trip; ns are its components (nil: not joined).
func (c *RequestsCSV) Row(conn int, seq int64, r loadgen.Record, measured bool, ns []int64) {
	if c.err != nil {
		return
	}
	b := c.buf[:0]
	b = strconv.AppendInt(b, int64(conn), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.T0, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.T1, 10)
	b = append(b, ',')
	if r.Intended != 0 {
		b = strconv.AppendInt(b, r.Intended, 10)
	}
	b = append(b, ',')
	b = strconv.AppendInt(b, r.Latency(), 10)
	if measured {
		b = append(b, ",1"...)
	} else {
		b = append(b, ",0"...)
	}
	for k := 0; k < c.cols; k++ {
		b = append(b, ',')
		if ns != nil {
			b = strconv.AppendInt(b, ns[k], 10)
		}
	}
	b = append(b, '\n')
	c.buf = b
	if _, err := c.bw.Write(b); err != nil {
		c.err = fmt.Errorf("write %s: %w", RequestsFile, err)
	}
}

// Flush writes what is buffered and reports the first write error.
func (c *RequestsCSV) Flush() error {
	if c.err != nil {
		return c.err
	}
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", RequestsFile, err)
	}
	return nil
}

// HdrLog writes the measured round trips as an HdrHistogram interval log
// (one interval per second of completions since the first request), as
// they complete, for HdrHistogram's plotting and analysis tools.
// Completions may arrive slightly out of order; an interval is written
// once completions two seconds later have arrived. From the first interval
// written to the last, every second has one, empty when nothing completed
// in it, so that the log's readers see one interval per second.
type HdrLog struct {
	w         io.Writer
	lw        *hdrhistogram.HistogramLogWriter
	started   time.Time
	firstT0   int64
	begun     bool
	open      map[int64]*hdrhistogram.Histogram
	newest    int64
	next      int64 // the second the next interval written must start at; -1 before the first
	intervals []IntervalStat
	total     *hdrhistogram.Histogram
	err       error
}

// IntervalStat summarizes one interval of the log as it was written.
type IntervalStat struct {
	Sec   int64 // seconds since the first request
	Count int64
	P50Ns int64
	P99Ns int64
	MaxNs int64
}

// NewHdrLog starts a log on w; Begin gives it the run's start.
func NewHdrLog(w io.Writer) *HdrLog {
	return &HdrLog{w: w, lw: hdrhistogram.NewHistogramLogWriter(w), open: map[int64]*hdrhistogram.Histogram{}, next: -1, total: stats.NewHistogram()}
}

// Begin sets the wall-clock time of the first request and its
// CLOCK_MONOTONIC time, and writes the log's header.
func (l *HdrLog) Begin(started time.Time, firstT0 int64) {
	l.started, l.firstT0, l.begun = started, firstT0, true
	startMs := started.UnixMilli()
	l.lw.SetBaseTime(startMs)
	// The start and base times to the millisecond, as HdrHistogram's Java
	// writer puts them: hdrhistogram-go's OutputStartTime drops the
	// milliseconds, and its reader, finding no base time, takes that
	// whole second as the base, moving every interval early by up to 1 s.
	secs := fmt.Sprintf("%d.%03d", startMs/1000, startMs%1000)
	l.err = errors.Join(l.lw.OutputLogFormatVersion(),
		l.lw.OutputComment("[StartTime: "+secs+" (seconds since epoch), "+started.UTC().Format(time.RFC3339Nano)+"]"),
		l.lw.OutputComment("[BaseTime: "+secs+" (seconds since epoch)]"),
		l.lw.OutputLegend())
}

// Add records one measured round trip.
func (l *HdrLog) Add(r loadgen.Record) {
	if !l.begun || l.err != nil {
		return
	}
	sec := (r.T1 - l.firstT0) / 1e9
	h := l.open[sec]
	if h == nil {
		h = stats.NewHistogram()
		l.open[sec] = h
	}
	_ = h.RecordValue(r.Latency())
	if sec > l.newest {
		l.newest = sec
		l.flush(sec - 2)
	}
}

// flush writes every open interval up to second upTo, in order.
func (l *HdrLog) flush(upTo int64) {
	for {
		first := int64(-1)
		for s := range l.open {
			if s <= upTo && (first < 0 || s < first) {
				first = s
			}
		}
		if first < 0 {
			return
		}
		h := l.open[first]
		delete(l.open, first)
		for l.next >= 0 && l.next < first { // seconds nothing completed in
			l.output(l.next, stats.NewHistogram())
		}
		l.output(first, h)
	}
}

// output writes second sec's interval and keeps its summary.
func (l *HdrLog) output(sec int64, h *hdrhistogram.Histogram) {
	startMs := l.started.UnixMilli() + sec*1000
	h.SetStartTimeMs(startMs)
	h.SetEndTimeMs(startMs + 1000)
	if err := l.lw.OutputIntervalHistogram(h); err != nil && l.err == nil {
		l.err = fmt.Errorf("write %s: %w", HdrLogFile, err)
	}
	l.next = sec + 1
	l.total.Merge(h)
	l.intervals = append(l.intervals, IntervalStat{Sec: sec, Count: h.TotalCount(),
		P50Ns: h.ValueAtQuantile(50), P99Ns: h.ValueAtQuantile(99), MaxNs: h.Max()})
}

// Intervals are the summaries of the intervals written so far, in order;
// after Close, of the whole log.
func (l *HdrLog) Intervals() []IntervalStat { return l.intervals }

// Total is the merge of the intervals written so far: after Close, the
// distribution of every round trip in the log.
func (l *HdrLog) Total() *hdrhistogram.Histogram { return l.total }

// Close writes the intervals still open and reports the first error.
func (l *HdrLog) Close() error {
	if l.begun {
		l.flush(l.newest)
	}
	if bw, ok := l.w.(*bufio.Writer); ok && l.err == nil {
		if err := bw.Flush(); err != nil {
			l.err = fmt.Errorf("write %s: %w", HdrLogFile, err)
		}
	}
	return l.err
}
