package session

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/serverproc"
	"github.com/volleyscope/volleyscope/loadgen"
)

// realClient is a Debian client program that a test runs against a real
// server while watch follows both: its own latency report is what the
// watched latency is held to.
type realClient struct {
	name   string // the subtest
	server string // a realServers name
	bin    string // the client program
	pkg    string // the Debian package that brings it
	// args runs the client against port for a few seconds, writing any
	// report file into dir.
	args func(port int, dir string) []string
	// own is the client's own centre of its latency, ns, from its
	// output, and which statistic it is; res is 1 ns or the program's
	// resolution.
	own func(t *testing.T, out, dir string) (ns float64, stat string, res float64)
	// syscalls watches with --syscalls: the round trip from the send
	// syscall's entry to the receive's return, for a client whose own
	// clock brackets those (ab: about a microsecond of its own work and
	// the syscalls' entry and exit, which is more than 5% here).
	syscalls bool
}

var realClients = []realClient{
	{"redis-benchmark-c1", "redis-server", "redis-benchmark", "redis-tools", func(port int, _ string) []string {
		return []string{"-p", strconv.Itoa(port), "-c", "1", "-n", "400000", "-t", "get"}
	}, redisBenchP50, false},
	{"redis-benchmark-c50", "redis-server", "redis-benchmark", "redis-tools", func(port int, _ string) []string {
		return []string{"-p", strconv.Itoa(port), "-c", "50", "-n", "600000", "-t", "get"}
	}, redisBenchP50, false},
	{"ab-nginx", "nginx", "ab", "apache2-utils", func(port int, dir string) []string {
		return []string{"-k", "-q", "-c", "1", "-t", "4", "-n", "100000000", "-e", filepath.Join(dir, "ab.csv"), fmt.Sprintf("http://127.0.0.1:%d/", port)}
	}, abP50, true},
	{"memcaslap-memcached", "memcached", "memcaslap", "libmemcached-tools", func(port int, _ string) []string {
		return []string{"-s", fmt.Sprintf("127.0.0.1:%d", port), "-T", "1", "-c", "1", "-t", "4s", "-S", "4s"}
	}, memcaslapGeo, false},
}

// redisBenchP50: redis-benchmark's p50 from its distribution, whose
// lines ("93.750% <= 0.015 milliseconds (cumulative count 395589)") give
// the round trips at or under each value: the p50 lies in the bucket
// whose count first reaches half of them. Its buckets are coarse at a few
// microseconds (0.007, 0.015, 0.023 ms): the resolution is that bucket's
// width, from the value below it.
func redisBenchP50(t *testing.T, out, _ string) (float64, string, float64) {
	type line struct{ ms, count float64 }
	var ls []line
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r", "\n"), "\n") {
		var pct, ms, n float64
		if k, _ := fmt.Sscanf(strings.TrimSpace(l), "%f%% <= %f milliseconds (cumulative count %f)", &pct, &ms, &n); k == 3 {
			ls = append(ls, line{ms, n})
		}
	}
	if len(ls) == 0 {
		t.Fatalf("redis-benchmark output has no percentile distribution:\n%s", out)
	}
	total, below := ls[len(ls)-1].count, 0.0
	for _, l := range ls {
		if l.count >= total/2 {
			return l.ms * 1e6, "p50", max((l.ms-below)*1e6, 1000)
		}
		below = l.ms
	}
	return 0, "", 0
}

// abP50: ab -e's 50th percentile row, in ms (its clock reads microseconds).
func abP50(t *testing.T, _, dir string) (float64, string, float64) {
	b, err := os.ReadFile(filepath.Join(dir, "ab.csv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "50,"); ok {
			ms, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return ms * 1e6, "p50", 1000
		}
	}
	t.Fatalf("ab.csv has no 50%% row:\n%s", b)
	return 0, "", 0
}

// memcaslapGeo: memcaslap reports no percentile; its most precise centre
// is the geometric mean of its "Total Statistics", in µs.
func memcaslapGeo(t *testing.T, out, _ string) (float64, string, float64) {
	i := strings.Index(out, "Total Statistics")
	if i < 0 {
		t.Fatalf("memcaslap output has no Total Statistics:\n%s", out)
	}
	sc := bufio.NewScanner(strings.NewReader(out[i:]))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Geo:"); ok {
			us, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return us * 1e3, "geometric mean", 1000
		}
	}
	t.Fatalf("memcaslap output has no Geo:\n%s", out)
	return 0, "", 0
}

