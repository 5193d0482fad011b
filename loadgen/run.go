package loadgen

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/stats"
)

// Options configure a load run. The zero value of every field but Addr is a
// usable default.
type Options struct {
	Addr     string        // server address host:port (required)
	Clients  int           // concurrent connections, one OS thread each; default 1
	Proto    Proto         // wire protocol; default PingPong
	Size     int           // echo payload, or redis/memcache value, in bytes; default 64 (ping-pong is always 4)
	Duration time.Duration // cap on the measured run (after warm-up); default DefaultDuration
	// CI is the target relative half-width of the p50's interval: the run
	// stops once the p50 and p99 targets both hold. Default DefaultCI;
	// negative: no p50 target.
	CI float64
	// P99CI is the target relative half-width of the p99's interval.
	// Default DefaultP99CI; negative: no p99 target. With neither target
	// the run lasts Duration.
	P99CI      float64
	Confidence float64       // confidence level of the intervals; default DefaultConfidence
	Warmup     time.Duration // discarded at the start, by time; default DefaultWarmup; negative: none
	// NoMSER turns off the MSER-5 check of the pilot stretch after the
	// warm-up (see Window.Start); the window then starts at the warm-up's end.
	NoMSER bool
	// KeepGoing measures to Duration even when the targets are out of
	// reach by then; without it such a run stops early (StopUnreachable).
	KeepGoing  bool
	ClientCPUs []int         // CPUs for the client threads, round-robin; empty: not pinned
	Timeout    time.Duration // a reply slower than this is an error; default 2s
	Requests   int64         // stop each connection after this many measured-or-not round trips; 0: no limit
	MinSamples int           // never stop on the CI before this many measured round trips; default 2000

	// CheckEvery is the period of the stopping-rule check and of
	// Hooks.Progress; default 250ms.
	CheckEvery time.Duration

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

	// HTTP configures Proto HTTP: path, Host, extra headers, statuses.
	HTTP HTTPOptions
	// Mix is the GET:SET mix of Proto Redis and Memcache; zero: PING
	// for redis, DefaultMemcacheMix for memcache.
	Mix Mix
	// Keys is the key space of the mix; default DefaultKeys.
	Keys int
	// Line is the fixed request and reply of Proto Line (required there).
	Line LineOptions
}

// Hooks are where a run hands what it sees to its caller, as it goes.
// Every field may be nil. They are apart from Options, which is
// configuration only and is kept in the Summary.
type Hooks struct {
	// Progress, if set, is called from the run loop after every check.
	Progress func(Progress)
	// Sink, if set, receives every completed round trip, warm-up
	// included, on the run loop's goroutine, in completion order within
	// each check (round trips of the pilot stretch arrive once the window
	// is decided). It must be quick: the run loop waits for it.
	Sink func(Delivery)
	// Began, if set, is called once as the first requests are released,
	// with the wall-clock and CLOCK_MONOTONIC times of that moment
	// (Window.FirstT0).
	Began func(wall time.Time, firstT0 int64)
	// Halting, if set, is called once on the run loop as the clients are
	// told to stop: the end of the measured window.
	Halting func()
	// ClientsReady, if set, is called once every connection is up and
	// before any request is sent, with the client threads' TIDs (index =
	// connection). An error aborts the run. The probe uses it to start
	// following the client threads.
	ClientsReady func(conns []ConnInfo) error
}

// Defaults of Options, in one place: the command line's flag defaults
// are these too.
const (
	DefaultClients    = 1
	DefaultSize       = 64 // echo payload, bytes
	DefaultDuration   = 60 * time.Second
	DefaultCI         = 0.01 // p50 within ±1%
	DefaultP99CI      = 0.05 // p99 within ±5%
	DefaultConfidence = 0.99
	DefaultWarmup     = time.Second
	DefaultTimeout    = 2 * time.Second
	DefaultCheckEvery = 250 * time.Millisecond
)

// CheckProto refuses protocol settings that cannot make a run; Run
// calls it, and a command line may call it first to say so early. An
// empty Proto is the default, PingPong.
func (o *Options) CheckProto() error {
	if _, ok := LookupProto(o.Proto); !ok && o.Proto != "" {
		return fmt.Errorf("protocol %q: want %s", o.Proto, ProtoNames())
	}
	if o.Proto == Line && (len(o.Line.Request) == 0 || len(o.Line.Expect) == 0) {
		return fmt.Errorf("protocol line: both the request and the expected reply are needed (--request, --expect)")
	}
	if o.Proto == HTTP {
		if err := o.HTTP.Check(); err != nil {
			return err
		}
	}
	if (o.Mix.Get < 0 || o.Mix.Set < 0) || (o.Mix != (Mix{}) && o.Mix.Get+o.Mix.Set == 0) {
		return fmt.Errorf("mix %s: want GET:SET counts, not both 0", o.Mix)
	}
	return nil
}

