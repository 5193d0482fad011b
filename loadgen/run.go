package loadgen

import (
	"context"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/volleyscope/volleyscope/stats"
)

// Options configure a load run. The zero value of every field but Addr is a
// usable default.
type Options struct {
	Addr       string        // server address host:port (required)
	Clients    int           // concurrent connections, one OS thread each; default 1
	Proto      Proto         // wire protocol; default PingPong
	Size       int           // echo payload in bytes; default 64 (ping-pong is always 4)
	Duration   time.Duration // cap on the measured run (after warm-up); default 60s
	CI         float64       // stop when the mean's CI relative half-width is below this; default 0.01; negative: run for Duration
	Confidence float64       // confidence level of the intervals; default 0.99
	Warmup     time.Duration // discarded at the start, by time; default 1s; negative: none
	ClientCPUs []int         // CPUs for the client threads, round-robin; empty: not pinned
	Timeout    time.Duration // a reply slower than this is an error; default 2s
	Requests   int64         // stop each connection after this many measured-or-not round trips; 0: no limit
	MinSamples int           // never stop on the CI before this many measured round trips; default 2000

	// CheckEvery is the period of the stopping-rule check and of Progress; default 250ms.
	CheckEvery time.Duration
	// Progress, if set, is called from the run loop after every check.
	Progress func(Progress)
	// ClientsReady, if set, is called once every connection is up and
	// before any request is sent, with the client threads' TIDs (index =
	// connection). An error aborts the run. The probe uses it to start
	// following the client threads.
	ClientsReady func(conns []ConnInfo) error

	// ClientModel is how connections are driven: ClientThreads (a locked
	// thread each), ClientEpoll (one thread per client CPU, epoll), or
	// ClientAuto, the zero value: threads below AutoEpollFrom connections.
	ClientModel ClientModel
	// ConnectTimeout bounds each connection's set-up: the handshake and
	// one priming round trip, which a forking server answers once it has
	// forked. It does not count against Timeout. Default
	// DefaultConnectTimeout (10s).
	ConnectTimeout time.Duration
	// ConnectRate paces the set-up at this many new connections per
	// second; zero: as fast as the server takes them, at most 100 being
	// set up at once.
	ConnectRate float64
	// Rate, if positive, makes the run open-loop: this many round trips
	// per second in total, each connection on its own Poisson schedule at
	// Rate/Clients (together a Poisson process at Rate), latency counted
	// from the intended send time (Record.Intended). A connection never
	// has two requests in flight: a late reply delays its next sends,
	// and that delay is counted. Zero: closed loop, each connection sends
	// as soon as its previous reply is in.
	Rate float64
}

