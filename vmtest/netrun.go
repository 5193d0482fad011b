package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/report"
)

// netScenario is what a networked guest serves and what the host runs
// against it through the tap: the test of a second kernel and clock
// reached over a real (emulated) NIC.
type netScenario struct {
	// What names the scenario's verdict line ("run=NAME").
	What string
	// Port is where the guest's command listens, on the guest's address.
	Port int
	// Guest are the arguments of /volleyscope in the guest.
	Guest func(e netEnd) []string
	// Host are the arguments of volleyscope on the host, run inside the
	// namespace once the guest answers on Port.
	Host func(e netEnd) []string
	// Check judges the host command's standard output (its --json); the
	// string is the verdict's detail.
	Check func(stdout []byte, f netFacts) (string, error)
	// Needs, when set, says what the volleyscope binary lacks for this
	// scenario ("" when it has everything): the scenario is then a SKIP
	// naming it, not a FAIL.
	Needs func(volleyscope string) string
}

// netFacts are what the host saw of the boot, for Check.
type netFacts struct {
	// StartMonoNs and ReadyMonoNs are the host's CLOCK_MONOTONIC when
	// qemu started and when the guest said it served: the guest's own
	// CLOCK_MONOTONIC started from zero in between, so the guest's clock
	// minus the host's is about minus a time in that span.
	StartMonoNs, ReadyMonoNs int64
}

// netEnd is what a scenario's command lines are made from.
type netEnd struct {
	GuestAddr string // the guest's IPv4 address
	Addr      string // GuestAddr:Port, where the guest's command answers
	Token     string // a secret made for this boot, for an agent's --token
}

// serveBenchPort is where serveBench's server listens in the guest.
const serveBenchPort = 9000

// serveBench proves the path: the guest runs a built-in server on its
// address, the host's 'volleyscope bench' drives it through the tap for
// a fixed two seconds (no stopping target: under TCG the intervals are
// the emulator's), and every connection and round trip must complete.
// Clients are not pinned (qemu holds a CPU of its own anyway), and --wait
// queues the run behind another volleyscope run that holds a CPU it
// measures, rather than failing: the machine is shared.
var serveBench = netScenario{
	What: "run=net-bench",
	Port: serveBenchPort,
	Guest: func(e netEnd) []string {
		return []string{"serve", "threads", "--host", e.GuestAddr, "-p", strconv.Itoa(serveBenchPort)}
	},
	Host: func(e netEnd) []string {
		return []string{"bench", "--addr", e.Addr, "--clients", "2",
			"--duration", "2s", "--warmup", "500ms", "--ci", "0", "--p99-ci", "0",
			"--client-cpus", "", "--wait", "--json", "--quiet"}
	},
	Check: checkBench,
}

// checkBench: the bench measured round trips, ran its whole duration and
// neither a connection nor a round trip failed.
func checkBench(stdout []byte, _ netFacts) (string, error) {
	var r report.Results
	if err := json.Unmarshal(stdout, &r); err != nil {
		return "", fmt.Errorf("read the host's results: %w", err)
	}
	s := r.Run.Setup
	switch {
	case len(r.Errors) > 0:
		return "", fmt.Errorf("the host's run has errors: %s", strings.Join(r.Errors, "; "))
	case len(s.Failures) > 0:
		return "", fmt.Errorf("%d of %d connections to the guest failed: %v", s.Attempts-s.Connections, s.Attempts, s.Failures)
	case r.Latency.Count == 0:
		return "", errors.New("the host measured no round trip with the guest")
	case r.Run.StopReason != "duration":
		return "", fmt.Errorf("the host's run stopped by %q, want duration", r.Run.StopReason)
	}
	return fmt.Sprintf("%d round trips through the tap, %d connections, p50 %.0f µs (emulated)",
		r.Latency.Count, s.Connections, r.Latency.P50/1e3), nil
}

func joinHostPort(host string, port int) string { return host + ":" + strconv.Itoa(port) }

// netBootConfig is what a networked boot needs besides the scenario.
type netBootConfig struct {
	Kernel      kernel
	Volleyscope string // the static binary, for the guest and the host
	// HostVolleyscope, when set, is the host's binary instead: a guest
	// and a host of different builds (another version's agent).
	HostVolleyscope string
	Init            string // the guest's /init
	Work            string // for the initramfs
	Boot            bootConfig
	// Timeout bounds the boot until the guest answers, and then the
	// host's command; the guest's power-off after it has stopGrace.
	Timeout time.Duration
}

