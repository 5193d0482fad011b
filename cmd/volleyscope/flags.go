package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/volleyscope/volleyscope/internal/session"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// loadFlags are the flags shared by run, bench and vs, grouped as the
// help lists them: the server, the load, the stopping rule, the output.
type loadFlags struct {
	server     string
	servers    []string // sweep: every --server given
	addr       string
	serverCPUs string
	serverSpin time.Duration

	clients    int
	proto      string
	size       int
	clientCPUs string
	timeout    time.Duration
	requests   int64

	clientModel    string
	connectTimeout time.Duration
	connectRate    float64
	rate           float64

	// Protocol settings (--proto http, redis, memcache, line).
	httpPath   string
	httpHost   string
	headers    []string
	httpStatus string
	mix        string
	keys       int
	request    string
	expect     string

	duration   time.Duration
	ci         float64
	p99CI      float64
	confidence float64
	warmup     time.Duration
	keepGoing  bool
	noMSER     bool

	netns bool
	netem string
	wait  bool // --wait: queue behind a run that holds our CPUs

	// serverHost is where a started server listens, for load agents
	// (--load-agent, agentFlags) to reach it.
	serverHost string

	json    bool
	out     string
	quiet   bool
	verbose bool

	fs *pflag.FlagSet // to tell a flag given from a default

	// sweep makes --clients and --rate lists of load levels (set before
	// register); config then leaves Clients and Rate to the caller.
	sweep                bool
	clientList, rateList string

	// targets, set by vs before config, are its two server specs.
	targets []string
}

