package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/benchstat"
)

// c10k is the connection count of the C10K lines.
const c10k = 10000

// TestBenchScale measures volleyscope under load, each figure from the
// built binary as users run it: its own peak memory and the connection
// rate at 10,000 connections ('bench'), the probe's lost events at 10,000
// connections with and without --syscalls ('run', root), the peak memory
// of a 60 s 'run' (root), and how much faster the epoll client drives 256
// connections of one server than the thread-per-connection client, in
// interleaved rounds. The memory and lost-event figures come from one run
// each and have no interval; their verdicts compare that run with the
// target.
func TestBenchScale(t *testing.T) {
	gate(t)
	exe := self(t)
	ctx := context.Background()
	c10kArgs := []string{"--server", "epoll-lt", "--clients", strconv.Itoa(c10k), "--duration", "10s"}

	t.Run("c10k_bench", func(t *testing.T) {
		limits := noFile(t, c10k)
		// Started with the usual soft limit, far too low for 10,000
		// connections, the run must raise its own.
		limits += "; " + lowerNoFile(t, 1024)
		var mem memory
		r, err := volley(ctx, exe, "bench", &mem, c10kArgs...)
		restoreNoFile(t)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Errors) > 0 {
			t.Errorf("bench at %d connections reported errors: %q", c10k, r.Errors)
		}
		if r.Run.Setup.Connections != c10k {
			t.Errorf("bench set up %d connections, want %d", r.Run.Setup.Connections, c10k)
		}
		once("c10k_loadgen_rss_mib", "%.1f", mib(mem.peak), 300)
		fmt.Printf("  c10k_loadgen_rss_mib: %s; %s\n", mem.String(), limits)
		s := r.Run.Setup
		fmt.Printf("BENCH c10k_connect_per_s %.0f\n", s.PerSecond)
		failures := "no failures"
		if len(s.Failures) > 0 {
			failures = fmt.Sprintf("failures by reason %v", s.Failures)
		}
		fmt.Printf("  c10k_connect_per_s: one run, no interval: %d of %d attempts set up in %v (slowest %v), client model %s with %d thread(s), %s\n",
			s.Connections, s.Attempts, s.Duration.Round(time.Millisecond), s.Slowest.Round(time.Microsecond), s.Model, s.Threads, failures)
	})

	for _, v := range []struct {
		name string
		args []string
	}{
		{"c10k_lost_events", c10kArgs},
		{"c10k_syscalls_lost_events", append(append([]string{}, c10kArgs...), "--syscalls")},
	} {
		t.Run(v.name, func(t *testing.T) {
			requireRoot(t)
			noFile(t, c10k)
			var mem memory
			r, err := volley(ctx, exe, "run", &mem, v.args...)
			code := exitCode(err)
			if r == nil || err != nil && code != statusLostEvents {
				t.Fatal(err)
			}
			// The run's contract: lost events exit 3 with results
			// written, no lost events exit 0.
			if (r.LostEvents > 0) != (code == statusLostEvents) {
				t.Errorf("run lost %d events and exited %d: want exit %d exactly when events are lost", r.LostEvents, code, statusLostEvents)
			}
			once(v.name, "%.0f", float64(r.LostEvents), 0)
			joined := "no breakdown check"
			if c := r.BreakdownCheck; c != nil && c.Joined+c.Unjoined > 0 {
				joined = fmt.Sprintf("joined %d of %d round trips (%.2f%%)",
					c.Joined, c.Joined+c.Unjoined, 100*float64(c.Joined)/float64(c.Joined+c.Unjoined))
				if c.Unjoined > 0 {
					joined += fmt.Sprintf(", unjoined by reason %v", c.UnjoinedReasons)
				}
			}
			fmt.Printf("  %s: one run, no interval; %s; exit status %d; %d connections in %v, stopped on %q after %.1f s measured, %.0f round trips/s\n",
				v.name, joined, code, r.Run.Setup.Connections, r.Run.Setup.Duration.Round(time.Millisecond),
				r.Run.StopReason, float64(r.Run.MeasuredNs)/1e9, r.ThroughputRPS)
			fmt.Printf("  %s: memory: %s\n", v.name, mem.String())
		})
	}

	t.Run("run60s_rss", func(t *testing.T) {
		requireRoot(t)
		// No interval targets: the run really measures for 60 s.
		var mem memory
		r, err := volley(ctx, exe, "run", &mem, "--ci", "0", "--p99-ci", "0", "--duration", "60s")
		if err != nil {
			t.Fatal(err)
		}
		once("run60s_rss_mib", "%.1f", mib(mem.peak), 150)
		fmt.Printf("  run60s_rss_mib: %s; %.1f s measured at %.0f round trips/s (stopped on %q)\n",
			mem.String(), float64(r.Run.MeasuredNs)/1e9, r.ThroughputRPS, r.Run.StopReason)
	})

	t.Run("client_models_c256", func(t *testing.T) {
		ratio := &benchstat.Ratio{Name: "epoll_client_over_threads_throughput_c256", Target: 1, Floor: true}
		// A round takes far longer than its window: the thread client's
		// 256 busy threads on the one client CPU starve the run's own
		// loop, which then closes a 2 s window seconds late.
		budget := benchstat.Budget{MinRounds: 6, MaxRounds: 10, Time: 150 * time.Second}
		// Fixed windows (no interval targets), so that both models'
		// throughput is taken over the same time.
		run := func(model string) float64 {
			r, err := bench(ctx, exe, "--server", "epoll-lt", "--clients", "256", "--client-model", model,
				"--ci", "0", "--p99-ci", "0", "--duration", "2s", "--warmup", "1s")
			if err != nil {
				t.Fatal(err)
			}
			return r.ThroughputRPS
		}
		budget.Start()
		for round := 0; ; round++ {
			epoll, threads := interleave(round, func() float64 { return run("epoll") }, func() float64 { return run("threads") })
			ratio.Add(epoll, threads)
			if done, why := budget.Done(round+1, ratio); done {
				fmt.Printf("  client models c256: %d rounds, %.0fs, stopped: %s\n", round+1, budget.Elapsed().Seconds(), why)
				break
			}
			if (round+1)%3 == 0 {
				fmt.Printf("  client models c256: %d rounds, %.0fs, ±%.1f%%\n", round+1, budget.Elapsed().Seconds(), 100*ratio.RelHalfWidth())
			}
		}
		fmt.Printf("  client models c256: throughput/s epoll %v, threads %v (per round)\n", ints(ratio.Num), ints(ratio.Den))
		// A floor: the default client model is epoll from 4 connections
		// on, so at 256 it must not be the slower.
		ratio.Print(os.Stdout)
		fmt.Printf("  %s: target ≥ 1.00 (epoll, the default at 256 connections, at least as fast as threads)\n", ratio.Name)
	})
}

