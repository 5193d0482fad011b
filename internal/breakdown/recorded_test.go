package breakdown_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/probe"
)

// TestJoinRecordedStreams joins real event streams recorded on a 2-vCPU
// 6.18 VM (testdata/streams, made with 'volleyscope run --record') and
// checks what must hold for each server shape: nearly everything joins,
// the parts add up, and the shape's signature shows (no wake-up on one
// CPU's client side when it was only preempted, queueing behind other
// connections for a one-thread epoll server, …).
func TestJoinRecordedStreams(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/streams/*.rec.gz")
	if len(files) == 0 {
		t.Fatal("no recorded streams in testdata/streams")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := breakdown.ReadRecording(f)
			if err != nil {
				t.Fatal(err)
			}
			res := breakdown.Join(in)
			tot := res.Joined + res.Unjoined
			if tot == 0 {
				t.Fatal("no measured round trips in the recording")
			}
			if rate := float64(res.Joined) / float64(tot); rate < 0.99 {
				t.Errorf("joined %d of %d (%.3f), reasons %v", res.Joined, tot, rate, res.Reasons)
			}
			if res.Consistent < res.Joined*99/100 {
				t.Errorf("%d of %d joined round trips sum to t1−t0 within tolerance", res.Consistent, res.Joined)
			}
			for _, rt := range res.Trips {
				if !rt.Joined {
					continue
				}
				var sum int64
				for _, v := range rt.Ns {
					if v < 0 {
						t.Fatalf("negative component in %+v", rt)
					}
					sum += v
				}
				if rt.Consistent && abs(sum-(rt.T1-rt.T0)) > max((rt.T1-rt.T0)/50, 1000) {
					t.Fatalf("round trip %d/%d marked consistent but sums to %d of %d", rt.Conn, rt.Seq, sum, rt.T1-rt.T0)
				}
			}
			sum := res.Summarize()
			comp := map[string]float64{}
			for _, c := range sum {
				comp[c.Component.String()] = c.MeanNs
			}
			t.Logf("%s: %v", filepath.Base(f), comp)
			if check, ok := signatures[filepath.Base(f)]; ok {
				check(t, comp, in)
			}
			if strings.HasPrefix(filepath.Base(f), "default_") {
				defaultLevel(t, comp, in)
			}
		})
	}
}

// signatures: what each recorded shape must show.
var signatures = map[string]func(t *testing.T, c map[string]float64, in breakdown.Input){
	"same_cpu.rec.gz": func(t *testing.T, c map[string]float64, _ breakdown.Input) {
		// One CPU: nothing sleeps on a halted CPU; the woken side waits
		// for the sender to get off the CPU instead of an IPI.
		if c["server_wakeup"] > 30e3 {
			t.Errorf("same CPU: server_wakeup %.0f ns, want small", c["server_wakeup"])
		}
	},
	"cross_cpu.rec.gz": func(t *testing.T, c map[string]float64, _ breakdown.Input) {
		// Two CPUs on a VM whose idle CPUs halt: wake-ups cost an IPI.
		if c["server_wakeup"] < 5e3 || c["client_wakeup"] < 5e3 {
			t.Errorf("cross CPU: wake-ups %.0f/%.0f ns, want each ≥ 5 µs", c["server_wakeup"], c["client_wakeup"])
		}
	},
	"epoll_4conns.rec.gz": func(t *testing.T, c map[string]float64, in breakdown.Input) {
		if len(in.Conns) != 4 {
			t.Errorf("recording has %d connections, want 4", len(in.Conns))
		}
		if c["server_queue"] < 2e3 {
			t.Errorf("4 connections on one epoll thread: server_queue %.0f ns, want requests queueing behind each other", c["server_queue"])
		}
	},
	"fork.rec.gz": func(t *testing.T, c map[string]float64, in breakdown.Input) {
		// The probe followed the children: the receives were done by
		// processes the server forked, not by the server itself.
		children := map[uint32]bool{}
		for _, e := range in.Events {
			if e.Kind == probe.KindFork {
				children[uint32(e.Arg1)] = true
			}
		}
		served := 0
		for _, e := range in.Events {
			if e.Kind == probe.KindSyscall && e.Lport == in.ServerPort && e.Ret > 0 && children[e.TGID] {
				served++
			}
		}
		if len(children) < len(in.Conns) || served == 0 {
			t.Errorf("%d forked children, %d of their socket syscalls seen; want a child per connection doing the work", len(children), served)
		}
	},
	"default_epoll_4conns.rec.gz": func(t *testing.T, c map[string]float64, in breakdown.Input) {
		// Without a receive start, the queueing behind the other
		// connections shows in server_kernel_recv.
		if c["server_kernel_recv"] < 2e3 {
			t.Errorf("4 connections on one epoll thread, default level: server_kernel_recv %.0f ns, want the queueing there", c["server_kernel_recv"])
		}
	},
	"default_hog_threads.rec.gz": func(t *testing.T, c map[string]float64, _ breakdown.Input) {
		// A nice -15 busy loop on the server's CPU: the server waits for
		// its CPU after its data is ready (server_wakeup) and when the
		// hog takes it back mid-request (server_preempted), which the
		// work it does (server_user) must not absorb.
		if c["server_preempted"] < 50e3 || c["server_user"] > c["server_preempted"]/10 {
			t.Errorf("hog on the server's CPU: server_preempted %.0f ns, server_user %.0f ns; want the preemptions out of server_user",
				c["server_preempted"], c["server_user"])
		}
	},
	"default_cross_cpu.rec.gz": func(t *testing.T, c map[string]float64, _ breakdown.Input) {
		if c["server_wakeup"] < 5e3 || c["client_wakeup"] < 5e3 {
			t.Errorf("cross CPU: wake-ups %.0f/%.0f ns, want each ≥ 5 µs", c["server_wakeup"], c["client_wakeup"])
		}
	},
	// Replies in parts: the server's time writing the parts before the
	// last is server_user; client_kernel_recv is the last piece's read.
	"default_socat_8k_parts.rec.gz": func(t *testing.T, c map[string]float64, in breakdown.Input) {
		// socat (TCP-LISTEN:…,fork,nodelay PIPE) echoing 64 KiB in 8 KiB
		// parts, default level.
		if n := readiesPerTrip(in); n < 4 {
			t.Errorf("%.1f data-readies on the client's socket per round trip, want the reply in parts", n)
		}
		if c["server_user"] < 5*c["client_kernel_recv"] {
			t.Errorf("socat's parts: server_user %.0f ns, client_kernel_recv %.0f ns; want the parts before the last in server_user", c["server_user"], c["client_kernel_recv"])
		}
	},
	"chunks_8k_spin.rec.gz": func(t *testing.T, c map[string]float64, in breakdown.Input) {
		// testdata/chunkserver -chunk 8192 -spin 50us with --syscalls:
		// seven spins of 50 µs of CPU time between eight parts.
		if n := readiesPerTrip(in); n < 4 {
			t.Errorf("%.1f data-readies on the client's socket per round trip, want the reply in parts", n)
		}
		if c["server_user"] < 350e3 || c["client_kernel_recv"] > c["server_user"]/10 {
			t.Errorf("seven 50 µs spins between parts: server_user %.0f ns, client_kernel_recv %.0f ns; want ≥ 350 µs, and under a tenth of it", c["server_user"], c["client_kernel_recv"])
		}
	},
	"iouring.rec.gz": func(t *testing.T, c map[string]float64, in breakdown.Input) {
		n := map[probe.Kind]int{}
		for _, e := range in.Events {
			n[e.Kind]++
		}
		if n[probe.KindUringSubmit] == 0 || n[probe.KindUringComplete] == 0 {
			t.Errorf("no io_uring submissions/completions in the stream: %v", n)
		}
		if c["server_kernel_recv"] <= 0 {
			t.Error("no server receive time: the completion reaped by io_uring_enter must be found")
		}
	},
}

// defaultLevel: a stream recorded without --syscalls has no syscall
// records; its send boundaries come from send starts, and server_queue is
// 0 (no receive start is known), its time being in server_kernel_recv.
func defaultLevel(t *testing.T, c map[string]float64, in breakdown.Input) {
	n := map[probe.Kind]int{}
	for _, e := range in.Events {
		n[e.Kind]++
	}
	if n[probe.KindSyscall] != 0 || n[probe.KindWaking] != 0 || n[probe.KindSendStart] == 0 {
		t.Errorf("default level: %v; want send starts and no syscall or waking records", n)
	}
	if c["server_queue"] != 0 {
		t.Errorf("default level: server_queue %.0f ns, want 0", c["server_queue"])
	}
	if c["server_user"] <= 0 || c["client_net"] <= 0 || c["server_net"] <= 0 {
		t.Errorf("default level: server_user/client_net/server_net %.0f/%.0f/%.0f ns, want each > 0", c["server_user"], c["client_net"], c["server_net"])
	}
}

// readiesPerTrip is the number of data-readies on the clients' sockets
// per measured round trip.
func readiesPerTrip(in breakdown.Input) float64 {
	n, trips := 0, 0
	for _, e := range in.Events {
		if e.Kind == probe.KindDataReady && e.Rport == in.ServerPort && int64(e.TS) >= in.MeasureStart {
			n++
		}
	}
	for _, c := range in.Conns {
		for _, r := range c.Records {
			if r.T0 >= in.MeasureStart {
				trips++
			}
		}
	}
	return float64(n) / float64(max(trips, 1))
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