// register adds the flags to fs. withTarget adds --server and --addr, which
// vs does not take (its servers are its arguments); duration is the
// default of --duration.
func (f *loadFlags) register(fs *pflag.FlagSet, withTarget bool, duration time.Duration) {
	f.fs = fs
	client, server := session.DefaultCPUs()
	const serverHelp = "server: a built-in name ('volleyscope servers'), a program taking -p PORT, a command line with {port}, port=PORT:COMMAND (listens on PORT by itself) or addr=HOST:PORT (running); NAME=… labels it"
	switch {
	case withTarget && f.sweep:
		fs.StringArrayVar(&f.servers, "server", []string{session.DefaultServer}, serverHelp+"; give several to compare them, taking turns at each level")
	case withTarget:
		fs.StringVar(&f.server, "server", session.DefaultServer, serverHelp)
	}
	if withTarget {
		fs.StringVar(&f.addr, "addr", "", "benchmark a running server at HOST:PORT instead of starting one")
		fs.StringVar(&f.serverHost, "server-host", "", "a started built-in server listens on this IP of this host (default 127.0.0.1): where --load-agent hosts reach it")
	}
	fs.StringVar(&f.serverCPUs, "server-cpus", cpuString(server), "CPUs for a started server process ('' = not pinned)")
	fs.DurationVar(&f.serverSpin, "server-spin", 0, "built-in servers spin this much of their thread's CPU time per request (an injected delay; preemption lengthens it in wall time)")
	if f.sweep {
		fs.StringVar(&f.clientList, "clients", "1,2,4,8,16,32,64", "the connection counts to run, e.g. 1,4,16,64,256")
		fs.StringVar(&f.rateList, "rate", "", "open loop instead: the total rates to run in round trips/s, e.g. 10000,20000,40000 (with one --clients value)")
		f.clients = loadgen.DefaultClients
	} else {
		fs.IntVar(&f.clients, "clients", loadgen.DefaultClients, "concurrent connections (see --client-model)")
	}
	fs.StringVar(&f.proto, "proto", string(loadgen.PingPong), "wire protocol: "+loadgen.ProtoNames()+" ('volleyscope servers' says what each sends); not given: the built-in server's, else pingpong")
	fs.IntVar(&f.size, "size", loadgen.DefaultSize, "in bytes: "+sizeUse())
	fs.StringVar(&f.httpPath, "http-path", "/", "--proto http: the request's path")
	fs.StringVar(&f.httpHost, "http-host", "", "--proto http: the Host header (default: the server's HOST:PORT)")
	fs.StringArrayVar(&f.headers, "header", nil, "--proto http: an extra request header 'Name: value' (repeatable)")
	fs.StringVar(&f.httpStatus, "http-status", "2xx", "--proto http: the accepted status: 2xx, a status such as 404, or a range such as 200-399")
	fs.StringVar(&f.mix, "mix", "", fmt.Sprintf("--proto redis or memcache: GET:SET ratio, e.g. 9:1 (default: PING for redis, %s for memcache)", loadgen.DefaultMemcacheMix))
	fs.IntVar(&f.keys, "keys", loadgen.DefaultKeys, "--proto redis or memcache: the number of keys the mix draws from")
	fs.StringVar(&f.request, "request", "", `--proto line: the request sent each round trip (\r, \n, \t, \\, \0, \xHH escapes)`)
	fs.StringVar(&f.expect, "expect", "", "--proto line: the exact reply expected (the same escapes)")
	fs.StringVar(&f.clientCPUs, "client-cpus", cpuString(client), "CPUs for the client threads, e.g. 1 or 0,2-3 ('' = not pinned)")
	fs.DurationVar(&f.timeout, "timeout", loadgen.DefaultTimeout, "a reply slower than this stops the run with an error")
	fs.Int64Var(&f.requests, "requests", 0, "stop each connection after this many round trips, warm-up included (0: no limit)")
	fs.StringVar(&f.clientModel, "client-model", "auto", fmt.Sprintf("threads (a thread per connection), epoll (a thread per client CPU) or auto (epoll from %d connections)", loadgen.AutoEpollFrom))
	fs.DurationVar(&f.connectTimeout, "connect-timeout", loadgen.DefaultConnectTimeout, "budget of each connection's set-up (handshake and one priming round trip), apart from --timeout")
	fs.Float64Var(&f.connectRate, "connect-rate", 0, "open at most this many connections per second (0: as fast as the server accepts them)")
	if !f.sweep {
		fs.Float64Var(&f.rate, "rate", 0, "open loop: this many round trips per second in total, Poisson, latency counted from the intended send (0: closed loop)")
	}
	fs.DurationVar(&f.duration, "duration", duration, "cap on the measured time; the run usually stops earlier, at the --ci and --p99-ci targets")
	fs.Float64Var(&f.ci, "ci", loadgen.DefaultCI, "stop once the p50's confidence interval is within ±this fraction of it, and p99's within --p99-ci (0: no p50 target)")
	fs.Float64Var(&f.p99CI, "p99-ci", loadgen.DefaultP99CI, "the same target for p99 (0: no p99 target; both 0: run for --duration)")
	fs.Float64Var(&f.confidence, "confidence", loadgen.DefaultConfidence, "confidence level of the intervals, between 0 and 1")
	fs.DurationVar(&f.warmup, "warmup", loadgen.DefaultWarmup, "discard round trips started in this first stretch (0: no warm-up)")
	fs.BoolVar(&f.noMSER, "no-mser", false, "start measuring at the warm-up's end, without the MSER-5 cut of a still-settling start")
	fs.BoolVar(&f.keepGoing, "keep-going", false, "measure to --duration even when the --ci and --p99-ci targets are out of reach by then (default: stop early and say what they would need)")
	fs.BoolVar(&f.netns, "netns", false, "run the server in a network namespace of its own, joined to the client's by a veth pair that the run creates and removes (root)")
	fs.StringVar(&f.netem, "netem", "", "netem arguments for that veth pair, e.g. 'delay 100us' (with --netns; needs a kernel with netem)")
	fs.BoolVar(&f.wait, "wait", false, "when another volleyscope run holds a CPU this run pins, wait for it to end instead of refusing to start")
	fs.BoolVar(&f.json, "json", false, "print the results.json summary on stdout instead of the table")
	fs.StringVar(&f.out, "out", "", "write results.json, requests.csv, latency.hlog, report.html and (with the probe) trace.json into this directory (checked before measuring)")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "no progress or notices on stderr")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "more detail in the notices: every probe hook by event (results.json has them in meta.hooks)")
}