// startRealServer starts a realServers entry on a free port of 127.0.0.1
// and stops it when t ends.
func startRealServer(t *testing.T, name, dir string) int {
	t.Helper()
	var rs realServer
	for _, r := range realServers {
		if r.name == name {
			rs = r
		}
	}
	bin := needProgram(t, rs.bin)
	spec, err := ParseSpec(rs.spec(t, bin, dir, unusedPort(t)))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := serverOptions(selfBin, spec, loadgen.HTTP, 0) // not ping-pong: stopped by SIGTERM
	if err != nil {
		t.Fatal(err)
	}
	if !opts.FixedPort {
		opts.Port = unusedPort(t)
	}
	proc, err := serverproc.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Stop() })
	return proc.Port
}

// watchClient runs a client program while watch follows it and the
// server on port, until it exits; it returns the watch's results and the
// client's output.
func watchClient(t *testing.T, port int, dir string, syscalls bool, argv ...string) (*report.Results, string) {
	t.Helper()
	return watchProgram(t, port, dir, syscalls, false, argv...)
}

// watchProgram is watchClient, or with serverOnly the server's side
// alone (the client runs, unfollowed).
func watchProgram(t *testing.T, port int, dir string, syscalls, serverOnly bool, argv ...string) (*report.Results, string) {
	t.Helper()
	// The client starts once the watch is attached: a shell that sleeps,
	// then execs it in the same process (the pid the watch follows), so
	// that its own report and the watch cover the same conditions.
	cmd := exec.Command("sh", append([]string{"-c", `sleep 1.5; exec "$0" "$@"`}, argv...)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done; done <- nil })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wc := WatchConfig{ServerPort: port, ClientPIDs: []int{cmd.Process.Pid}, Syscalls: syscalls, Out: filepath.Join(dir, "watch")}
	watchCtx := ctx
	if serverOnly {
		// The client's exit ends the watch as a watched process's would.
		wc.ClientPIDs = nil
		var stop context.CancelFunc
		watchCtx, stop = context.WithCancel(ctx)
		defer stop()
		go func() {
			select {
			case err := <-done:
				done <- err
				stop()
			case <-watchCtx.Done():
			}
		}()
	}
	res, err := Watch(watchCtx, wc, Callbacks{})
	if res == nil {
		t.Fatalf("watch: %v", err)
	}
	if err != nil {
		t.Logf("watch: %v", err)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("%s: %v\n%s", argv[0], err, out.String())
		}
	case <-ctx.Done():
		t.Fatalf("%s did not end", argv[0])
	}
	return res, out.String()
}

// TestWatchRealPrograms: watch on Debian's client programs against
// Debian's servers, both sides followed: ≥ 99% of the watched round trips
// split, ≥ 99% of those summing to their latency, and the watched
// latency's centre within 5% of the client's own report, or within the
// report's resolution where that is coarser: these clients read a
// microsecond clock, and redis-benchmark's histogram buckets are wider.
func TestWatchRealPrograms(t *testing.T) {
	requireRoot(t)
	for _, rc := range realClients {
		t.Run(rc.name, func(t *testing.T) {
			bin, err := exec.LookPath(rc.bin)
			if err != nil {
				t.Skipf("%s not installed (apt-get install %s; .ci/run installs it)", rc.bin, rc.pkg)
			}
			dir := t.TempDir()
			port := startRealServer(t, rc.server, dir)
			res, out := watchClient(t, port, dir, rc.syscalls, append([]string{bin}, rc.args(port, dir)...)...)
			own, stat, resol := rc.own(t, out, dir)
			t.Logf("%s's own %s: %.2f µs, to %.0f ns", rc.bin, stat, own/1e3, resol)
			bc := res.BreakdownCheck
			if bc == nil || bc.Joined == 0 {
				t.Fatalf("nothing split: %+v; warnings %v", bc, res.Warnings)
			}
			split := float64(bc.Joined) / float64(bc.Joined+bc.Unjoined)
			watched := res.Latency.P50
			if stat != "p50" {
				watched = geoMean(t, filepath.Join(dir, "watch", "requests.csv"))
			}
			t.Logf("%s → %s: %d round trips, split %.4f, sum check %.4f; %s watched %.2f µs, own %.2f µs (%+.1f%%)",
				rc.bin, rc.server, bc.Joined+bc.Unjoined, split, bc.SumWithinTolerance, stat, watched/1e3, own/1e3, 100*(watched-own)/own)
			if split < 0.99 || bc.SumWithinTolerance < 0.99 {
				t.Errorf("split %.4f, sum check %.4f: want ≥ 0.99 each; unjoined %v", split, bc.SumWithinTolerance, bc.UnjoinedReasons)
			}
			// Other tracers' programs on our hooks (another probed run
			// beside the tests, named in the watch's warnings) slow the
			// client's work outside the watched stretch too: then twice
			// the bound, and they are named.
			frac, floor := 0.05, resol
			for _, w := range res2warnings(res) {
				frac, floor = 0.10, 2*resol
				t.Logf("held to 10%% and %.0f ns, not 5%% and %.0f: %s", floor, resol, w)
			}
			// The client's own figure is rounded to its resolution
			// (ab's to whole microseconds): that error adds to the 5%,
			// it does not stand in for it at short latencies.
			if d := math.Abs(watched - own); d > frac*own+floor {
				t.Errorf("watched %s %.2f µs, the client's own %.2f µs: want within %.0f%% and %.0f ns", stat, watched/1e3, own/1e3, 100*frac, floor)
			}
		})
	}
}