// stopGrace is how long the guest has, after the host writes stopLine,
// to stop its command and power off before qemu is killed.
const stopGrace = time.Minute

// netBoot boots a guest with a NIC on a tap in a namespace of its own,
// runs the scenario, and removes the namespace whatever happens. The
// verdict is FAIL with the reason when any step fails; the boot result,
// when qemu ran, has the console log.
func netBoot(ctx context.Context, nc netBootConfig, sc netScenario) (verdict, *bootResult) {
	v := verdict{Kernel: nc.Kernel.Name, What: sc.What, Result: "FAIL"}
	detail, res, err := netBootRun(ctx, nc, sc)
	var skip skipError
	if errors.As(err, &skip) {
		v.Result, v.Detail = "SKIP", string(skip)
		return v, res
	}
	if err != nil {
		v.Detail = err.Error()
		if res != nil && res.LogPath != "" {
			v.Detail += " (console log " + res.LogPath + ")"
		}
		return v, res
	}
	v.Result, v.Detail = "PASS", detail
	return v, res
}

func netBootRun(ctx context.Context, nc netBootConfig, sc netScenario) (string, *bootResult, error) {
	if nc.Kernel.Dir == "" {
		return "", nil, errors.New("a networked guest needs a kernel package (its NIC driver is a module): not --kernel")
	}
	if sc.Needs != nil {
		if why := sc.Needs(nc.Volleyscope); why != "" {
			return "", nil, skipError(why)
		}
	}
	mods, err := resolveModules(ctx, nc.Kernel, nicModules)
	if err != nil {
		return "", nil, err
	}
	g, err := newGuestNet()
	if err != nil {
		return "", nil, err
	}
	defer func() {
		if err := g.Close(); err != nil {
			fmt.Printf("vmtest: %v\n", err)
		}
	}()
	addr := joinHostPort(g.GuestAddr, sc.Port)
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return "", nil, fmt.Errorf("make a token: %w", err)
	}
	end := netEnd{GuestAddr: g.GuestAddr, Addr: addr, Token: hex.EncodeToString(tok)}
	gc := guestConfig{
		Net:   &guestNetConfig{Addr: g.GuestCIDR()},
		Serve: &guestServe{Args: sc.Guest(end), Ready: addr, Timeout: (nc.Timeout + stopGrace).String()},
	}
	for _, m := range mods {
		gc.Net.Modules = append(gc.Net.Modules, modulePath(m))
	}
	initrd := filepath.Join(nc.Work, "initrd-net-"+nc.Kernel.Name+".cpio.gz")
	if err := buildInitramfs(initrd, binaries{Init: nc.Init, Volleyscope: nc.Volleyscope}, gc, mods...); err != nil {
		return "", nil, err
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return "", nil, fmt.Errorf("make the guest console's pipe: %w", err)
	}
	defer stdinW.Close()
	ready := make(chan string, 1)
	bc := nc.Boot
	bc.Kernel, bc.Initrd, bc.Net, bc.Stdin, bc.Ready = nc.Kernel, initrd, g, stdinR, ready
	bc.Timeout = nc.Timeout + stopGrace

	type outcome struct {
		res *bootResult
		err error
	}
	booted := make(chan outcome, 1)
	go func() {
		res, err := boot(ctx, bc)
		stdinR.Close()
		booted <- outcome{res, err}
	}()
	// Whatever happens below, qemu has ended when this returns: the
	// namespace cannot go while it holds the tap.
	var out outcome
	waited := false
	wait := func() outcome {
		if !waited {
			out, waited = <-booted, true
		}
		return out
	}
	defer wait()

	tctx, cancel := context.WithTimeout(ctx, nc.Timeout)
	defer cancel()
	facts := netFacts{StartMonoNs: monoNow()}
	select {
	case <-ready:
		facts.ReadyMonoNs = monoNow()
	case o := <-booted:
		out, waited = o, true
		if o.err != nil {
			return "", o.res, fmt.Errorf("the guest ended before it served on %s: %w", addr, o.err)
		}
		if v, ok := o.res.find("run=serve"); ok {
			return "", o.res, fmt.Errorf("the guest ended before it served on %s: %s %s", addr, v.Result, v.Detail)
		}
		return "", o.res, fmt.Errorf("the guest ended before it served on %s", addr)
	case <-tctx.Done():
		stopGuest(stdinW)
		return "", wait().res, fmt.Errorf("the guest did not serve on %s within %s", addr, nc.Timeout)
	}
	if err := g.WaitPort(tctx, addr); err != nil {
		stopGuest(stdinW)
		return "", wait().res, err
	}
	hostArgs := sc.Host(end)
	hostBin := nc.Volleyscope
	if nc.HostVolleyscope != "" {
		hostBin = nc.HostVolleyscope
	}
	argv := g.Exec(append([]string{hostBin}, hostArgs...)...)
	fmt.Printf("vmtest: host: %s\n", strings.Join(argv, " "))
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(tctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	hostErr := cmd.Run()
	stopGuest(stdinW)
	o := wait()
	if stdout.Len() > 0 && bc.LogPath != "" {
		// Kept beside the console log, for a look at what the host saw.
		path := strings.TrimSuffix(bc.LogPath, ".log") + "-host.json"
		if err := os.WriteFile(path, stdout.Bytes(), 0o644); err == nil {
			fmt.Printf("vmtest: host's output: %s\n", path)
		}
	}
	if hostErr != nil && stdout.Len() == 0 {
		return "", o.res, fmt.Errorf("host: volleyscope %s: %w: %s", hostArgs[0], hostErr, lastLines(stderr.Bytes(), 5))
	}
	detail, err := sc.Check(stdout.Bytes(), facts)
	if err != nil {
		return "", o.res, err
	}
	if hostErr != nil {
		// What it measured passed the checks, yet it failed: say both.
		return "", o.res, fmt.Errorf("host: volleyscope %s: %w: %s (its results: %s)", hostArgs[0], hostErr, lastLines(stderr.Bytes(), 5), detail)
	}
	if o.err != nil {
		return "", o.res, o.err
	}
	if v, ok := o.res.find("run=serve"); !ok || v.Result != "PASS" {
		why := "no verdict"
		if ok {
			why = v.Result + " " + v.Detail
		}
		return "", o.res, fmt.Errorf("the guest's command: %s", why)
	}
	return detail, o.res, nil
}

