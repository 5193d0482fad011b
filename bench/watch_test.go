package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/benchstat"
	"github.com/volleyscope/volleyscope/internal/serverproc"
)

// watchRate is the load the watch's cost is judged at: the issue's
// 10,000 requests a second.
const watchRate = 10_000

// TestBenchWatch measures what 'volleyscope watch' costs the traffic it
// watches: our client ('bench --proto redis --rate 10000', a process of
// its own) against Debian's redis-server, alone and watched (both
// sides), in interleaved rounds. The watch attaches during the client's
// 3 s warm-up, so the window measures a watched steady state. The ratios
// are the client's p50 and p99 watched over unwatched (p99 target ≤
// 1.06) and the watch process's CPU time over the client's measured
// window, a share of one CPU (target ≤ 0.01), from the kernel's
// per-thread accounting (schedstat) rather than the watch's own account.
// A round where a side failed is left out and said; three end the test.
func TestBenchWatch(t *testing.T) {
	gate(t)
	requireRoot(t)
	exe := self(t)
	redis, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (apt-get install redis-server)")
	}
	dir := t.TempDir()
	srv, err := serverproc.Start(context.Background(), serverproc.Options{
		Argv:          []string{redis, "--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", dir, "--logfile", ""},
		NoExitMessage: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port))
	args := []string{"--addr", addr, "--proto", "redis", "--clients", "1", "--rate", strconv.Itoa(watchRate),
		"--duration", "6s", "--warmup", "3s", "--ci", "0", "--p99-ci", "0", "--timeout", "10s"}
	p50 := &benchstat.Ratio{Name: "watch_p50_inflation_10k"}
	p99 := &benchstat.Ratio{Name: "watch_p99_inflation_10k", Target: 1.06}
	cpu := &benchstat.Ratio{Name: "watch_cpu_share_10k", Target: 0.01}
	budget := benchstat.Budget{MinRounds: 6, MaxRounds: 10, Time: 300 * time.Second}
	budget.Start()
	failed := 0
	for round := 0; ; round++ {
		var alone, watched *results
		var cpuNs, wallNs float64
		var aerr, werr error
		interleave(round, func() float64 {
			alone, aerr = bench(context.Background(), exe, args...)
			return 0
		}, func() float64 {
			watched, cpuNs, wallNs, werr = watchedBench(exe, srv.Port, filepath.Join(dir, fmt.Sprintf("w%d", round)), args)
			return 0
		})
		if aerr != nil || werr != nil {
			fmt.Printf("  watch round %d left out: alone %v; watched %v\n", round+1, aerr, werr)
			if failed++; failed >= 3 {
				t.Fatalf("%d rounds failed", failed)
			}
			continue
		}
		p50.Add(watched.Latency.P50, alone.Latency.P50)
		p99.Add(watched.Latency.P99, alone.Latency.P99)
		cpu.Add(cpuNs, wallNs)
		fmt.Printf("  watch round %d: p50 %.1f µs watched / %.1f µs alone, p99 %.1f / %.1f µs, %.0f/s; watch CPU %.1f ms over %.1f s\n", round+1,
			watched.Latency.P50/1e3, alone.Latency.P50/1e3, watched.Latency.P99/1e3, alone.Latency.P99/1e3, watched.ThroughputRPS, cpuNs/1e6, wallNs/1e9)
		if done, why := budget.Done(round+1, p50, p99, cpu); done {
			fmt.Printf("  watch: %d rounds, %.0fs, stopped: %s\n", round+1, budget.Elapsed().Seconds(), why)
			break
		}
	}
	for _, r := range []*benchstat.Ratio{p50, p99, cpu} {
		r.Print(os.Stdout)
	}
	fmt.Printf("  watch_p99_inflation_10k: target ≤ 1.06; watch_cpu_share_10k: target ≤ 0.01 of one CPU, at %d requests/s\n", watchRate)
}

// watchedBench runs the bench client with args and 'volleyscope watch' on
// it and the server on port; it returns the client's results and the
// watch process's CPU time over the client's measured window, and that
// window's length, ns.
func watchedBench(exe string, port int, out string, args []string) (*results, float64, float64, error) {
	type res struct {
		r   *results
		err error
	}
	done := make(chan res, 1)
	client := exec.Command(exe, append([]string{"bench", "--json", "-q", "--wait"}, args...)...)
	var stderr strings.Builder
	client.Stderr = &stderr
	stdout, err := client.StdoutPipe()
	if err != nil {
		return nil, 0, 0, err
	}
	if err := client.Start(); err != nil {
		return nil, 0, 0, err
	}
	go func() {
		r, err := decodeResults(stdout)
		done <- res{r, err}
	}()
	watch := exec.Command(exe, "watch", "--server-port", strconv.Itoa(port), "--client-pid", strconv.Itoa(client.Process.Pid), "-q", "--out", out)
	if err := watch.Start(); err != nil {
		client.Process.Kill()
		client.Wait()
		return nil, 0, 0, err
	}
	// The client's window: from its warm-up's end (3 s) for its duration
	// (6 s); sampled a little inside both ends.
	time.Sleep(3500 * time.Millisecond)
	c0, t0 := threadsCPU(watch.Process.Pid), time.Now()
	time.Sleep(5 * time.Second)
	c1, t1 := threadsCPU(watch.Process.Pid), time.Now()
	werr := watch.Wait()
	cr := <-done
	client.Wait()
	if cr.err != nil {
		return nil, 0, 0, fmt.Errorf("watched bench: %w: %s", cr.err, stderr.String())
	}
	if werr != nil {
		fmt.Printf("  watch: %v\n", werr)
	}
	return cr.r, float64(c1 - c0), float64(t1.Sub(t0).Nanoseconds()), nil
}

// threadsCPU is the CPU time of every thread of process pid so far, ns,
// from /proc/PID/task/*/schedstat (a thread that ended is not counted:
// the watch's threads live as long as it does).
func threadsCPU(pid int) int64 {
	var ns int64
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var on int64
		if _, err := fmt.Sscan(string(b), &on); err == nil {
			ns += on
		}
	}
	return ns
}

// decodeResults reads the results.json a --json run prints.
func decodeResults(r io.Reader) (*results, error) {
	var res results
	if err := json.NewDecoder(r).Decode(&res); err != nil {
		return nil, fmt.Errorf("decode results: %w", err)
	}
	_, _ = io.Copy(io.Discard, r)
	return &res, nil
}