// WarmupSpan is the warm-up a run with o has: o.Warmup, its default when
// 0, none when negative.
func (o Options) WarmupSpan() time.Duration {
	o.defaults()
	return o.Warmup
}

func (o *Options) defaults() {
	if o.Clients <= 0 {
		o.Clients = DefaultClients
	}
	if o.Proto == "" {
		o.Proto = PingPong
	}
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.CI == 0 {
		o.CI = DefaultCI
	}
	if o.P99CI == 0 {
		o.P99CI = DefaultP99CI
	}
	if o.Confidence <= 0 || o.Confidence >= 1 {
		o.Confidence = DefaultConfidence
	}
	if o.Warmup == 0 {
		o.Warmup = DefaultWarmup
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MinSamples <= 0 {
		o.MinSamples = 2000
	}
	if o.CheckEvery <= 0 {
		o.CheckEvery = DefaultCheckEvery
	}
}

// ConnInfo identifies one client connection in kernel events.
type ConnInfo struct {
	ID        int `json:"id"`
	TID       int `json:"tid"`        // the client thread's kernel thread id
	LocalPort int `json:"local_port"` // the connection's client-side port
}

// Conn is one connection's identity and round trips, as an offline join
// (a --record file) holds them; a live run streams them through
// Hooks.Sink instead.
type Conn struct {
	ConnInfo
	Records []Record
}

// Delivery is one completed round trip handed to Hooks.Sink.
type Delivery struct {
	Conn     int   // connection id
	Seq      int64 // index of the round trip on its connection, from 0
	Record   Record
	Measured bool // inside the measured window (Window.Measured)
}

// Progress is a snapshot of a run in progress.
type Progress struct {
	Elapsed time.Duration // since the first request
	Warmup  bool          // the window's start is not decided yet (warm-up or pilot)
	// WindowStart is the measured window's start (Window.Start) once it is
	// decided; 0 before.
	WindowStart int64
	Measured    int     // round trips measured so far
	Mean        float64 // ns
	P50         float64 // ns
	P99         float64 // ns
	RelCI       float64 // relative half-width of the p50's interval (Inf if undefined yet)
	P99RelCI    float64 // relative half-width of the p99's interval (Inf if undefined yet)
}

// Stop reasons.
const (
	StopTarget      = "target"      // every interval target was met
	StopDuration    = "duration"    // the duration cap was reached first
	StopUnreachable = "unreachable" // a target was out of reach by the duration cap
	StopRequests    = "requests"    // every connection completed Options.Requests
	StopInterrupted = "interrupted" // the context was cancelled (Ctrl-C)
	StopError       = "error"       // a connection failed
	StopReplay      = "replay"      // summarized from recorded round trips (Summarize)
)

// Summary is everything a run measured. It is returned even when the run
// ended with an error, holding what was measured before the fault.
type Summary struct {
	Options    Options
	Started    time.Time  // wall clock at the first request (Window.FirstT0)
	Setup      SetupStats // how the connections were set up, and by which client model
	Window     Window     // the measured window
	Conns      []ConnInfo // every connection, index = id
	StopReason string
	// Limiting names the target (TargetP50, TargetP99) that held the run
	// up longest; empty when no target was set.
	Limiting string
	// TargetAfter is the measured time until every target held; 0 if
	// they never did.
	TargetAfter time.Duration
	// TargetNeeds, when the targets did not all hold, is about how much
	// measured time the Limiting one would need at the spread seen; 0
	// when they held or its interval could not say.
	TargetNeeds time.Duration
	// Overshoot is how long the run went on past its duration cap
	// (finishing the round trips in flight); 0 when it stopped earlier.
	Overshoot time.Duration

	Measured       int64                   // round trips in the window
	Outside        int64                   // round trips outside it: warm-up by time, the MSER-5 cut, or begun after the stop
	MSERDiscarded  int                     // of Outside, the round trips MSER-5 cut after the time warm-up
	WarmupIncluded bool                    // nothing was measured and the run ended early: Hist summarizes the warm-up instead
	Hist           *hdrhistogram.Histogram // latencies of the measured round trips, ns
	Latency        stats.Latency           // summary of Hist
	Mean           stats.Interval          // interval of the mean latency, ns
	P50            stats.Interval          // interval of the p50, ns
	P99            stats.Interval          // interval of the p99, ns
	Validity       stats.Validity          // stationarity and autocorrelation of the batches
	ThroughputRPS  float64                 // measured round trips per second of the window
	ClientLoad     ClientLoad              // what the client threads cost over the window
	// Hosts, for a load spread over load agents (Merger), is each load
	// host's part: its round trips, set-up and client load. ClientLoad
	// is then not Known: each host's saturation is its own.
	Hosts []HostLoad
}

// Run drives the server at opts.Addr until the stopping rule is met, ctx is
// cancelled, or a connection fails. The result holds what was measured in
// every case; the error says why a run ended early.
func Run(ctx context.Context, opts Options, hooks Hooks) (*Summary, error) {
	opts.defaults()
	if err := opts.CheckProto(); err != nil {
		return nil, err
	}
	if err := opts.CheckThreads(); err != nil {
		return nil, err
	}
	addr, err := net.ResolveTCPAddr("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("resolve server address %q: %w", opts.Addr, err)
	}

	set, err := startClients(ctx, &opts, addr)
	if err != nil {
		return nil, err
	}
	if hooks.ClientsReady != nil {
		if err := hooks.ClientsReady(set.info()); err != nil {
			set.abort()
			return nil, fmt.Errorf("prepare clients: %w", err)
		}
	}
	res := &Summary{Options: opts, Started: time.Now(), Conns: set.info(), Setup: set.stats()}
	m := newMeasurer(&opts, hooks.Sink, set.conns, nanotime())
	if hooks.Began != nil {
		hooks.Began(res.Started, m.win.FirstT0)
	}
	deadline := m.win.WarmupEnd + opts.Duration.Nanoseconds()
	// A check after the cap, so that a run loop on time halts the clients
	// first (and samples their threads before any has ended).
	set.stopAt.Store(deadline + opts.CheckEvery.Nanoseconds())
	set.begin()
	load := newClientLoad(set.conns, opts.ClientCPUs)
	load.start(m.win.FirstT0)
	loadFromWarmup := false

	// The loop keeps time on a thread of its own, asleep in the kernel
	// between checks and at a better priority where allowed: a Go timer's
	// wake-up needs an M, and hundreds of busy client threads on the
	// same CPU can hold every one of them, so the run would overrun its
	// duration.
	defer loopThread()()
	alarm, err := newAlarm(ctx.Done(), set.done())
	if err != nil {
		set.abort()
		return nil, err
	}
	defer alarm.close()
	reason := ""
	for next := nanotime(); reason == ""; {
		next += opts.CheckEvery.Nanoseconds()
		alarm.sleepUntil(next)
		select {
		case <-ctx.Done():
			reason = StopInterrupted
		case <-set.done():
			// Every client ended by itself: its request count, an error,
			// or the duration cap (m.stop below says so).
			if nanotime() < deadline {
				reason = StopRequests
			}
		default:
		}
		now := nanotime()
		next = max(next, now-opts.CheckEvery.Nanoseconds()) // no burst of checks after a stall
		if now >= deadline && m.win.End == 0 {
			// The cap closes the window, however late the check that
			// passes it (a check period after it, or seconds for a run
			// loop kept from its CPU): round trips begun later are
			// outside, and the measured time never exceeds --duration.
			m.win.End = deadline
		}
		m.collect(now)
		if !loadFromWarmup && now >= m.win.WarmupEnd && now < deadline {
			// From the warm-up's end: the window starts there or
			// slightly later, once the pilot stretch is judged. (A run
			// loop held up past the deadline keeps the figures from the
			// first request instead.)
			load.start(now)
			loadFromWarmup = true
		}
		met := m.check(now)
		if hooks.Progress != nil {
			var start int64
			if m.decided {
				start = m.win.Start
			}
			hooks.Progress(Progress{
				Elapsed: time.Duration(now - m.win.FirstT0), Warmup: !m.decided, WindowStart: start, Measured: int(m.measured),
				Mean: m.mean.Mean, P50: m.p50.Mean, P99: m.p99.Mean,
				RelCI: m.p50.RelHalfWidth(), P99RelCI: m.p99.RelHalfWidth(),
			})
		}
		if reason == "" {
			reason = m.stop(now, deadline, met)
		}
	}
	// The client threads' counters are read before they are told to
	// stop: a thread that ends takes its schedstat with it.
	loadAtEnd := load.sample()
	set.halt()
	end := nanotime()
	if m.win.End != 0 {
		end = m.win.End // closed at the cap above; Overshoot says how late the stop came
	}
	if hooks.Halting != nil {
		hooks.Halting()
	}
	ncpu := len(opts.ClientCPUs)
	if ncpu == 0 {
		ncpu = runtime.NumCPU()
	}
	// Clients finish the round trip in flight, bounded by the timeout.
	<-set.done()
	set.close()
	m.collect(nanotime())
	m.finish(end)
	res.ClientLoad = load.stop(loadAtEnd, end, ncpu, m.measured)
	if reason == StopDuration {
		res.Overshoot = time.Duration(max(0, nanotime()-deadline))
	}

	runErr := set.err()
	if runErr != nil {
		reason = StopError
	}
	res.StopReason = reason
	m.check(end)
	res.fill(m)
	return res, runErr
}

// loopNice is the run loop's priority where the process may raise it.
const loopNice = -5

// loopThread locks the calling goroutine to its thread and raises the
// thread's priority (best effort); the returned function undoes both.
func loopThread() func() {
	runtime.LockOSThread()
	tid := unix.Gettid()
	old, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	raised := err == nil && unix.Setpriority(unix.PRIO_PROCESS, tid, loopNice) == nil
	return func() {
		if raised {
			// getpriority(2)'s raw value is 20 − nice.
			_ = unix.Setpriority(unix.PRIO_PROCESS, tid, 20-old)
		}
		runtime.UnlockOSThread()
	}
}

// alarm puts the run loop's thread to sleep in the kernel until its next
// check, or until a stop channel closes (Ctrl-C, every client ended).
//
// It sleeps in one system call per check. The Go runtime's sysmon takes
// the P of a goroutine that has not been rescheduled for 10 ms, asleep in
// a system call or not, and after each such take it wakes every 20 µs for
// a millisecond or more. A loop that slept in short slices, to see
// Ctrl-C soon, would keep sysmon waking on the client CPU all the time.
// Waiting in ppoll on an eventfd that a goroutine writes when a stop
// channel closes sees the stop at once, with one take per check.
type alarm struct {
	efd  int
	fds  []unix.PollFd // the eventfd, for ppoll
	quit chan struct{}
	done chan struct{}
}

func newAlarm(stop1, stop2 <-chan struct{}) (*alarm, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("run loop: eventfd: %w", err)
	}
	a := &alarm{efd: efd, fds: []unix.PollFd{{Fd: int32(efd), Events: unix.POLLIN}}, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		select {
		case <-stop1:
		case <-stop2:
		case <-a.quit:
			return
		}
		var one [8]byte
		one[0] = 1 // any non-zero count makes the eventfd readable
		_, _ = unix.Write(efd, one[:])
	}()
	return a, nil
}

