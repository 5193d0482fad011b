package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/session"
)

// loadFlags are the flags shared by run, bench and vs.
type loadFlags struct {
	server     string
	addr       string
	clients    int
	proto      string
	size       int
	duration   time.Duration
	ci         float64
	confidence float64
	warmup     time.Duration
	timeout    time.Duration
	clientCPUs string
	serverCPUs string
	serverSpin time.Duration
	requests   int64
	json       bool
	out        string
	quiet      bool
}

func (f *loadFlags) register(fs *pflag.FlagSet) {
	client, server := session.DefaultCPUs()
	fs.StringVar(&f.server, "server", "goroutine", "built-in server name (see 'volleyscope servers') or path to a binary taking -p PORT")
	fs.StringVar(&f.addr, "addr", "", "benchmark a running server at HOST:PORT instead of starting one")
	fs.IntVar(&f.clients, "clients", 1, "concurrent connections, one OS thread each")
	fs.StringVar(&f.proto, "proto", "pingpong", "wire protocol: pingpong or echo")
	fs.IntVar(&f.size, "size", 64, "echo payload in bytes")
	fs.DurationVar(&f.duration, "duration", 60*time.Second, "cap on the measured time; the run usually stops earlier at the --ci target")
	fs.Float64Var(&f.ci, "ci", 0.01, "stop when the mean's confidence interval is within ±this fraction (0: run for --duration)")
	fs.Float64Var(&f.confidence, "confidence", 0.99, "confidence level of the intervals")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "discard round trips started in this first stretch")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Second, "a reply slower than this stops the run with an error")
	fs.StringVar(&f.clientCPUs, "client-cpus", cpuString(client), "CPUs for the client threads, e.g. 1 or 0,2-3 ('' = not pinned)")
	fs.StringVar(&f.serverCPUs, "server-cpus", cpuString(server), "CPUs for the server process ('' = not pinned)")
	fs.DurationVar(&f.serverSpin, "server-spin", 0, "built-in servers busy-work this long per request (an injected delay)")
	fs.Int64Var(&f.requests, "requests", 0, "stop each connection after this many round trips (0: no limit)")
	fs.BoolVar(&f.json, "json", false, "print the results.json summary on stdout instead of the table")
	fs.StringVar(&f.out, "out", "", "write results.json, requests.csv and latency.hlog into this directory")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "no progress on stderr")
}

func (f *loadFlags) config() (session.Config, error) {
	proto, err := loadgen.ParseProto(f.proto)
	if err != nil {
		return session.Config{}, err
	}
	ccpus, err := parseCPUs(f.clientCPUs)
	if err != nil {
		return session.Config{}, fmt.Errorf("--client-cpus: %w", err)
	}
	scpus, err := parseCPUs(f.serverCPUs)
	if err != nil {
		return session.Config{}, fmt.Errorf("--server-cpus: %w", err)
	}
	if f.clients < 1 {
		return session.Config{}, fmt.Errorf("--clients must be at least 1")
	}
	if f.ci < 0 || f.ci >= 1 {
		return session.Config{}, fmt.Errorf("--ci %v: want a fraction such as 0.01", f.ci)
	}
	ci := f.ci
	if ci == 0 {
		ci = -1 // run for the whole duration
	}
	warm := f.warmup
	if warm == 0 {
		warm = -1
	}
	return session.Config{
		Server: f.server, Addr: f.addr, ServerCPUs: scpus, ServerSpin: f.serverSpin,
		Load: loadgen.Options{
			Clients: f.clients, Proto: proto, Size: f.size, Duration: f.duration, CI: ci,
			Confidence: f.confidence, Warmup: warm, ClientCPUs: ccpus, Timeout: f.timeout, Requests: f.requests,
		},
	}, nil
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
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	ncpu := numCPU()
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("bad CPU %q", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil || b < a {
				return nil, fmt.Errorf("bad CPU range %q", part)
			}
		}
		for c := a; c <= b; c++ {
			if c < 0 || c >= ncpu {
				return nil, fmt.Errorf("CPU %d does not exist (this machine has CPUs 0-%d)", c, ncpu-1)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

func newFlagSet(name, synopsis string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
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
	fs.StringVar(&f.record, "record", "", "save the raw kernel events and client records to this file, for offline joins")
}
