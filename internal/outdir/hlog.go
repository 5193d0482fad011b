package outdir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/volleyscope/volleyscope/internal/render"
	"github.com/volleyscope/volleyscope/internal/stats"
	"github.com/volleyscope/volleyscope/loadgen"
)

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
	intervals []render.IntervalStat
	total     *hdrhistogram.Histogram
	err       error
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
	l.intervals = append(l.intervals, render.IntervalStat{Sec: sec, Count: h.TotalCount(),
		P50Ns: h.ValueAtQuantile(50), P99Ns: h.ValueAtQuantile(99), MaxNs: h.Max()})
}

// Intervals are the summaries of the intervals written so far, in order;
// after Close, of the whole log.
func (l *HdrLog) Intervals() []render.IntervalStat { return l.intervals }

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