// sleepUntil sleeps until CLOCK_MONOTONIC reaches t or a stop channel has
// closed.
func (a *alarm) sleepUntil(t int64) {
	for now := nanotime(); now < t; now = nanotime() {
		ts := unix.NsecToTimespec(t - now)
		n, err := unix.Ppoll(a.fds, &ts, nil)
		switch {
		case n > 0:
			return
		case err != nil && err != unix.EINTR:
			sleepUntil(t) // cannot happen with a valid eventfd; never spin
		}
	}
}

func (a *alarm) close() {
	close(a.quit)
	<-a.done
	closeFd(a.efd)
}

// fill copies the measurer's summaries into the result.
func (res *Summary) fill(m *measurer) {
	res.Window = m.win
	res.Measured, res.Outside, res.MSERDiscarded = m.measured, m.warmCount, m.mserCut
	res.Hist = m.bat.Hist()
	if m.measured == 0 && m.warmCount > 0 && (res.StopReason == StopError || res.StopReason == StopInterrupted) {
		// The run ended inside the warm-up: rather than report nothing,
		// summarize the round trips it did complete, and say so.
		res.WarmupIncluded = true
		res.Hist = m.warm
	}
	res.Latency = stats.Summarize(res.Hist)
	res.Mean, res.P50, res.P99 = m.mean, m.p50, m.p99
	res.Validity = m.bat.Validity()
	res.Limiting = m.limiting()
	if m.metAt > 0 {
		res.TargetAfter = time.Duration(m.metAt - m.win.Start)
	} else {
		res.TargetNeeds = m.needs(res.Limiting)
	}
	if span := m.win.Span(); span > 0 && m.measured > 0 {
		res.ThroughputRPS = float64(m.measured) / span.Seconds()
	}
}
