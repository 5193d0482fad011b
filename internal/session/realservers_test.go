package session

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/loadgen"
)

// realServer is a Debian server program that a test starts on an
// ephemeral port of 127.0.0.1, with a configuration of its own in a
// temporary directory, through a server spec (session.Run starts it,
// waits until it accepts, and stops it; the process dies with the test).
type realServer struct {
	name, bin string
	// spec writes what the server needs into dir and returns the spec
	// that starts it on port.
	spec func(t *testing.T, bin, dir string, port int) string
}

var realServers = []realServer{
	{"nginx", "nginx", func(t *testing.T, bin, dir string, port int) string {
		conf := filepath.Join(dir, "nginx.conf")
		writeFile(t, conf, nginxConf(dir, port, 1024))
		// -e: the error log before the configuration is read, which
		// would otherwise go to /var/log/nginx.
		return fmt.Sprintf("port=%d:%s -p %s -c %s -e %s", port, bin, dir, conf, filepath.Join(dir, "error.log"))
	}},
	{"redis-server", "redis-server", func(t *testing.T, bin, dir string, port int) string {
		return fmt.Sprintf("%s --port {port} --bind 127.0.0.1 --save '' --appendonly no --protected-mode no --dir %s --logfile ''", bin, dir)
	}},
	{"memcached", "memcached", func(t *testing.T, bin, dir string, port int) string {
		user := ""
		if os.Geteuid() == 0 {
			user = " -u root" // memcached refuses to run as root without it
		}
		return fmt.Sprintf("%s -l 127.0.0.1 -p {port} -U 0 -c 1024%s", bin, user)
	}},
}

// nginxConf is a minimal nginx in the foreground, one process (no master:
// the probe follows the process that listens), answering "hello" to every
// request on keep-alive connections that it never closes on its own.
func nginxConf(dir string, port, conns int) string {
	return fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile %d;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections %d; multi_accept on; }
http {
	access_log off;
	keepalive_requests 100000000;
	keepalive_timeout 300s;
	client_body_temp_path %s/body;
	server {
		listen 127.0.0.1:%d backlog=4096;
		location / { return 200 "hello\n"; }
	}
}
`, conns+64, dir, dir, conns, dir, port)
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// unusedPort is a port of 127.0.0.1 that nothing listened on a moment ago.
func unusedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// needProgram returns the path of a server program, or skips t saying
// which Debian package brings it.
func needProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		pkg := map[string]string{"nginx": "nginx-light", "redis-server": "redis-server", "memcached": "memcached"}[name]
		t.Skipf("%s not installed (apt-get install %s; .ci/run installs it)", name, pkg)
	}
	return p
}

// TestRealServers: short bench runs (no probe) against Debian's nginx,
// redis-server and memcached, started on ephemeral ports with minimal
// configurations: every protocol's replies are accepted from the real
// server, with no error, and round trips are measured.
func TestRealServers(t *testing.T) {
	client, server := DefaultCPUs()
	for _, tc := range []struct {
		server string
		load   loadgen.Options
	}{
		{"nginx", loadgen.Options{Proto: loadgen.HTTP, ClientModel: loadgen.ClientThreads}},
		{"nginx", loadgen.Options{Proto: loadgen.HTTP, ClientModel: loadgen.ClientEpoll, HTTP: loadgen.HTTPOptions{Path: "/x?y=1", Headers: []string{"Accept: */*"}}}},
		{"redis-server", loadgen.Options{Proto: loadgen.Redis}},
		{"redis-server", loadgen.Options{Proto: loadgen.Redis, Mix: loadgen.Mix{Get: 1, Set: 1}, Keys: 100, Size: 1000, ClientModel: loadgen.ClientEpoll}},
		{"memcached", loadgen.Options{Proto: loadgen.Memcache}},
		{"memcached", loadgen.Options{Proto: loadgen.Memcache, Mix: loadgen.Mix{Get: 1, Set: 1}, Keys: 100, Size: 1000, ClientModel: loadgen.ClientEpoll}},
	} {
		model := string(tc.load.ClientModel)
		if model == "" {
			model = "auto"
		}
		name := fmt.Sprintf("%s/%s/%s", tc.server, tc.load.Proto, model)
		if tc.load.Mix != (loadgen.Mix{}) {
			name += "/mix" + tc.load.Mix.String()
		}
		t.Run(name, func(t *testing.T) {
			var rs realServer
			for _, r := range realServers {
				if r.name == tc.server {
					rs = r
				}
			}
			bin := needProgram(t, rs.bin)
			dir := t.TempDir()
			load := tc.load
			load.Clients, load.Duration, load.Warmup, load.CI, load.P99CI = 2, 2*time.Second, 300*time.Millisecond, -1, -1
			load.Timeout, load.ClientCPUs = stallTimeout, client
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := Run(ctx, Config{Server: rs.spec(t, bin, dir, unusedPort(t)), ServerCPUs: server, Load: load}, Callbacks{})
			if err != nil {
				t.Fatalf("%s: %v", tc.server, err)
			}
			r := out
			if r.Latency.Count == 0 || len(r.Errors) > 0 {
				t.Fatalf("%s: %d round trips measured, errors %v", tc.server, r.Latency.Count, r.Errors)
			}
			t.Logf("%s %s: %d round trips, %.0f/s, p50 %.1f µs", tc.server, load.Proto, r.Latency.Count, r.ThroughputRPS, r.Latency.P50/1e3)
		})
	}
}

// TestRealServerBreakdown: a probed run against nginx joins ≥ 99% of its
// round trips, and ≥ 99% of the joined ones sum to their latency.
func TestRealServerBreakdown(t *testing.T) {
	requireRoot(t)
	var rs realServer
	for _, r := range realServers {
		if r.name == "nginx" {
			rs = r
		}
	}
	bin := needProgram(t, rs.bin)
	client, server := DefaultCPUs()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := Run(ctx, Config{Server: rs.spec(t, bin, dir, unusedPort(t)), ServerCPUs: server, Probe: true, Out: filepath.Join(dir, "out"),
		Load: loadgen.Options{Proto: loadgen.HTTP, Clients: 4, Duration: 3 * time.Second, Warmup: 500 * time.Millisecond,
			CI: -1, P99CI: -1, Timeout: stallTimeout, ClientCPUs: client}}, Callbacks{})
	if err != nil && out == nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Logf("run: %v", err)
	}
	bc := out.BreakdownCheck
	if bc == nil || bc.Joined+bc.Unjoined == 0 {
		t.Fatalf("no breakdown: %+v", bc)
	}
	rate := float64(bc.Joined) / float64(bc.Joined+bc.Unjoined)
	var comps []string
	for _, c := range out.Breakdown {
		comps = append(comps, fmt.Sprintf("%s %.1fµs", c.Component, c.MeanNs/1e3))
	}
	t.Logf("nginx: joined %d of %d (%.4f), sum within tolerance %.4f, unjoined %v; mean %s", bc.Joined, bc.Joined+bc.Unjoined, rate, bc.SumWithinTolerance, bc.UnjoinedReasons, strings.Join(comps, ", "))
	if rate < 0.99 {
		t.Errorf("joined %.4f of the round trips (%d of %d), want ≥ 0.99; unjoined: %v", rate, bc.Joined, bc.Joined+bc.Unjoined, bc.UnjoinedReasons)
	}
	if bc.SumWithinTolerance < 0.99 {
		t.Errorf("%.4f of the joined round trips sum to their latency, want ≥ 0.99", bc.SumWithinTolerance)
	}
}