// statusLostEvents is volleyscope's exit status when the probe lost
// events: the results are written, the breakdown is incomplete.
const statusLostEvents = 3

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root: the probe loads eBPF programs; run 'make bench' as root for this line")
	}
}

// noFile skips t when volleyscope and the server it starts cannot each
// open conns descriptors: the hard RLIMIT_NOFILE they inherit is too low
// and they may not raise it (CAP_SYS_RESOURCE, which root in a container
// may lack). volleyscope raises its soft limit itself, and its hard limit
// when it may. It returns the limits they inherit.
func noFile(t *testing.T, conns int) string {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("read the open-file limit: %v", err)
	}
	need := uint64(conns + 100)
	if lim.Max < need && !capSysResource() {
		t.Skipf("%d connections need about %d descriptors in volleyscope and as many in its server; the hard RLIMIT_NOFILE is %d and this process may not raise it (no CAP_SYS_RESOURCE): raise it first, e.g. 'ulimit -Hn %d' in a shell that may, or in the container's settings",
			conns, need, lim.Max, need)
	}
	return fmt.Sprintf("inherited open-file limit soft %d, hard %d", lim.Cur, lim.Max)
}

// capSysResource says whether this process has CAP_SYS_RESOURCE in its
// effective set, which lets it raise a hard limit.
func capSysResource() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	f := lineFields(b, "CapEff:")
	if len(f) != 1 {
		return false
	}
	caps, err := strconv.ParseUint(f[0], 16, 64)
	return err == nil && caps&(1<<unix.CAP_SYS_RESOURCE) != 0
}