// geoMean is the geometric mean latency of a requests.csv's measured
// round trips, ns.
func geoMean(t *testing.T, path string) float64 {
	t.Helper()
	var sum float64
	var n int
	for _, r := range readTrips(t, path) {
		if d := r.t1 - r.t0; d > 0 {
			sum += math.Log(float64(d))
			n++
		}
	}
	if n == 0 {
		t.Fatalf("%s: no round trips", path)
	}
	return math.Exp(sum / float64(n))
}

// parseLine is the summary's line on parsed and timed connections.
var parseLine = regexp.MustCompile(`request boundaries of (\d+) connections parsed[^;]*(; (\d+) of them pipelined \(as many as (\d+) requests seen in one send)?.*; (\d+) timed`)

// TestWatchRealPipelined: redis-benchmark -P 16 writes 16 GETs in one
// send; the payload capture's parser finds them, and the connection is
// reported as pipelined and none of its exchanges split (only
// redis-benchmark's own CONFIG GET before its test, on a connection of
// its own, is). Without -P, the same client is parsed as RESP and split.
// Both from the client's side and from the server's alone.
func TestWatchRealPipelined(t *testing.T) {
	requireRoot(t)
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		t.Skip("redis-benchmark not installed (apt-get install redis-tools; .ci/run installs it)")
	}
	const n = 200_000
	for _, tc := range []struct {
		name       string
		pipeline   int
		serverOnly bool
	}{
		{"P16-client", 16, false},
		{"P16-server", 16, true},
		{"c1-client", 1, false},
		{"c1-server", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			port := startRealServer(t, "redis-server", dir)
			args := []string{bin, "-p", strconv.Itoa(port), "-c", "1", "-n", strconv.Itoa(n), "-t", "get", "-P", strconv.Itoa(tc.pipeline)}
			res, _ := watchProgram(t, port, dir, false, tc.serverOnly, args...)
			var line string
			for _, w := range res.Warnings {
				if strings.HasPrefix(w, "watch: request boundaries") || strings.HasPrefix(w, "watch:") && strings.Contains(w, "timed") {
					line = w
				}
			}
			t.Logf("%s", line)
			m := parseLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("no parse line in the warnings: %q", res.Warnings)
			}
			parsed, _ := strconv.Atoi(m[1])
			pipelined, _ := strconv.Atoi(m[3])
			most, _ := strconv.Atoi(m[4])
			timed, _ := strconv.Atoi(m[5])
			if parsed < 1 || !strings.Contains(line, "redis") || timed != 0 {
				t.Errorf("%d parsed, %d timed: want redis parsed and none timed", parsed, timed)
			}
			bc := res.BreakdownCheck
			var trips int
			if bc != nil {
				trips = bc.Joined + bc.Unjoined
			}
			if tc.pipeline > 1 {
				// Each exchange of the pipelined connection, had it been
				// split, would be one of n/16 round trips.
				// redis-benchmark's CONFIG GETs, two in one send on a
				// connection of their own, are pipelined too.
				if pipelined < 1 || most < 8 {
					t.Errorf("%d connections pipelined, up to %d requests in a send: want ≥ 1, ≥ 8", pipelined, most)
				}
				if trips > 2 {
					t.Errorf("%d round trips split: want none of the pipelined connection's (at most the CONFIG GET)", trips)
				}
				return
			}
			if pipelined > 1 {
				t.Errorf("%d connections pipelined: want at most the CONFIG GETs'", pipelined)
			}
			// A reader held off its CPU by other work loses records, or
			// takes them late (the watch says so): a round trip that lost
			// one is not seen, or not split. The split ones are ≥ 99%
			// of the requests, or the rest within those records
			// (shortOfShare).
			if bc == nil {
				t.Fatalf("no breakdown check: %+v", res)
			}
			if short, named, ok := shortOfShare(res, bc.Joined, n); short > 0 {
				if !ok {
					t.Errorf("round trips split: %+v, want ≥ 99%% of %d, or the rest within the %d records the watch lost or took late", bc, n, named)
				} else {
					t.Logf("split %d of %d: the %.0f short of 99%% are within the %d records the watch lost or took late", bc.Joined, n, short, named)
				}
			}
		})
	}
}
