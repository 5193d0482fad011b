package outdir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/volleyscope/volleyscope/internal/render"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
)

// The files of an output directory (--out).
const (
	ResultsFile  = "results.json"
	RequestsFile = "requests.csv"
	HdrLogFile   = "latency.hlog"
	HTMLFile     = "report.html"
	// TraceFile is the timeline of round trips, written when the probe
	// ran, in the Chrome trace-event format.
	TraceFile = "trace.json"
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
	Trace *render.Trace
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
	RemoveStaleTemps(dir) // a run killed by SIGKILL could not
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
		o.Trace = render.NewTrace()
	}
	return o, nil
}

// Commit writes results.json and puts every file in place, then writes
// report.html and, with the probe, trace.json. The summary goes first, so
// a failure later still leaves it.
func (o *Out) Commit(r *report.Results) error {
	err := WriteFileAtomic(filepath.Join(o.dir, ResultsFile), func(w io.Writer) error { return report.WriteJSON(w, r) })
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
	f, err := os.CreateTemp(dir, tempPattern(base))
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

// writeViews writes the files drawn from the results and the closed
// latency log: report.html, and trace.json when the probe ran.
func (o *Out) writeViews(r *report.Results) error {
	err := WriteFileAtomic(filepath.Join(o.dir, HTMLFile), func(w io.Writer) error { return render.WriteHTML(w, r, o.Log) })
	if o.Trace != nil {
		err = errors.Join(err, WriteFileAtomic(filepath.Join(o.dir, TraceFile), func(w io.Writer) error { return render.WriteTrace(w, r, o.Trace) }))
	}
	return err
}