// config validates every load flag, once, and turns them into a session
// configuration. Each value that loadgen would replace silently (a zero, a
// negative, a level outside (0,1)) is refused here with the flag's name, or
// has a meaning stated in its help (--ci 0, --p99-ci 0, --warmup 0, --requests 0).
func (f *loadFlags) config() (session.Config, error) {
	given := []string{f.server}
	if f.sweep {
		given = f.servers
	}
	for _, s := range given {
		if f.fs.Changed("server") && strings.TrimSpace(s) == "" {
			return session.Config{}, usagef("--server '': want a server, e.g. --server %s (see 'volleyscope servers')", session.DefaultServer)
		}
	}
	if len(f.servers) > 0 {
		f.server = f.servers[0]
	}
	proto, err := loadgen.ParseProto(f.proto)
	if err != nil {
		return session.Config{}, usagef("--proto: %v", err)
	}
	if !f.fs.Changed("proto") {
		proto = "" // the built-in server's protocol, else ping-pong (session.Run)
	}
	// The protocol each server will speak: the flags that configure one
	// protocol are refused with a server that speaks another.
	speaks := []loadgen.Proto{proto}
	if proto == "" {
		speaks = nil
		for _, spec := range f.targetSpecs() {
			speaks = append(speaks, session.ServerProto(spec))
		}
	}
	popts, err := f.protoOptions(proto, speaks)
	if err != nil {
		return session.Config{}, err
	}
	ccpus, err := parseCPUs(f.clientCPUs)
	if err != nil {
		return session.Config{}, usagef("--client-cpus: %v", err)
	}
	scpus, err := parseCPUs(f.serverCPUs)
	if err != nil {
		return session.Config{}, usagef("--server-cpus: %v", err)
	}
	checks := []struct {
		bad bool
		msg string
	}{
		{f.addr != "" && f.fs.Changed("server"), "--addr and --server exclude each other: benchmark a running server or start one"},
		{f.addr != "" && f.fs.Changed("server-cpus"), "--server-cpus pins a started server; with --addr pin the running server yourself (taskset)"},
		{f.addr != "" && f.serverSpin != 0, "--server-spin works with a started built-in server, not with --addr"},
		{f.serverSpin < 0, fmt.Sprintf("--server-spin %v: want 0 or a positive duration", f.serverSpin)},
		{f.clients < 1, fmt.Sprintf("--clients %d: want at least 1", f.clients)},
		{f.size < 1, fmt.Sprintf("--size %d: want at least 1 byte", f.size)},
		{f.fs.Changed("size") && !sized(proto), "--size sets " + sizeUse() + " (a ping-pong message is always 4 bytes)"},
		{proto == loadgen.Redis && f.fs.Changed("size") && !f.fs.Changed("mix"), "--size sets the value of a GET/SET mix: add --mix GET:SET (redis sends PING without one)"},
		{f.timeout <= 0, fmt.Sprintf("--timeout %v: want a positive duration, e.g. 2s", f.timeout)},
		{f.requests < 0, fmt.Sprintf("--requests %d: want 0 (no limit) or more", f.requests)},
		{f.connectTimeout <= 0, fmt.Sprintf("--connect-timeout %v: want a positive duration, e.g. 10s", f.connectTimeout)},
		{!(f.connectRate >= 0) || math.IsInf(f.connectRate, 0), fmt.Sprintf("--connect-rate %v: want 0 (unpaced) or a positive rate", f.connectRate)},
		{!(f.rate >= 0) || math.IsInf(f.rate, 0), fmt.Sprintf("--rate %v: want 0 (closed loop) or a positive rate", f.rate)},
		{f.duration <= 0, fmt.Sprintf("--duration %v: want a positive duration, e.g. 10s", f.duration)},
		{!(f.ci >= 0 && f.ci < 1), fmt.Sprintf("--ci %v: want a fraction such as 0.01, or 0 for no p50 target", f.ci)},
		{!(f.p99CI >= 0 && f.p99CI < 1), fmt.Sprintf("--p99-ci %v: want a fraction such as 0.05, or 0 for no p99 target", f.p99CI)},
		{!(f.confidence > 0 && f.confidence < 1), fmt.Sprintf("--confidence %v: want a level between 0 and 1, e.g. 0.99", f.confidence)},
		{f.warmup < 0, fmt.Sprintf("--warmup %v: want 0 (no warm-up) or a positive duration", f.warmup)},
		{f.netns && f.addr != "", "--netns starts the server in a namespace of its own: it cannot be used with --addr"},
		{f.netem != "" && !f.netns, "--netem shapes the veth pair of --netns: add --netns"},
	}
	for _, c := range checks {
		if c.bad {
			return session.Config{}, usagef("%s", c.msg)
		}
	}
	model, err := loadgen.ParseClientModel(f.clientModel)
	if err != nil {
		return session.Config{}, usagef("--client-model: %v", err)
	}
	opts := loadgen.Options{
		Clients: f.clients, Proto: proto, Size: f.size, Duration: f.duration, CI: f.ci, P99CI: f.p99CI,
		Confidence: f.confidence, Warmup: f.warmup, NoMSER: f.noMSER, KeepGoing: f.keepGoing, ClientCPUs: ccpus, Timeout: f.timeout, Requests: f.requests,
		ClientModel: model, ConnectTimeout: f.connectTimeout, ConnectRate: f.connectRate, Rate: f.rate,
		HTTP: popts.HTTP, Mix: popts.Mix, Keys: popts.Keys, Line: popts.Line,
	}
	// loadgen.Options reads zero as "default": its "none" is negative.
	if f.ci == 0 {
		opts.CI = -1
	}
	if f.p99CI == 0 {
		opts.P99CI = -1
	}
	if f.warmup == 0 {
		opts.Warmup = -1
	}
	cfg := session.Config{Server: f.server, Addr: f.addr, ServerCPUs: scpus, ServerSpin: f.serverSpin, Load: opts, NetNS: f.netns, Netem: f.netem, Verbose: f.verbose,
		LockCPUs: true, WaitCPUs: f.wait, Command: strings.Join(os.Args, " "), ServerHost: f.serverHost}

	if f.addr != "" {
		cfg.ServerCPUs = nil
	}
	return cfg, nil
}

