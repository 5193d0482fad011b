package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/servers"
	"github.com/volleyscope/volleyscope/internal/session"
	"github.com/volleyscope/volleyscope/loadgen"
)

// captureStdout runs fn with os.Stdout going to a pipe and returns what
// it wrote.
func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	defer func() {
		os.Stdout = saved
	}()
	fn()
	w.Close()
	return string(<-done)
}

func TestFlagValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the usage error; "" for none
	}{
		{nil, ""},
		{[]string{"--size", "0", "--proto", "echo"}, "--size 0"},
		{[]string{"--size", "100"}, "--size sets the payload with --proto echo"},
		{[]string{"--duration", "0"}, "--duration 0s"},
		{[]string{"--duration", "-5s"}, "--duration -5s"},
		{[]string{"--confidence", "2"}, "--confidence 2"},
		{[]string{"--confidence", "0"}, "--confidence 0"},
		{[]string{"--timeout", "0"}, "--timeout 0s"},
		{[]string{"--requests", "-5"}, "--requests -5"},
		{[]string{"--requests", "0"}, ""},
		{[]string{"--warmup", "0"}, ""},
		{[]string{"--warmup", "-1s"}, "--warmup -1s"},
		{[]string{"--ci", "0"}, ""},
		{[]string{"--ci", "-0.1"}, "--ci -0.1"},
		{[]string{"--ci", "1"}, "--ci 1"},
		{[]string{"--p99-ci", "-1"}, "--p99-ci -1"},
		{[]string{"--p99-ci", "0"}, ""},
		{[]string{"--clients", "0"}, "--clients 0"},
		{[]string{"--client-model", "fibers"}, "--client-model"},
		{[]string{"--client-model", "epoll"}, ""},
		{[]string{"--rate", "-1"}, "--rate -1"},
		{[]string{"--rate", "NaN"}, "--rate NaN"},
		{[]string{"--rate", "5000"}, ""},
		{[]string{"--connect-rate", "-1"}, "--connect-rate -1"},
		{[]string{"--connect-timeout", "0"}, "--connect-timeout 0s"},
		{[]string{"--no-mser"}, ""},
		{[]string{"--proto", "smtp"}, "--proto"},
		{[]string{"--addr", "127.0.0.1:1", "--proto", "http", "--http-path", "/a", "--header", "Accept: */*", "--http-status", "200-399"}, ""},
		{[]string{"--server", "http", "--http-path", "/a"}, ""},
		{[]string{"--http-path", "/a"}, "--http-path configures --proto http"},
		{[]string{"--header", "A: b"}, "--header configures --proto http"},
		{[]string{"--http-status", "404"}, "--http-status configures --proto http"},
		{[]string{"--keys", "5"}, "--keys configures --proto redis"},
		{[]string{"--mix", "9:1"}, "--mix configures --proto redis"},
		{[]string{"--server", "resp", "--mix", "9:1"}, ""},
		{[]string{"--proto", "http"}, "--proto: built-in server threads speaks pingpong"},
		{[]string{"--server", "nosuch"}, "--server"},
		{[]string{"--server", "thread"}, `did you mean "threads"`},
		{[]string{"--server", "port=abc:"}, "--server"},
		{[]string{"--server", "/bin/true", "--server-spin", "1ms"}, "--server-spin"},
		{[]string{"--addr", "nonsense"}, "--addr"},
		{[]string{"--addr", "127.0.0.1:99999"}, "--addr"},
		{[]string{"--addr", ":9000"}, "--addr"},
		{[]string{"--size", "99999999999", "--proto", "echo"}, "--size"},
		{[]string{"--clients", "99999999999"}, "--clients"},
		{[]string{"--proto", "http", "--header", "no colon"}, "--header"},
		{[]string{"--proto", "http", "--http-status", "7xx"}, "--http-status"},
		{[]string{"--proto", "echo", "--http-path", "/a"}, "--http-path configures --proto http"},
		{[]string{"--server", "resp", "--proto", "redis", "--mix", "9:1", "--keys", "10", "--size", "100"}, ""},
		{[]string{"--proto", "redis", "--size", "100"}, "add --mix"},
		{[]string{"--proto", "memcache", "--mix", "0:0"}, "--mix"},
		{[]string{"--proto", "memcache", "--keys", "0"}, "--keys 0"},
		{[]string{"--proto", "pingpong", "--mix", "1:1"}, "--mix configures --proto redis or memcache"},
		{[]string{"--proto", "line", "--request", `PING\r\n`, "--expect", `+PONG\r\n`}, ""},
		{[]string{"--proto", "line", "--request", "PING"}, "needs --request STR and --expect STR"},
		{[]string{"--proto", "line", "--request", `\q`, "--expect", "x"}, "--request"},
		{[]string{"--request", "x"}, "add --proto line"},
		{[]string{"--client-cpus", "99"}, "--client-cpus"},
		{[]string{"--server-spin", "-1us"}, "--server-spin"},
		{[]string{"--addr", "127.0.0.1:1", "--server", "threads"}, "exclude each other"},
		{[]string{"--addr", "127.0.0.1:1", "--server-spin", "1us"}, "--server-spin works with"},
		{[]string{"--nonsense"}, "unknown flag"},
		{[]string{"extra"}, "want no arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, _, err := parseRun(tc.args, false)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v, want a usage error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
			if exitStatus(err) != statusUsage {
				t.Errorf("exit status %d, want %d", exitStatus(err), statusUsage)
			}
		})
	}
}

