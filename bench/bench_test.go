// Package bench holds the side-by-side benchmarks behind 'make bench'. They
// run only with VOLLEYSCOPE_BENCH=1 and print "BENCH name value" lines:
// ratios measured in one run, so that a noisy machine's drift cancels.
package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/volleyscope/volleyscope/internal/serverproc"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/session"
	"github.com/volleyscope/volleyscope/stats"
)

func gate(t *testing.T) {
	if os.Getenv("VOLLEYSCOPE_BENCH") != "1" {
		t.Skip("benchmark: run with 'make bench' (VOLLEYSCOPE_BENCH=1)")
	}
}

func bin(t *testing.T, name string) string {
	p, _ := filepath.Abs(name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not built: run 'make bench' (%v)", name, err)
	}
	return p
}

// TestBenchClientFloor compares our client with a minimal blocking C client
// (bench/pingpong_client.c) against the same C server, one pinned
// connection, interleaved rounds, on one CPU and across CPUs.
func TestBenchClientFloor(t *testing.T) {
	gate(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	cclient, cserver := bin(t, "pingpong_client"), bin(t, "pingpong_server")
	const rounds, n, warm = 9, 20000, 2000
	for _, layout := range []struct {
		name      string
		clientCPU int
	}{{"same_cpu", 0}, {"cross_cpu", 1}} {
		srv, err := serverproc.Start(context.Background(), serverproc.Options{Argv: []string{cserver}, CPUs: []int{0}})
		if err != nil {
			t.Fatal(err)
		}
		var ratios, ours, theirs []float64
		for r := 0; r < rounds; r++ {
			res, err := loadgen.Run(context.Background(), loadgen.Options{
				Addr: srv.Addr, Clients: 1, ClientCPUs: []int{layout.clientCPU}, Requests: n, Warmup: -1, CI: -1, Duration: time.Minute,
			})
			if err != nil {
				t.Fatal(err)
			}
			lat := make([]float64, 0, n)
			for _, rec := range res.Conns[0].Records[warm:] {
				lat = append(lat, float64(rec.Latency()))
			}
			slices.Sort(lat)
			our := lat[len(lat)/2]
			out, err := exec.Command(cclient, "127.0.0.1", strconv.Itoa(srv.Port), strconv.Itoa(n), strconv.Itoa(layout.clientCPU), strconv.Itoa(warm)).Output()
			if err != nil {
				t.Fatalf("C client: %v", err)
			}
			c := field(t, string(out), "p50_ns")
			ours, theirs, ratios = append(ours, our), append(theirs, c), append(ratios, our/c)
		}
		srv.Stop()
		slices.Sort(ratios)
		fmt.Printf("  client floor %-9s p50 ours %v, C %v (per round, ns)\n", layout.name, ints(ours), ints(theirs))
		// The geometric mean over rounds with its 99% interval says whether
		// the median ratio below is distinguishable from noise.
		pr := stats.PairedRatio(ours, theirs, 0.99)
		fmt.Printf("  client floor %-9s geometric mean ratio %.3f, 99%% CI [%.3f, %.3f], significant %v\n", layout.name, pr.Ratio, pr.Low, pr.High, pr.Significant)
		fmt.Printf("BENCH client_floor_p50_ratio_%s %.3f\n", layout.name, ratios[len(ratios)/2])
	}
}

func field(t *testing.T, out, key string) float64 {
	for _, f := range strings.Fields(out) {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			x, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return x
			}
		}
	}
	t.Fatalf("no %s in %q", key, out)
	return 0
}

func ints(v []float64) []int {
	o := make([]int, len(v))
	for i, x := range v {
		o[i] = int(x)
	}
	return o
}

// TestBenchServers tabulates every reference server at 1 and 64 clients and
// gives the io_uring-over-epoll verdict ratios.
func TestBenchServers(t *testing.T) {
	gate(t)
	self := os.Getenv("VOLLEYSCOPE_BIN")
	if self == "" {
		t.Skip("VOLLEYSCOPE_BIN not set: run 'make bench'")
	}
	ccpu, scpu := session.DefaultCPUs()
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  server\tclients\tp50\tp99\tthroughput/s\t\n")
	for _, name := range []string{"goroutine", "threads", "fork", "epoll-lt", "epoll-et", "iouring", "iouring-multishot"} {
		for _, clients := range []int{1, 64} {
			out, err := session.Run(context.Background(), session.Config{
				Server: name, Self: self, ServerCPUs: scpu,
				Load: loadgen.Options{Clients: clients, ClientCPUs: ccpu, Duration: 3 * time.Second, Warmup: 500 * time.Millisecond},
			})
			if err != nil {
				fmt.Fprintf(tw, "  %s\t%d\terror: %v\t\t\t\n", name, clients, err)
				continue
			}
			l := out.Results.Latency
			fmt.Fprintf(tw, "  %s\t%d\t%.1f µs\t%.1f µs\t%.0f\t\n", name, clients, l.P50/1e3, l.P99/1e3, out.Results.ThroughputRPS)
		}
	}
	tw.Flush()
	for _, clients := range []int{1, 64} {
		v, err := session.Versus(context.Background(), session.Config{
			Self: self, ServerCPUs: scpu,
			Load: loadgen.Options{Clients: clients, ClientCPUs: ccpu, Duration: 2 * time.Second, Warmup: 300 * time.Millisecond},
		}, "epoll-lt", "iouring", 5)
		if err != nil {
			t.Fatal(err)
		}
		p50 := pairedMedianRatio(v.P50B, v.P50A)
		fmt.Printf("  vs c%d: %s\n", clients, v.Summary)
		fmt.Printf("BENCH vs_iouring_over_epoll_p50_ratio_c%d %.3f\n", clients, p50)
	}
}

func pairedMedianRatio(b, a []float64) float64 {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = b[i] / a[i]
	}
	slices.Sort(r)
	return r[len(r)/2]
}