// targetSpecs are the server specs the load goes to, for the protocol
// they speak without --proto: none with --addr (ping-pong), every
// --server of a sweep, or the server.
func (f *loadFlags) targetSpecs() []string {
	switch {
	case f.addr != "":
		return []string{"addr=" + f.addr}
	case len(f.targets) > 0:
		return f.targets
	case len(f.servers) > 0:
		return f.servers
	}
	return []string{f.server}
}

// protoOptions checks the protocol flags against proto ("" when --proto
// was not given: the server's protocol decides later) and against the
// protocols the servers will speak (speaks), and returns them in a
// loadgen.Options.
func (f *loadFlags) protoOptions(proto loadgen.Proto, speaks []loadgen.Proto) (loadgen.Options, error) {
	var o loadgen.Options
	given := func(names ...string) string {
		for _, n := range names {
			if f.fs.Changed(n) {
				return "--" + n
			}
		}
		return ""
	}
	// for checks that a flag given configures a protocol every server
	// speaks; want lists those it configures.
	for _, c := range []struct {
		flag string
		want []loadgen.Proto
	}{
		{given("http-path", "http-host", "header", "http-status"), []loadgen.Proto{loadgen.HTTP}},
		{given("mix", "keys"), []loadgen.Proto{loadgen.Redis, loadgen.Memcache}},
	} {
		if c.flag == "" {
			continue
		}
		for _, p := range speaks {
			if slices.Contains(c.want, p) {
				continue
			}
			names := make([]string, len(c.want))
			for i, w := range c.want {
				names[i] = string(w)
			}
			needs := "--proto " + strings.Join(names, " or ")
			if proto != "" {
				return o, usagef("%s configures %s, not --proto %s", c.flag, needs, proto)
			}
			return o, usagef("%s configures %s, and the run would speak %s: add %s (or use a server that speaks it)", c.flag, needs, p, "--proto "+names[0])
		}
	}
	if n := given("request", "expect"); n != "" && proto != loadgen.Line {
		return o, usagef("%s configures --proto line: add --proto line", n)
	}
	o.HTTP = loadgen.HTTPOptions{Path: f.httpPath, Host: f.httpHost, Headers: f.headers}
	for _, c := range []struct {
		flag string
		o    loadgen.HTTPOptions
	}{{"http-path", loadgen.HTTPOptions{Path: f.httpPath}}, {"http-host", loadgen.HTTPOptions{Host: f.httpHost}}, {"header", loadgen.HTTPOptions{Headers: f.headers}}} {
		if err := c.o.Check(); err != nil {
			return o, usagef("--%s: %v", c.flag, err)
		}
	}
	lo, hi, err := parseStatus(f.httpStatus)
	if err != nil {
		return o, usagef("--http-status: %v", err)
	}
	if lo != 200 || hi != 299 {
		o.HTTP.StatusMin, o.HTTP.StatusMax = lo, hi
	}
	if f.mix != "" {
		if o.Mix, err = loadgen.ParseMix(f.mix); err != nil {
			return o, usagef("--mix: %v", err)
		}
	}
	if f.keys < 1 {
		return o, usagef("--keys %d: want at least 1", f.keys)
	}
	o.Keys = f.keys
	if proto == loadgen.Line {
		if f.request == "" || f.expect == "" {
			return o, usagef(`--proto line needs --request STR and --expect STR, e.g. --request 'PING\r\n' --expect '+PONG\r\n'`)
		}
		if o.Line.Request, err = loadgen.Unescape(f.request); err != nil {
			return o, usagef("--request: %v", err)
		}
		if o.Line.Expect, err = loadgen.Unescape(f.expect); err != nil {
			return o, usagef("--expect: %v", err)
		}
	}
	o.Proto = proto
	if err := o.CheckProto(); err != nil {
		return o, usagef("%v", err)
	}
	return o, nil
}