func (o *Options) defaults() {
	if o.Clients <= 0 {
		o.Clients = 1
	}
	if o.Proto == "" {
		o.Proto = PingPong
	}
	if o.Size <= 0 {
		o.Size = 64
	}
	if o.Duration <= 0 {
		o.Duration = 60 * time.Second
	}
	if o.CI == 0 {
		o.CI = 0.01
	}
	if o.Confidence <= 0 || o.Confidence >= 1 {
		o.Confidence = 0.99
	}
	if o.Warmup == 0 {
		o.Warmup = time.Second
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MinSamples <= 0 {
		o.MinSamples = 2000
	}
	if o.CheckEvery <= 0 {
		o.CheckEvery = 250 * time.Millisecond
	}
}

// ConnInfo identifies one client connection in kernel events.
type ConnInfo struct {
	ID        int `json:"id"`
	TID       int `json:"tid"`        // the client thread's kernel thread id
	LocalPort int `json:"local_port"` // the connection's client-side port
}

// Conn is one connection's identity and every round trip it completed,
// warm-up included (see Result.MeasureStart).
type Conn struct {
	ConnInfo
	Records []Record
}

// Progress is a snapshot of a run in progress.
type Progress struct {
	Elapsed  time.Duration // since the first request
	Warmup   bool          // still in warm-up
	Measured int           // round trips measured so far
	Mean     float64       // ns
	RelCI    float64       // relative half-width of the mean's CI (Inf if undefined yet)
}

// Stop reasons.
const (
	StopCI          = "ci"          // the confidence target was reached
	StopDuration    = "duration"    // the duration cap was reached first
	StopRequests    = "requests"    // every connection completed Options.Requests
	StopInterrupted = "interrupted" // the context was cancelled (Ctrl-C)
	StopError       = "error"       // a connection failed
)

// Result is everything a run measured. It is returned even when the run
// ended with an error, holding what was measured before the fault.
type Result struct {
	Options      Options
	Started      time.Time // wall clock at the first request
	MeasureStart int64     // CLOCK_MONOTONIC ns: round trips starting before this were warm-up
	MeasureEnd   int64     // CLOCK_MONOTONIC ns: when the run was stopped
	Conns        []Conn
	StopReason   string

	Measured        int                     // round trips measured (after all warm-up discards)
	WarmupDiscarded int                     // round trips discarded by the warm-up time
	MSERDiscarded   int                     // further round trips discarded by MSER-5 truncation
	WarmupIncluded  bool                    // the run ended during warm-up, so its round trips are what is summarized
	Hist            *hdrhistogram.Histogram // measured latencies, ns
	Latency         stats.Latency           // summary of Hist
	Mean            stats.Interval          // batch-means interval of the mean latency, ns
	P99             stats.Interval          // batch-quantile interval of p99, ns
	ThroughputRPS   float64                 // measured round trips per second
}

// Run drives the server at opts.Addr until the stopping rule is met, ctx is
// cancelled, or a connection fails. The result holds what was measured in
// every case; the error says why a run ended early.
func Run(ctx context.Context, opts Options) (*Result, error) {
	opts.defaults()
	addr, err := net.ResolveTCPAddr("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("resolve server address %q: %w", opts.Addr, err)
	}

	set, err := startClients(ctx, &opts, addr)
	if err != nil {
		return nil, err
	}
	if opts.ClientsReady != nil {
		if err := opts.ClientsReady(set.info()); err != nil {
			set.abort()
			return nil, fmt.Errorf("prepare clients: %w", err)
		}
	}
	clients := set.conns

	res := &Result{Options: opts, Started: time.Now(), Hist: stats.NewHistogram()}
	t0 := nanotime()
	res.MeasureStart = t0 + opts.Warmup.Nanoseconds()
	deadline := res.MeasureStart + opts.Duration.Nanoseconds()
	set.begin()
	done := set.done()

	var (
		curs    = make([]cursor, len(clients))
		kept    []Record // measured round trips, ordered by completion per check
		series  []float64
		chunk   []Record
		tick    = time.NewTicker(opts.CheckEvery)
		reason  string
		runErr  error
		stopped bool
	)
	defer tick.Stop()
	collect := func() {
		chunk = chunk[:0]
		for i, c := range clients {
			curs[i].each(&c.recs, func(r Record) {
				if r.T0 < res.MeasureStart {
					res.WarmupDiscarded++
					return
				}
				chunk = append(chunk, r)
			})
		}
		// Within one check period the clients' records interleave in time;
		// ordering them by completion keeps batch means over contiguous time.
		slices.SortFunc(chunk, func(a, b Record) int { return int(a.T1 - b.T1) })
		for _, r := range chunk {
			kept = append(kept, r)
			series = append(series, float64(r.Latency()))
		}
	}
	for !stopped {
		select {
		case <-ctx.Done():
			reason, stopped = StopInterrupted, true
		case <-done:
			// Every client ended by itself: its request count, or an error.
			reason, stopped = StopRequests, true
		case <-tick.C:
		}
		collect()
		now := nanotime()
		var iv stats.Interval
		if len(series) >= 2 {
			iv = stats.BatchMeans(series, opts.Confidence)
		}
		if opts.Progress != nil {
			opts.Progress(Progress{
				Elapsed:  time.Duration(now - t0),
				Warmup:   now < res.MeasureStart,
				Measured: len(series),
				Mean:     iv.Mean,
				RelCI:    iv.RelHalfWidth(),
			})
		}
		if stopped {
			break
		}
		switch {
		case opts.CI > 0 && len(series) >= opts.MinSamples && iv.RelHalfWidth() <= opts.CI:
			reason, stopped = StopCI, true
		case now >= deadline:
			reason, stopped = StopDuration, true
		}
	}
	set.halt()
	res.MeasureEnd = nanotime()
	// Clients finish the round trip in flight; a silent server is bounded
	// by the socket timeouts.
	<-done
	set.close()
	collect()

	runErr = set.err()
	if runErr != nil {
		reason = StopError
	}
	if reason == "" {
		reason = StopDuration
	}
	res.StopReason = reason
	if len(kept) == 0 && (reason == StopError || reason == StopInterrupted) {
		// The run ended inside the warm-up: rather than report nothing,
		// summarize the round trips it did complete, and say so.
		res.WarmupIncluded = true
		res.WarmupDiscarded = 0
		for _, c := range clients {
			var cur cursor
			cur.each(&c.recs, func(r Record) { kept = append(kept, r) })
		}
		slices.SortFunc(kept, func(a, b Record) int { return int(a.T1 - b.T1) })
		for _, r := range kept {
			series = append(series, float64(r.Latency()))
		}
		if len(kept) > 0 {
			res.MeasureStart = kept[0].T0
		}
	}
	res.Conns = make([]Conn, len(clients))
	for i, c := range clients {
		res.Conns[i] = Conn{ConnInfo: ConnInfo{ID: i, TID: c.tid, LocalPort: c.lport}, Records: c.recs.all()}
	}
	res.summarize(kept, series)
	return res, runErr
}

// summarize applies MSER-5 truncation to the measured series and fills the
// summary fields. MSER-5 guards against a warm-up longer than the time
// allowance (a JIT-less server still fills caches, a new connection's
// congestion window grows); on a stationary series it removes almost nothing.
func (res *Result) summarize(kept []Record, series []float64) {
	if len(series) >= 100 && !res.WarmupIncluded {
		res.MSERDiscarded = stats.MSER5(series)
		series = series[res.MSERDiscarded:]
		kept = kept[res.MSERDiscarded:]
		if res.MSERDiscarded > 0 && len(kept) > 0 {
			// What MSER-5 cut is warm-up too, for the join and the CSV.
			res.MeasureStart = max(res.MeasureStart, kept[0].T0)
		}
	}
	res.Measured = len(series)
	for _, v := range series {
		_ = res.Hist.RecordValue(int64(v))
	}
	res.Latency = stats.Summarize(res.Hist)
	if len(series) >= 2 {
		res.Mean = stats.BatchMeans(series, res.Options.Confidence)
		// The interval's width comes from the spread of per-batch p99s;
		// it is centred on the whole run's p99, the figure reported (the
		// mean of short batches' p99s runs a little low).
		iv := stats.BatchQuantile(series, 0.99, res.Options.Confidence)
		if iv.Batches > 0 {
			p := res.Latency.P99
			iv.Low, iv.High, iv.Mean = p-(iv.Mean-iv.Low), p+(iv.High-iv.Mean), p
		}
		res.P99 = iv
	}
	if len(kept) > 0 {
		span := float64(res.MeasureEnd - max(res.MeasureStart, kept[0].T0))
		if span > 0 {
			res.ThroughputRPS = float64(len(kept)) / span * 1e9
		}
	}
}
