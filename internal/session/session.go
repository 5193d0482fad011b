package session

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/volleyscope/volleyscope/internal/affinity"
	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/netns"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/serverproc"
	"github.com/volleyscope/volleyscope/internal/servers"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// DefaultServer is the built-in server a run starts when none is named:
// blocking I/O on a thread per connection, whose user space does the
// least of the seven, so that the kernel's part of a round trip stands
// out. On a 2-vCPU VM its one-client p50 read 21 µs with 0.5 s medians
// within ±1% in quiet stretches, where the goroutine server read 33 µs
// over a wide, two-peaked distribution whose 0.5 s medians moved ±10%.
const DefaultServer = "threads"

// Config is one measurement. The zero value runs the default server with
// one client and no probe.
type Config struct {
	Server     string        // a server spec (SpecSyntax); default DefaultServer
	Self       string        // the volleyscope binary that runs built-in servers; default this executable
	Addr       string        // a running server host:port; overrides Server
	ServerCPUs []int         // CPUs for the server process; nil: not pinned
	ServerPort int           // port for a started server; 0 picks a free one
	ServerSpin time.Duration // busy-work per request in built-in servers
	Load       loadgen.Options
	Probe      bool   // attach the eBPF probe and join the breakdown
	ProbeMode  string // hook family: auto, tracepoint, fentry, kprobe
	Syscalls   bool   // add the per-syscall latency table
	Record     string // save the raw event stream and client records here
	// NetNS runs a started server in a network namespace of its own,
	// joined to ours by a veth pair that the run creates and removes.
	NetNS bool
	Netem string // netem arguments for that veth pair (e.g. "delay 100us"); needs NetNS
	Out   string // write results.json, requests.csv and latency.hlog into this directory

	// Progress receives load progress; Note receives one-line notices
	// (server started, probe hooks chosen). Both may be nil.
	Progress func(loadgen.Progress)
	Note     func(string)
}

// Outcome is what a measurement produced. It is returned, partly filled,
// alongside an error whenever anything was measured.
type Outcome struct {
	Results *report.Results // also written to Config.Out
	Load    *loadgen.Result
}

// DefaultCPUs picks a client/server placement: on a machine with two or
// more CPUs the server gets CPU 0 and the clients the others, the layout
// whose cross-CPU wake-ups a breakdown is most often asked about.
func DefaultCPUs() (client, server []int) {
	n := runtime.NumCPU()
	if n < 2 {
		return nil, nil
	}
	for c := 1; c < n; c++ {
		client = append(client, c)
	}
	return client, []int{0}
}

