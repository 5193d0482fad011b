package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/volleyscope/volleyscope/internal/session"
)

var watchHelp = fmt.Sprintf(`volleyscope watch --server-pid PID | --server-port PORT [--client-pid PID]... [flags]
volleyscope watch --client-pid PID [--server-port PORT] [flags]
volleyscope watch --client-pid PID... --agent HOST:PORT (--token-file F | --token T) [--server-port PORT] [flags]

Splits the round trips of programs that volleyscope did not start: a
client on this host (--client-pid, repeatable) talking to a server on this
host (--server-pid or --server-port). Each round trip comes from the
client's socket traffic, on connections with one request in flight
(HTTP/1.1 keep-alive, RESP, memcached, ping-pong, echo): from the start of
the client's send of a request to the return of the receive that completed
its reply, the reply being complete when the client sends again, closes,
or stays silent for %v. It is split as 'run' splits its own round
trips (same components, same sum check, same outputs). A connection with
a second request sent before the reply to the first (pipelining) is named
and not split. The first bytes of each connection's first sends are read
and parsed (RESP, HTTP/1.x, memcached's text protocol): a send that holds
several requests (redis-benchmark -P) is pipelining too. The summary says
which connections were parsed and which were left to timing.

Without --client-pid only the server's side is watched: a round trip is
the server's response time on its socket, from the data ready of a
request's first byte to the start of the send of its reply's last piece,
split into the server's components (the client's are not seen).

A client whose server is on another host (no socket of this host is the
other end of its connections: another machine, or a container behind a
veth or a NAT) is watched on its side alone: its components as 'run'
names them, and beyond_host for the rest, from the request's last segment
handed to the device to the start of the reply's receive processing (or,
without those packet hooks, from the send's return to the reply's data
ready; the summary says which). Without --server-port the port is the one
the client's established connections go to; when they go to several,
--server-port chooses.

With --agent HOST:PORT the server runs on another host, where
'volleyscope agent --watch-port PORT' (or --watch-pid) was told on its own
command line to watch it: both sides are watched. The agent's probe
follows the server there and streams its events here, mapped onto this
host's clock as for 'run --agent'; the client (--client-pid, required) is
followed here. Each round trip is split into both hosts' components,
adding up to the client's latency, and the summary gets the two-host
section (clock estimate, one-way times). --server-port, if given, must be
a port the agent watches; a lost agent ends the watch with what it
measured.

With --listen ADDR the watch runs as a monitor: it serves Prometheus
metrics at http://ADDR/metrics (per-component latency histograms
volleyscope_watch_component_seconds, the round trips' latency
volleyscope_watch_latency_seconds, counters of requests, unjoined requests
and lost events, labelled by side and port). It binds ADDR alone and
admits only scrapers that present the bearer token in --listen-token-file
(required); a Prometheus scrape config gives it with authorization:
{credentials_file: FILE}.

--cpus LIST keeps the watch's own threads on those CPUs: put them where
the watched programs are not, or the watch takes their turns.

Every --refresh it prints a line on the round trips since the last (rate,
p50, p99, the share split, the largest component). It watches until
--duration passes, Ctrl-C, or a watched process exits (each a normal end,
exit status 0), then prints and writes (--out) what it measured. Needs
root or CAP_BPF+CAP_PERFMON; the processes must be in this network
namespace. Nothing stays attached after it exits.

examples:
  volleyscope watch --server-port 6379 --client-pid $(pgrep -n redis-benchma) --duration 10s
  volleyscope watch --server-pid $(pgrep -o nginx) --client-pid 4242 --out /tmp/watch
  volleyscope watch --server-port 11211 --duration 30s     the server's side alone
  volleyscope watch --client-pid $(pgrep -n myservice) --server-port 5432     the client's side alone
  volleyscope watch --server-port 6379 --listen 127.0.0.1:9464 --listen-token-file /etc/volleyscope/token
  volleyscope watch --client-pid $(pgrep -n redis-benchma) --agent 10.0.0.2:7470 --token-file tok --duration 10s
`, session.WatchIdle) + watchExitText

