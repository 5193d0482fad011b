package loadgen

import "time"

// StopWatched is the stop reason of round trips that a Feed measured:
// another program made them, and the watch ended (its duration, Ctrl-C,
// or a watched process that exited).
const StopWatched = "watched"

// Feed measures round trips that another program made, handed over from
// outside as they are observed (volleyscope watch derives them from a
// client's socket traffic): the same window, statistics and hooks as a
// run of our own clients, without the clients. Like the run loop it holds
// no round trip beyond the pilot stretch, so its memory is flat in how
// long it is fed.
//
// One goroutine calls every method.
type Feed struct {
	opts   Options
	m      *measurer
	hooks  Hooks
	res    *Summary
	seqs   map[int]int64 // next round trip index per connection
	batch  []pending
	halted bool
	// statsAt is when Check last brought the statistics up to date.
	statsAt int64
}

// feedStatsEvery is how often Check brings a feed's running statistics
// (the intervals of the mean, p50 and p99, each a pass over every batch)
// up to date: the watch checks every 100 ms, and a progress line read by
// a person needs no more than this.
const feedStatsEvery = time.Second

// NewFeed starts measuring at firstT0 (CLOCK_MONOTONIC ns): the window
// opens at firstT0 + opts.Warmup (Warmup < 0: at once; MSER-5 is skipped
// with opts.NoMSER), and hooks are called as a run calls them (Began
// now, ClientsReady per AddConns, Sink per round trip, Progress per
// Check, Halting at Halt or Finish).
func NewFeed(opts Options, firstT0 int64, hooks Hooks) *Feed {
	opts.defaults()
	f := &Feed{opts: opts, hooks: hooks, seqs: map[int]int64{}}
	f.res = &Summary{Options: opts, Started: time.Now()}
	f.m = newMeasurer(&f.opts, hooks.Sink, nil, firstT0)
	if hooks.Began != nil {
		hooks.Began(f.res.Started, firstT0)
	}
	return f
}

// AddConns announces connections before their first round trip. The
// summary does not list them (its Conns stays empty): a feed's
// connections come and go for as long as it is fed.
func (f *Feed) AddConns(conns []ConnInfo) error {
	if f.hooks.ClientsReady != nil {
		return f.hooks.ClientsReady(conns)
	}
	return nil
}

// Add takes one observed round trip of connection conn; they are handed
// on at the next Check, in completion order.
func (f *Feed) Add(conn int, r Record) {
	seq := f.seqs[conn]
	f.seqs[conn] = seq + 1
	f.batch = append(f.batch, pending{conn, seq, r})
}

// Forget says that connection conn ended: it adds no more round trips,
// and its count is let go.
func (f *Feed) Forget(conn int) { delete(f.seqs, conn) }

// Halt calls Hooks.Halting, once: the watch is over, though round trips
// that ended before may still be added. Finish calls it if no one did.
func (f *Feed) Halt() {
	if !f.halted && f.hooks.Halting != nil {
		f.hooks.Halting()
	}
	f.halted = true
}

// Check hands on what was added, applies the window at now, and reports
// progress as the run loop does.
func (f *Feed) Check(now int64) Progress {
	f.m.sortBuf = byCompletion(f.batch, f.m.sortBuf)
	f.m.take(f.batch, now)
	f.batch = f.batch[:0]
	// A feed has no stopping rule to judge: the intervals are for the
	// progress line and are brought up to date every feedStatsEvery only
	// (Finish brings them up to date at the end).
	if f.statsAt == 0 || now-f.statsAt >= feedStatsEvery.Nanoseconds() {
		f.m.check(now)
		f.statsAt = now
	}
	var start int64
	if f.m.decided {
		start = f.m.win.Start
	}
	// The warm-up lasts until the window opens, even when its start was
	// decided at once (NoMSER): the hooks end what measures only the
	// warm-up then (the probe's own cost).
	g := Progress{
		Elapsed: time.Duration(now - f.m.win.FirstT0), Warmup: !f.m.decided || now < f.m.win.Start, WindowStart: start, Measured: int(f.m.measured),
		Mean: f.m.mean.Mean, P50: f.m.p50.Mean, P99: f.m.p99.Mean,
		RelCI: f.m.p50.RelHalfWidth(), P99RelCI: f.m.p99.RelHalfWidth(),
	}
	if f.hooks.Progress != nil {
		f.hooks.Progress(g)
	}
	return g
}

// Finish closes the window at end, hands on what is left, and returns
// the summary; reason is its StopReason.
func (f *Feed) Finish(end int64, reason string) *Summary {
	f.Halt()
	f.m.sortBuf = byCompletion(f.batch, f.m.sortBuf)
	f.m.take(f.batch, end)
	f.batch = nil
	f.m.finish(end)
	f.res.StopReason = reason
	f.m.check(end)
	f.res.fill(f.m)
	return f.res
}