// parseStatus reads --http-status: "2xx", "404" or "200-399".
func parseStatus(s string) (lo, hi int, err error) {
	bad := fmt.Errorf("%q: want a class such as 2xx, a status such as 404, or a range such as 200-399", s)
	if len(s) == 3 && s[1:] == "xx" && s[0] >= '1' && s[0] <= '5' {
		c := int(s[0]-'0') * 100
		return c, c + 99, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = strconv.Atoi(a); err != nil {
		return 0, 0, bad
	}
	hi = lo
	if isRange {
		if hi, err = strconv.Atoi(b); err != nil {
			return 0, 0, bad
		}
	}
	if lo < 100 || hi > 599 || lo > hi {
		return 0, 0, bad
	}
	return lo, hi, nil
}

func cpuString(c []int) string {
	s := make([]string, len(c))
	for i, v := range c {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

// parseCPUs reads a list such as "0,2-3"; an empty string means no pinning.
func parseCPUs(s string) ([]int, error) {
	return parseCPUList(s, numCPU())
}

// parseCPUList reads a CPU list for a machine with ncpu CPUs.
func parseCPUList(s string, ncpu int) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("bad CPU %q: want a number or a range such as 2-3", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil || b < a {
				return nil, fmt.Errorf("bad CPU range %q: want LOW-HIGH with LOW <= HIGH", part)
			}
		}
		for c := a; c <= b; c++ {
			if c < 0 || c >= ncpu {
				return nil, fmt.Errorf("CPU %d does not exist (this machine has CPUs 0-%d)", c, ncpu-1)
			}
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// probeFlags are the flags of the kernel probe (run only).
type probeFlags struct {
	mode     string
	syscalls bool
	record   string
}

func (f *probeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.mode, "probe-mode", "auto", "hook family: auto (best that loads, per event), tracepoint, fentry or kprobe")
	fs.BoolVar(&f.syscalls, "syscalls", false, "also trace every syscall and wake-up: per-syscall latency table, server_queue split from server_kernel_recv (costs ~10% more of a one-CPU round trip)")
	fs.StringVar(&f.record, "record", "", "save the raw kernel events and client records to this file, for 'volleyscope replay' (checked before measuring)")
}

func (f *probeFlags) validate() error {
	if _, err := probe.ParseMode(f.mode); err != nil {
		return usagef("--probe-mode: %v", err)
	}
	return nil
}

// sized says whether proto uses --size.
func sized(p loadgen.Proto) bool {
	info, ok := loadgen.LookupProto(p)
	return ok && info.Size != ""
}

// sizeUse says what --size sets, protocol by protocol, from the protocol
// table: "the payload with --proto echo, the value … with --proto redis".
func sizeUse() string {
	var uses []string
	for _, info := range loadgen.Protocols() {
		if info.Size != "" {
			uses = append(uses, info.Size+" with --proto "+string(info.Name))
		}
	}
	return strings.Join(uses, ", ")
}
