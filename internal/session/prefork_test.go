package session

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/serverproc"
	"github.com/volleyscope/volleyscope/loadgen"
)

// nginxMasterConf is nginxConf as nginx ships: a master process that forks
// two workers before any client connects.
func nginxMasterConf(dir string, port, conns int) string {
	return strings.Replace(nginxConf(dir, port, conns), "master_process off;\nworker_processes 1;", "master_process on;\nworker_processes 2;", 1)
}

// preforkServers are the servers that fork their workers before a run
// starts: nginx with its master and two workers, and testdata's
// preforkserver. argv starts one on port; proto is what it speaks.
func preforkServers(t *testing.T) []struct {
	name  string
	proto loadgen.Proto
	argv  func(t *testing.T, port int) []string
} {
	return []struct {
		name  string
		proto loadgen.Proto
		argv  func(t *testing.T, port int) []string
	}{
		{"nginx", loadgen.HTTP, func(t *testing.T, port int) []string {
			bin := needProgram(t, "nginx")
			dir := t.TempDir()
			conf := filepath.Join(dir, "nginx.conf")
			writeFile(t, conf, nginxMasterConf(dir, port, 1024))
			return []string{bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")}
		}},
		{"preforkserver", loadgen.PingPong, func(t *testing.T, port int) []string {
			bin := filepath.Join(t.TempDir(), "preforkserver")
			if out, err := exec.Command("go", "build", "-o", bin, "../../testdata/preforkserver").CombinedOutput(); err != nil {
				t.Fatalf("build preforkserver: %v\n%s", err, out)
			}
			return []string{bin, "-workers", "2", "-p", fmt.Sprint(port)}
		}},
	}
}

// startOutside starts argv as a server volleyscope did not start, waits
// until addr accepts and until it has forked more than one process, and
// stops it when t ends.
func startOutside(t *testing.T, argv []string, addr string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not accepting on %s with its workers after 10 s", argv[0], addr)
		}
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			continue
		}
		c.Close()
		if pids, _, err := serverproc.FindAll(addr); err == nil && len(pids) > 1 {
			return
		}
	}
}

// TestPreforkedServers: a probed run against a server that forked its
// workers before the run, started outside volleyscope (--addr) or by it
// (a server spec), follows every worker and joins ≥ 99% of the round
// trips.
func TestPreforkedServers(t *testing.T) {
	requireRoot(t)
	client, server := DefaultCPUs()
	for _, srv := range preforkServers(t) {
		for _, outside := range []bool{true, false} {
			how := "started"
			if outside {
				how = "outside"
			}
			t.Run(srv.name+"/"+how, func(t *testing.T) {
				port := unusedPort(t)
				argv := srv.argv(t, port)
				cfg := Config{Probe: true, Load: loadgen.Options{Proto: srv.proto, Clients: 2, Duration: 2 * time.Second, Warmup: 300 * time.Millisecond,
					CI: -1, P99CI: -1, Timeout: 10 * time.Second, ClientCPUs: client}}
				addr := fmt.Sprintf("127.0.0.1:%d", port)
				if outside {
					startOutside(t, argv, addr)
					cfg.Addr = addr
				} else {
					cfg.Server = fmt.Sprintf("port=%d:%s", port, strings.Join(argv, " "))
					cfg.ServerCPUs = server
				}
				var notes []string
				cb := Callbacks{Note: func(s string) { notes = append(notes, s) }}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				r, err := Run(ctx, cfg, cb)
				if err != nil && r == nil {
					t.Fatal(err)
				}
				if err != nil {
					t.Logf("run: %v", err)
				}
				bc := r.BreakdownCheck
				if bc == nil || bc.Joined+bc.Unjoined == 0 {
					t.Fatalf("no breakdown: %+v; notes %q", bc, notes)
				}
				rate := float64(bc.Joined) / float64(bc.Joined+bc.Unjoined)
				t.Logf("%s (%s): joined %d of %d (%.4f), unjoined %v; notes %q", srv.name, how, bc.Joined, bc.Joined+bc.Unjoined, rate, bc.UnjoinedReasons, notes)
				if rate < 0.99 {
					t.Errorf("joined %.4f of the round trips (%d of %d), want ≥ 0.99; unjoined: %v", rate, bc.Joined, bc.Joined+bc.Unjoined, bc.UnjoinedReasons)
				}
			})
		}
	}
}