// savedNoFile is the test's own soft open-file limit while lowerNoFile
// has lowered it.
var savedNoFile *unix.Rlimit

// lowerNoFile sets the test's own soft open-file limit, which the
// processes it starts inherit, to soft until restoreNoFile (or t's end).
// Raising it back to the hard limit needs no privilege. (After a program
// sets RLIMIT_NOFILE, Go's os/exec no longer gives children the limit the
// program started with.)
func lowerNoFile(t *testing.T, soft uint64) string {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatalf("read the open-file limit: %v", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: min(soft, old.Max), Max: old.Max}); err != nil {
		t.Fatalf("lower the soft open-file limit to %d: %v", soft, err)
	}
	savedNoFile = &old
	t.Cleanup(func() { restoreNoFile(t) })
	return fmt.Sprintf("started under soft limit %d, which it had to raise", min(soft, old.Max))
}

func restoreNoFile(t *testing.T) {
	if savedNoFile == nil {
		return
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, savedNoFile); err != nil {
		t.Fatalf("restore the open-file limit to %d/%d: %v", savedNoFile.Cur, savedNoFile.Max, err)
	}
	savedNoFile = nil
}

// once prints a figure measured in one run against the most it may be:
// "BENCH name value" and "BENCH name_verdict pass|fail".
func once(name, format string, v, target float64) {
	fmt.Printf("BENCH %s "+format+"\n", name, v)
	verdict := "pass"
	if v > target {
		verdict = "fail"
	}
	fmt.Printf("BENCH %s_verdict %s\n", name, verdict)
	fmt.Printf("  %s: target ≤ "+format+"\n", name, target)
}

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// volley runs 'volleyscope sub --json -q args' and decodes the summary it
// printed. With mem non-nil it also samples the process's memory into it.
// A run that printed results but exited non-zero returns both.
func volley(ctx context.Context, exe, sub string, mem *memory, args ...string) (*results, error) {
	// --wait: another test package may be measuring on the same CPUs.
	cmd := exec.CommandContext(ctx, exe, append([]string{sub, "--json", "-q", "--wait"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var runErr error
	if mem == nil {
		runErr = cmd.Run()
	} else {
		runErr = mem.watch(cmd)
	}
	var r results
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("volleyscope %s %s: %v; no results (%w): %s", sub, strings.Join(args, " "), runErr, err, strings.TrimSpace(stderr.String()))
	}
	if runErr != nil {
		return &r, fmt.Errorf("volleyscope %s %s: %w: %s", sub, strings.Join(args, " "), runErr, strings.TrimSpace(stderr.String()))
	}
	return &r, nil
}

// memory is the peak resident memory of one volleyscope process and no
// other. wait4's ru_maxrss cannot give it alone: the kernel reports the
// larger of the process's own peak and those of the children it reaped
// (signal_struct's cmaxrss), and volleyscope starts and reaps its server.
// So the process's VmHWM (its own high-water mark) is sampled from
// /proc/PID/status until it exits; the last sample misses at most what it
// grew in its last sampling period, and ru_maxrss bounds it from above.
type memory struct {
	peak     int64         // VmHWM at the last sample, bytes
	samples  int           // samples taken
	lastGap  time.Duration // from the last sample to the exit seen
	maxRSS   int64         // wait4's ru_maxrss, bytes: max(own peak, reaped children's peaks)
	children int64         // the largest VmHWM sampled of its children (the server), bytes
	noFile   string        // its open-file limit, as /proc/PID/limits gave it during the run
	wall     time.Duration
}

// memPeriod is how often the process is sampled.
const memPeriod = 20 * time.Millisecond

// watch runs cmd, sampling its memory until it exits, and returns what
// cmd.Wait returned. The /proc/PID directory is held open from the start,
// so a later process given the same PID is never sampled (reads through
// it fail once the process is gone).
func (m *memory) watch(cmd *exec.Cmd) error {
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	dir, dirErr := os.Open("/proc/" + strconv.Itoa(cmd.Process.Pid))
	if dirErr == nil {
		defer dir.Close()
	}
	children := map[int]*os.File{}
	defer func() {
		for _, f := range children {
			f.Close()
		}
	}()
	tick := time.NewTicker(memPeriod)
	defer tick.Stop()
	var last time.Time
	for i := 0; ; i++ {
		select {
		case err := <-done:
			m.wall = time.Since(start)
			m.lastGap = time.Since(last)
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				m.maxRSS = ru.Maxrss << 10 // KiB on Linux
			}
			if dirErr != nil {
				return errors.Join(err, fmt.Errorf("sample memory of pid %d: %w", cmd.Process.Pid, dirErr))
			}
			return err
		case <-tick.C:
		}
		if dirErr != nil {
			continue
		}
		if hwm, ok := vmHWM(dir); ok {
			m.peak, last = hwm, time.Now()
			m.samples++
		}
		// The server and the limits change rarely: every 10th sample.
		if i%10 != 0 {
			continue
		}
		if b, err := readAt(dir, "limits"); err == nil {
			if f := lineFields(b, "Max open files"); len(f) >= 2 {
				m.noFile = fmt.Sprintf("open-file limit in the run soft %s, hard %s", f[0], f[1])
			}
		}
		for _, pid := range childPIDs(dir) {
			if _, ok := children[pid]; !ok {
				if f, err := os.Open("/proc/" + strconv.Itoa(pid)); err == nil {
					children[pid] = f
				}
			}
		}
		for _, f := range children {
			if hwm, ok := vmHWM(f); ok && hwm > m.children {
				m.children = hwm
			}
		}
	}
}

func (m *memory) String() string {
	return fmt.Sprintf("one run, no interval; volleyscope's own VmHWM %.1f MiB at the last of %d samples (every %v, %v before its exit was seen), wait4 ru_maxrss %.1f MiB (the larger of its own peak and its server's), server's sampled VmHWM %.1f MiB; %s; %.1f s wall",
		mib(m.peak), m.samples, memPeriod, m.lastGap.Round(time.Millisecond), mib(m.maxRSS), mib(m.children), m.noFile, m.wall.Seconds())
}

// readAt reads the file name under the /proc/PID directory dir.
func readAt(dir *os.File, name string) ([]byte, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", dir.Name(), name, err)
	}
	f := os.NewFile(uintptr(fd), dir.Name()+"/"+name)
	defer f.Close()
	return io.ReadAll(f)
}

// vmHWM is the process's peak resident set in bytes; false once it has
// exited (a zombie's status has no VmHWM).
func vmHWM(dir *os.File) (int64, bool) {
	b, err := readAt(dir, "status")
	if err != nil {
		return 0, false
	}
	f := lineFields(b, "VmHWM:")
	if len(f) != 2 || f[1] != "kB" {
		return 0, false
	}
	kb, err := strconv.ParseInt(f[0], 10, 64)
	return kb << 10, err == nil
}

// lineFields is the fields after prefix on the first line of b that
// starts with it.
func lineFields(b []byte, prefix string) []string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}

// childPIDs lists the children of every thread of the process (a child's
// parent is the thread that forked it).
func childPIDs(dir *os.File) []int {
	tasks, err := readDirAt(dir, "task")
	if err != nil {
		return nil
	}
	var pids []int
	for _, tid := range tasks {
		b, err := readAt(dir, "task/"+tid+"/children")
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(s); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func readDirAt(dir *os.File, name string) ([]string, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", dir.Name(), name, err)
	}
	f := os.NewFile(uintptr(fd), dir.Name()+"/"+name)
	defer f.Close()
	return f.Readdirnames(-1)
}