func cmdWatch(ctx context.Context, args []string) error {
	fs := newFlagSet("watch", watchHelp)
	var wc session.WatchConfig
	lf := &loadFlags{}
	var pf probeFlags
	fs.IntVar(&wc.ServerPID, "server-pid", 0, "the server: a process listening on a TCP port (its only one, or --server-port's)")
	fs.IntVar(&wc.ServerPort, "server-port", 0, "the server's listening TCP port (with --client-pid alone, on another host: the port its connections go to)")
	fs.IntSliceVar(&wc.ClientPIDs, "client-pid", nil, "a client process on this host whose round trips to the server are split (repeatable)")
	fs.DurationVar(&wc.Duration, "duration", 0, "how long to watch; 0: until Ctrl-C or a watched process exits")
	fs.StringVar(&pf.mode, "probe-mode", "auto", "hook family: auto (best that loads, per event), tracepoint, fentry or kprobe")
	fs.BoolVar(&wc.Syscalls, "syscalls", false, "also trace every syscall: round trips from the send syscall's entry to the receive syscall's return (as the client's own clock reads them), and the per-syscall table")
	fs.StringVar(&lf.out, "out", "", "write results.json, requests.csv, latency.hlog, report.html and trace.json into this directory")
	fs.BoolVar(&lf.json, "json", false, "results.json on stdout instead of the summary")
	var tokenFile string
	fs.StringVar(&wc.Listen, "listen", "", "continuous mode: serve Prometheus metrics at http://ADDR/metrics (HOST:PORT; binds that address only), to scrapers with the bearer token of --listen-token-file")
	fs.StringVar(&tokenFile, "listen-token-file", "", "file whose first line is the bearer token scrapers must present (required with --listen; Prometheus: authorization: {credentials_file: FILE})")
	fs.DurationVar(&wc.Refresh, "refresh", 5*time.Second, "how often the terminal gets a summary line of the round trips since the last")
	fs.BoolVarP(&lf.quiet, "quiet", "q", false, "no notices or progress on stderr")
	fs.BoolVar(&wc.Verbose, "verbose", false, "name every probe hook")
	fs.StringVar(&wc.Agent, "agent", "", "the server is on another host, watched by 'volleyscope agent --watch-port PORT' at HOST:PORT (with --token or --token-file): the split spans both hosts")
	fs.Float64Var(&wc.TraceShare, "trace-share", session.DefaultTraceShare, fmt.Sprintf("share of the time the probe records, in (0, 1]: below 1 it traces in windows of %v (e.g. 0.25: %v on, %v off) and splits only the round trips wholly inside them, for less CPU", session.TraceOn, session.TraceOn, 3*session.TraceOn))
	var cpus string
	fs.StringVar(&cpus, "cpus", "", "CPUs the watch's own threads run on (e.g. 0 or 2-3): keep them off the watched programs' CPUs; default: wherever the scheduler puts them")
	var cf credFlags
	cf.register(fs)
	if help, err := parseArgs(fs, args, 0, "no arguments, only flags"); help || err != nil {
		return err
	}
	set, err := parseCPUs(cpus)
	if err != nil {
		return usagef("--cpus: %v", err)
	}
	wc.CPUs = set
	if wc.Agent != "" {
		c, err := cf.creds(false)
		if err != nil {
			return err
		}
		wc.AgentCred = c
	} else {
		for _, n := range []string{"token", "token-file", "cert", "key", "ca"} {
			if fs.Changed(n) {
				return usagef("--%s is for an agent: add --agent HOST:PORT (a server on another host)", n)
			}
		}
	}
	if err := session.CheckTraceShare(wc.TraceShare); err != nil {
		return usagef("%v", err)
	}
	if err := pf.validate(); err != nil {
		return err
	}
	wc.ProbeMode, wc.Out = pf.mode, lf.out
	if wc.Listen != "" && tokenFile == "" {
		return usagef("--listen-token-file: --listen needs a bearer token that scrapers present: put one in a file and give --listen-token-file")
	}
	if tokenFile != "" {
		tok, err := session.ReadTokenFile(tokenFile)
		if err != nil {
			return err
		}
		wc.ListenToken = tok
	}
	started := time.Now()
	pr := newProgress(os.Stderr, lf.quiet)
	pr.aim(0, 0, wc.Duration, -1)
	res, err := session.Watch(ctx, wc, session.Callbacks{Progress: pr.update, Note: pr.note})
	pr.done()
	if res == nil {
		return err
	}
	return emit(res, lf, err, started)
}