// TestFlagMeanings: the values a flag documents as special reach loadgen
// with loadgen's meaning for them.
func TestFlagMeanings(t *testing.T) {
	_, cfg, _, err := parseRun([]string{"--warmup", "0", "--ci", "0", "--p99-ci", "0", "--requests", "0"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Load.Warmup >= 0 {
		t.Errorf("--warmup 0 gave Options.Warmup %v, want negative (none)", cfg.Load.Warmup)
	}
	if cfg.Load.CI >= 0 || cfg.Load.P99CI >= 0 {
		t.Errorf("--ci 0 --p99-ci 0 gave Options.CI %v, P99CI %v, want both negative (no target)", cfg.Load.CI, cfg.Load.P99CI)
	}
	_, cfg, _, err = parseRun(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Load.Warmup != loadgen.DefaultWarmup || cfg.Load.CI != loadgen.DefaultCI || cfg.Load.Duration != loadgen.DefaultDuration {
		t.Errorf("defaults: warmup %v ci %v duration %v", cfg.Load.Warmup, cfg.Load.CI, cfg.Load.Duration)
	}
}

// TestFlagDefaultsAreLoadgens: the flag defaults are what loadgen makes of
// zero Options, so a run with no flags and a library caller with zero
// Options measure the same way.
func TestFlagDefaultsAreLoadgens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv, err := servers.Lookup("goroutine")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go srv.Serve(ctx, ln.(*net.TCPListener), servers.Options{})
	res, err := loadgen.Run(ctx, loadgen.Options{Addr: ln.Addr().String(), Requests: 20}, loadgen.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	fs := newFlagSet("bench", benchHelp)
	var lf loadFlags
	lf.register(fs, true, loadgen.DefaultDuration)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	o := res.Options
	for _, c := range []struct {
		flag       string
		flagv, lib any
	}{
		{"clients", lf.clients, o.Clients},
		{"proto", lf.proto, string(o.Proto)},
		{"size", lf.size, o.Size},
		{"duration", lf.duration, o.Duration},
		{"ci", lf.ci, o.CI},
		{"p99-ci", lf.p99CI, o.P99CI},
		{"confidence", lf.confidence, o.Confidence},
		{"warmup", lf.warmup, o.Warmup},
		{"timeout", lf.timeout, o.Timeout},
		{"client-model", lf.clientModel, "auto"},                              // loadgen.ClientAuto is "", its name "auto"
		{"connect-timeout", lf.connectTimeout, loadgen.DefaultConnectTimeout}, // applied at set-up, not kept in Summary.Options
		{"connect-rate", lf.connectRate, o.ConnectRate},
		{"rate", lf.rate, o.Rate},
		{"no-mser", lf.noMSER, o.NoMSER},
		{"requests", lf.requests, int64(0)},
	} {
		if fmt.Sprint(c.flagv) != fmt.Sprint(c.lib) {
			t.Errorf("--%s defaults to %v, loadgen's zero Options to %v", c.flag, c.flagv, c.lib)
		}
	}
}

func TestExitStatus(t *testing.T) {
	lost := fmt.Errorf("probe: %w", session.ErrLostEvents)
	other := errors.New("connection 0 request 5: timeout")
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"ok", nil, statusOK},
		{"error", other, statusError},
		{"usage", usagef("--size 0: want at least 1 byte"), statusUsage},
		{"already reported", exitError{statusLostEvents}, statusLostEvents},
		{"cancelled", fmt.Errorf("pair 2: %w", context.Canceled), statusInterrupted},
	} {
		if got := exitStatus(tc.err); got != tc.want {
			t.Errorf("%s: exitStatus(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name, stop string
		err        error
		want       int
	}{
		{"ok", loadgen.StopDuration, nil, statusOK},
		{"interrupted", loadgen.StopInterrupted, nil, statusInterrupted},
		{"interrupted with lost events", loadgen.StopInterrupted, lost, statusInterrupted},
		{"lost events", loadgen.StopDuration, lost, statusLostEvents},
		{"lost events joined", loadgen.StopDuration, errors.Join(lost, session.LostEvents(7, 0)), statusLostEvents},
		{"lost events and an error", loadgen.StopError, errors.Join(other, lost), statusError},
		{"error", loadgen.StopError, other, statusError},
	} {
		if got := runStatus(tc.stop, tc.err); got != tc.want {
			t.Errorf("%s: runStatus = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestHelp: every command prints its help on stdout, with usage, a
// description and examples, by 'help CMD' and by 'CMD --help' alike, and
// exits 0.
func TestHelp(t *testing.T) {
	for _, cmd := range []string{"run", "bench", "vs", "compare", "servers", "serve", "agent"} {
		t.Run(cmd, func(t *testing.T) {
			var err1, err2 error
			viaHelp := captureStdout(t, func() { err1 = run(context.Background(), "help", []string{cmd}) })
			viaFlag := captureStdout(t, func() { err2 = run(context.Background(), cmd, []string{"--help"}) })
			if err1 != nil || err2 != nil {
				t.Fatalf("help %s: %v; %s --help: %v", cmd, err1, cmd, err2)
			}
			if viaHelp != viaFlag {
				t.Errorf("'help %s' and '%s --help' differ:\n%s\n---\n%s", cmd, cmd, viaHelp, viaFlag)
			}
			if !strings.HasPrefix(viaHelp, "usage: volleyscope "+cmd) {
				t.Errorf("help does not start with the usage line:\n%s", viaHelp)
			}
			if !strings.Contains(viaHelp, "examples:") {
				t.Errorf("help has no examples:\n%s", viaHelp)
			}
			if _, after, ok := strings.Cut(viaHelp, "flags:\n"); ok && strings.TrimSpace(after) == "" {
				t.Errorf("help has an empty flags section:\n%s", viaHelp)
			}
		})
	}
	if agent := captureStdout(t, func() { run(context.Background(), "agent", []string{"--help"}) }); strings.Contains(agent, "--test-clock") {
		t.Errorf("agent's help shows the test-only --test-clock:\n%s", agent)
	}
	vs := captureStdout(t, func() { run(context.Background(), "vs", []string{"--help"}) })
	for _, rejected := range []string{"--addr", "--server "} {
		if strings.Contains(vs, rejected) {
			t.Errorf("vs --help lists %s, which vs does not take", rejected)
		}
	}
	if err := run(context.Background(), "help", []string{"nonsense"}); exitStatus(err) != statusUsage {
		t.Errorf("help nonsense: %v, want a usage error", err)
	}
}

// TestOutCheckedFirst: an --out or --record that cannot be written stops
// the command before anything is measured. --addr points at a port where
// nothing listens: had measuring begun, the error would be a connect error.
func TestOutCheckedFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cmd  string
		args []string
		want string
	}{
		{"bench", []string{"--out", "/proc/x"}, "create output directory: mkdir /proc/x"},
		{"bench", []string{"--out", file}, "not a directory"},
		{"run", []string{"--record", "/proc/x/rec"}, "--record: output file /proc/x/rec"},
		{"run", []string{"--record", t.TempDir()}, "is a directory"},
	} {
		t.Run(strings.Join(append([]string{tc.cmd}, tc.args...), " "), func(t *testing.T) {
			args := append([]string{"--addr", addr, "--duration", "1s", "-q"}, tc.args...)
			var err error
			out := captureStdout(t, func() { err = run(context.Background(), tc.cmd, args) })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			if out != "" {
				t.Errorf("printed %q", out)
			}
		})
	}
}

func TestProgress(t *testing.T) {
	for _, tc := range []struct {
		name       string
		tty, quiet bool
		lines      int // newline-terminated lines for 12 s of updates
		cr         bool
	}{
		{"file", false, false, 0, false}, // no status lines in a file or pipe
		{"quiet file", false, true, 0, false},
		{"quiet terminal", true, true, 0, false},
		{"terminal", true, false, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			clock := time.Unix(0, 0)
			p := newProgressTo(&buf, tc.tty, tc.quiet)
			p.now = func() time.Time { return clock }
			p.last = clock
			for i := range 120 {
				clock = clock.Add(100 * time.Millisecond)
				p.update(loadgen.Progress{Elapsed: time.Duration(i) * 100 * time.Millisecond, Measured: i * 1000, Mean: 50e3})
			}
			p.done()
			out := buf.String()
			if got := strings.Count(out, "\n"); got != tc.lines {
				t.Errorf("%d lines, want %d:\n%q", got, tc.lines, out)
			}
			if strings.Contains(out, "\r") != tc.cr {
				t.Errorf("carriage returns: %v, want %v: %q", !tc.cr, tc.cr, out)
			}
		})
	}
}

// TestProgressETA: a p50 interval twice its target after 2 s measured
// needs about three times as long again (the width shrinks as one over
// the square root of time); past the cap, the cap is named.
func TestProgressETA(t *testing.T) {
	p := newProgressTo(new(bytes.Buffer), true, false)
	p.aim(0.01, 0.05, time.Minute, 0)
	g := loadgen.Progress{Elapsed: 2 * time.Second, Measured: 1000, RelCI: 0.02, P99RelCI: 0.04}
	if got := p.eta(g); got != ", targets in ~6s" {
		t.Errorf("eta %q, want %q", got, ", targets in ~6s")
	}
	g.RelCI = 0.2
	if got := p.eta(g); got != ", the 1m0s cap first" {
		t.Errorf("eta %q, want the cap", got)
	}
	g.Warmup = true
	if got := p.eta(g); got != "" {
		t.Errorf("eta during warm-up %q, want none", got)
	}
}

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // fmt of the list, or "error"
	}{
		{"", "[]"},
		{"1", "[1]"},
		{"0,2-3", "[0 2 3]"},
		{" 1 , 0 ", "[1 0]"},
		{"1,1-2", "[1 2]"},
		{"4", "error"},
		{"3-1", "error"},
		{"a", "error"},
		{"-1", "error"},
	} {
		got, err := parseCPUList(tc.in, 4)
		s := fmt.Sprint(got)
		if err != nil {
			s = "error"
		}
		if s != tc.want {
			t.Errorf("parseCPUList(%q) = %s (%v), want %s", tc.in, s, err, tc.want)
		}
	}
}

func TestSweepLevels(t *testing.T) {
	for _, tc := range []struct {
		clients, rates string
		want           string // the levels' names, or "error"
		sorted         bool
	}{
		{"1,4,16", "", "clients-1 clients-4 clients-16", false},
		{"8", "1000, 2000", "rate-1000 rate-2000", false},
		{"4,1", "", "clients-1 clients-4", true},
		{"16,1,4", "", "clients-1 clients-4 clients-16", true},
		{"8", "2000,1000", "rate-1000 rate-2000", true},
		{"1,2", "1000", "error", false},
		{"0,4", "", "error", false},
		{"x", "", "error", false},
		{"4", "-5", "error", false},
		{"", "", "error", false},
		{"1,,4", "", "error", false},
		{"1,4,", "", "error", false},
		{"1,4,1", "", "error", false},
		{"8", "1000,1e3", "error", false},
	} {
		levels, sorted, err := sweepLevels(tc.clients, tc.rates)
		got := "error"
		if err == nil {
			names := make([]string, len(levels))
			for i, l := range levels {
				names[i] = l.Name(i)[3:]
			}
			got = strings.Join(names, " ")
		}
		if got != tc.want || sorted != tc.sorted {
			t.Errorf("sweepLevels(%q, %q) = %s, sorted %v (%v); want %s, sorted %v", tc.clients, tc.rates, got, sorted, err, tc.want, tc.sorted)
		}
	}
}

// TestProgressWarmup: the warm-up's status line counts it down rather
// than showing zero round trips.
func TestProgressWarmup(t *testing.T) {
	p := newProgressTo(new(bytes.Buffer), true, false)
	p.aim(0.01, 0.05, time.Minute, 2*time.Second)
	got := p.status(loadgen.Progress{Elapsed: 500 * time.Millisecond, Warmup: true})
	if !strings.Contains(got, "warming up (1.5 s left)") || strings.Contains(got, "0 round trips") {
		t.Errorf("status %q, want the warm-up counted down", got)
	}
	got = p.status(loadgen.Progress{Elapsed: 3 * time.Second, Warmup: true})
	if !strings.Contains(got, "warming up (deciding where the measured window starts)") {
		t.Errorf("status past the warm-up %q", got)
	}
}