// skipError is a scenario that cannot run here, with the reason.
type skipError string

func (e skipError) Error() string { return string(e) }

// monoNow is the host's CLOCK_MONOTONIC in ns, the clock the run's
// results are on.
func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// stopGuest asks the guest's init to stop its command and power off.
func stopGuest(console *os.File) {
	console.WriteString(stopLine + "\n")
}

// netBootTimeout bounds a networked boot until the host's command is
// done; the guest then has stopGrace to power off.
const netBootTimeout = 4 * time.Minute

// netScenarios are the --net boots, one guest each.
var netScenarios = []netScenario{serveBench, agentRun}

// runNetBoots are the --net boots of the vmtest command: per scenario one
// guest and its verdict line, holding the machine-wide lock like every
// boot. Only a cancelled run is an error; a failed scenario is a FAIL.
func runNetBoots(ctx context.Context, o *options, k kernel, bins binaries, work, accel string) ([]verdict, error) {
	var vs []verdict
	for _, sc := range netScenarios {
		v, err := runNetBoot(ctx, o, k, bins, work, accel, sc)
		if err != nil {
			return vs, err
		}
		vs = append(vs, v)
	}
	return vs, nil
}

func runNetBoot(ctx context.Context, o *options, k kernel, bins binaries, work, accel string, sc netScenario) (verdict, error) {
	unlock, err := machineLock(ctx)
	if err != nil {
		return verdict{}, err
	}
	defer unlock()
	nc := netBootConfig{
		Kernel:      k,
		Volleyscope: bins.Volleyscope,
		Init:        bins.Init,
		Work:        work,
		Timeout:     netBootTimeout,
		Boot: bootConfig{
			Accel:   accel,
			CPU:     o.CPU,
			MemMiB:  o.MemMiB,
			CPUs:    o.CPUs,
			Verbose: o.Verbose,
			LogPath: filepath.Join(o.CacheDir, "console-"+k.Name+"-"+accel+"-"+strings.TrimPrefix(sc.What, "run=")+"-"+time.Now().Format("20060102-150405")+".log"),
		},
	}
	v, _ := netBoot(ctx, nc, sc)
	if ctx.Err() != nil {
		return v, ctx.Err()
	}
	return v, nil
}
