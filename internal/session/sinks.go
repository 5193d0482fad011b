package session

import (
	"fmt"
	"slices"
	"sync"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/outdir"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// sinks are where every round trip goes as it completes: requests.csv,
// latency.hlog and trace.json in the output directory (--out), and the
// --record file. The summary (results.json) is written at the end.
type sinks struct {
	out *outdir.Out // nil without --out
	rec *recording  // nil without --record
	// tap, if set, sees every round trip from the join first (the watch's
	// Prometheus metrics).
	tap func(*breakdown.RoundTrip)
	// mu orders requests.csv's rows: they come from the run loop
	// (unmeasured round trips, or all without the join) and from the join.
	mu sync.Mutex
}

// open checks, before anything is measured, that the output directory
// and the --record file can be written, and opens the directory's files.
func (s *sinks) open(cfg Config) error {
	if cfg.Record != "" {
		if err := outdir.PrepareFile(cfg.Record); err != nil {
			return fmt.Errorf("--record: %w", err)
		}
	}
	if cfg.Out == "" {
		return nil
	}
	var cols []string
	if cfg.Probe {
		cols = breakdown.Names()
	}
	var err error
	if s.out, err = outdir.OpenOut(cfg.Out, cols); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

// delivered takes a round trip from the load. With a join, measured
// round trips reach requests.csv once joined (joined).
func (s *sinks) delivered(d loadgen.Delivery, join bool) {
	if s.out == nil {
		return
	}
	if d.Measured {
		s.out.Log.Add(d.Record)
	}
	if !join || !d.Measured {
		s.row(d.Conn, d.Seq, d.Record, d.Measured, nil)
	}
}

// joined takes a measured round trip from the join, joined or not; the
// join calls it from one goroutine.
func (s *sinks) joined(rt *breakdown.RoundTrip, r loadgen.Record) {
	if s.tap != nil {
		s.tap(rt)
	}
	if s.out == nil {
		return
	}
	var ns []int64
	if rt.Joined {
		ns = rt.Ns[:]
	}
	s.row(rt.Conn, int64(rt.Seq), r, true, ns)
	s.out.Trace.Add(rt)
}

func (s *sinks) row(conn int, seq int64, r loadgen.Record, measured bool, ns []int64) {
	s.mu.Lock()
	s.out.Requests.Row(conn, seq, r, measured, ns)
	s.mu.Unlock()
}

// commit writes results.json and moves every file into place.
func (s *sinks) commit(res *report.Results, join *breakdown.Accumulator) error {
	if s.out == nil {
		return nil
	}
	if s.out.Trace != nil && join != nil {
		s.out.Trace.SetSlowest(join.Slowest())
	}
	return s.out.Commit(res)
}

// abort removes whatever was not committed; after commit, nothing.
func (s *sinks) abort() {
	if s.out != nil {
		s.out.Abort()
	}
}

// recording is a --record file written as the run goes. Events come from
// the probe's reader and round trips from the run loop, so a lock keeps
// them apart; round trips are batched per connection.
type recording struct {
	mu    sync.Mutex
	w     *breakdown.RecordingWriter
	info  map[int]loadgen.ConnInfo
	batch map[int][]loadgen.Record
}

// recordBatch is how many round trips of a connection are written at once.
const recordBatch = 4096

func createRecording(path string, port uint16) (*recording, error) {
	w, err := breakdown.CreateRecording(path, breakdown.RecordingHeader{ServerPort: port})
	if err != nil {
		return nil, err
	}
	return &recording{w: w, info: map[int]loadgen.ConnInfo{}, batch: map[int][]loadgen.Record{}}, nil
}

func (r *recording) event(e *probe.Event) {
	r.mu.Lock()
	r.w.WriteEvent(e)
	r.mu.Unlock()
}

func (r *recording) conns(cs []loadgen.ConnInfo) {
	r.mu.Lock()
	for _, c := range cs {
		r.info[c.ID] = c
	}
	r.mu.Unlock()
}

func (r *recording) trip(d loadgen.Delivery) {
	r.mu.Lock()
	b := append(r.batch[d.Conn], d.Record)
	if len(b) >= recordBatch {
		r.w.WriteConn(loadgen.Conn{ConnInfo: r.info[d.Conn], Records: b})
		b = b[:0]
	}
	r.batch[d.Conn] = b
	r.mu.Unlock()
}

// close writes what is batched and the trailer.
func (r *recording) close(w loadgen.Window) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]int, 0, len(r.info))
	for id := range r.info {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		r.w.WriteConn(loadgen.Conn{ConnInfo: r.info[id], Records: r.batch[id]})
	}
	return r.w.Close(breakdown.RecordingTrailer{MeasureStart: w.Start})
}