// Run performs one measurement. Round trips stream from the load
// generator through the join (with the probe) into the output files as
// they complete; the summary is built once at the end.
func Run(ctx context.Context, cfg Config) (*Outcome, error) {
	note := func(s string) {
		if cfg.Note != nil {
			cfg.Note(s)
		}
	}
	if cfg.Server == "" {
		cfg.Server = DefaultServer
	}
	// Say what is missing, or cannot be written, before anything starts.
	if cfg.Probe {
		if err := probe.Check(); err != nil {
			return nil, err
		}
	}
	if cfg.Record != "" {
		if err := report.PrepareFile(cfg.Record); err != nil {
			return nil, fmt.Errorf("--record: %w", err)
		}
	}
	var out *report.Out
	if cfg.Out != "" {
		var cols []string
		if cfg.Probe {
			cols = breakdown.Names()
		}
		var err error
		if out, err = report.OpenOut(cfg.Out, cols); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		defer out.Abort() // after Commit, nothing is left to remove
	}
	parts := report.Parts{Meta: report.HostMeta()}
	parts.Meta.IOUring = servers.IOUringFeatures()
	parts.Meta.ServerCPUs = cfg.ServerCPUs
	parts.Meta.ServerSpin = cfg.ServerSpin.Nanoseconds()

	var spec Spec
	if cfg.Addr == "" {
		var err error
		if spec, err = ParseSpec(cfg.Server); err != nil {
			return nil, err
		}
		cfg.Addr = spec.Addr // addr=HOST:PORT: a running server
	}
	if err := pickProto(&cfg.Load, spec.Builtin); err != nil {
		return nil, err
	}
	var srv *serverproc.Proc
	if cfg.Addr != "" {
		parts.Meta.Server = cfg.Addr
		parts.Meta.ServerCPUs = nil
		cfg.Load.Addr = cfg.Addr
	} else {
		sopts, err := serverOptions(cfg.Self, spec, cfg.Load.Proto, cfg.ServerSpin)
		if err != nil {
			return nil, err
		}
		parts.Meta.Server = spec.Builtin
		if spec.Builtin == "" {
			parts.Meta.Server = strings.Join(spec.Argv, " ")
		}
		sopts.CPUs = cfg.ServerCPUs
		if !sopts.FixedPort {
			sopts.Port = cfg.ServerPort
		}
		if cfg.NetNS {
			pair, err := netns.Create()
			if err != nil {
				return nil, err
			}
			defer pair.Close() // on every way out, Ctrl-C included
			if cfg.Netem != "" {
				if err := pair.Netem(cfg.Netem); err != nil {
					return nil, err
				}
			}
			if spec.Builtin != "" { // a built-in: listen on the veth
				sopts.Argv = append(sopts.Argv, "--host", pair.NSAddr)
			}
			sopts.Argv, sopts.Host = pair.Exec(sopts.Argv), pair.NSAddr
			parts.Meta.Network = fmt.Sprintf("veth %s (%s) ↔ %s (%s) in namespace %s", pair.HostIf, pair.HostAddr, pair.NSIf, pair.NSAddr, pair.NS)
			if cfg.Netem != "" {
				parts.Meta.Network += ", netem " + cfg.Netem
			}
			note("network: " + parts.Meta.Network)
		}
		srv, err = serverproc.Start(ctx, sopts)
		if err != nil {
			return nil, err
		}
		note(fmt.Sprintf("server %s started: pid %d, port %d, CPUs %v", spec.Label, srv.PID(), srv.Port, cfg.ServerCPUs))
		cfg.Load.Addr = srv.Addr
	}
	stopServer := func() {
		if srv != nil {
			srv.Stop()
		}
	}
	// Everything of ours but the server (the runtime, the probe reader,
	// progress, the join) stays on the client CPUs from here on; the
	// server was forked from a thread pinned to its own.
	undoConfine, err := affinity.ConfineProcess(cfg.Load.ClientCPUs)
	if err != nil {
		stopServer()
		return nil, err
	}
	defer undoConfine()
	if cfg.Progress != nil {
		cfg.Load.Progress = cfg.Progress
	}

	// Round trips outside the measured window go to requests.csv at once;
	// measured ones too without the probe, or once joined with it.
	var csvMu sync.Mutex
	row := func(conn int, seq int64, r loadgen.Record, measured bool, ns []int64) {
		csvMu.Lock()
		out.Requests.Row(conn, seq, r, measured, ns)
		csvMu.Unlock()
	}
	var pr *probeRun
	if cfg.Probe {
		pid, port := 0, uint16(0)
		if srv != nil {
			pid, port = srv.PID(), uint16(srv.Port)
		} else if pid, port, err = serverproc.Find(cfg.Addr); err != nil {
			return nil, err
		} else {
			note(fmt.Sprintf("server at %s is pid %d", cfg.Addr, pid))
		}
		var onTrip func(*breakdown.RoundTrip, loadgen.Record)
		if out != nil {
			onTrip = func(rt *breakdown.RoundTrip, r loadgen.Record) {
				var ns []int64
				if rt.Joined {
					ns = rt.Ns[:]
				}
				row(rt.Conn, int64(rt.Seq), r, true, ns)
				out.Trace.Add(rt) // the stream calls onTrip from one goroutine
			}
		}
		pr, err = startProbe(cfg, pid, port, note, onTrip)
		if err != nil {
			stopServer()
			return nil, err
		}
		defer pr.stop() // idempotent: also on early returns and panics
		cfg.Load.ClientsReady = pr.clientsReady
		// The probe measures its own cost during the warm-up only: the
		// kernel's run statistics would slow the measured round trips.
		progress := cfg.Load.Progress
		cfg.Load.Progress = func(g loadgen.Progress) {
			if !g.Warmup {
				pr.stopStats()
			}
			if progress != nil {
				progress(g)
			}
		}
	}
	if out != nil || pr != nil {
		cfg.Load.Sink = func(d loadgen.Delivery) {
			if pr != nil {
				pr.delivered(d)
			}
			if out == nil {
				return
			}
			if d.Measured {
				out.Log.Add(d.Record)
			}
			if pr == nil || !d.Measured {
				row(d.Conn, d.Seq, d.Record, d.Measured, nil)
			}
		}
	}
	if out != nil {
		cfg.Load.Began = out.Log.Begin
	}
	cost := costMeter(srv, cfg.Addr, &cfg.Load)

	load, runErr := loadgen.Run(ctx, cfg.Load)
	var probeErr error
	if pr != nil {
		probeErr = pr.stop()
	}
	var stopErr error
	if srv != nil {
		if runErr != nil {
			srv.WaitExit(300 * time.Millisecond) // a dying server is reaped, so its status can be told
		}
		if dead, how := srv.Exited(); dead {
			died := fmt.Errorf("server %s: %w: %s", parts.Meta.Server, serverproc.ErrExited, how)
			if runErr != nil {
				died = fmt.Errorf("%w (%w)", runErr, died)
			}
			runErr = died
		}
		stopErr = srv.Stop()
	}
	if load == nil {
		return nil, runErr
	}
	parts.Load = load
	parts.ServerCost = cost.per(load.ThroughputRPS)
	for _, e := range []error{runErr, stopErr} {
		if e != nil {
			parts.Errors = append(parts.Errors, e.Error())
		}
	}
	var recErr error
	if pr != nil {
		if probeErr != nil {
			parts.Errors = append(parts.Errors, "probe: "+probeErr.Error())
		}
		parts.Probe = pr.parts(cfg)
		parts.Warnings = append(parts.Warnings, pr.neighbours...)
		parts.Join = pr.stream.Summary()
		parts.ServerSends = pr.stream.ServerSends(load.Window.Start, load.Window.End)
		if t := pr.stream.Syscalls(); t != nil {
			parts.Syscalls = t.Stats()
			if c := parts.ServerCost; c != nil && load.Measured+load.Outside > 0 {
				var n int64
				for _, s := range parts.Syscalls {
					if s.Side == "server" {
						n += s.Count
					}
				}
				c.Syscalls = float64(n) / float64(load.Measured+load.Outside)
			}
		}
		parts.Uring = pr.stream.Uring().Stats()
		if pr.rec != nil {
			if recErr = pr.rec.close(load.Window); recErr != nil {
				parts.Errors = append(parts.Errors, recErr.Error())
			}
		}
	}
	res := report.Build(parts)
	o := &Outcome{Results: res, Load: load}
	if out != nil {
		if out.Trace != nil && parts.Join != nil {
			out.Trace.SetSlowest(parts.Join.Slowest())
		}
		if err := out.Commit(res); err != nil {
			return o, errors.Join(runErr, err)
		}
	}
	if runErr == nil && recErr != nil {
		runErr = recErr
	}
	if runErr == nil && pr != nil {
		runErr = LostEvents(pr.lost, pr.readerLate)
	}
	return o, runErr
}
