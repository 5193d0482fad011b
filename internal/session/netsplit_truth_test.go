package session

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/delay"
)

// TestTruthNetSplit: in the --netns set-up (a veth pair between two
// namespaces), a 100 µs busy-wait on the request's data segments lands
// in the part of client_net where the kernel runs it, and nowhere else:
// on the server's veth ingress (tcx ingress runs in
// __netif_receive_skb_core, after the netif_receive_skb tracepoint that
// starts the receiver's part) it is client_net_rx; on the client's veth
// egress (tcx egress runs in __dev_queue_xmit, before the qdisc and
// net_dev_start_xmit) it is client_net_tx.
func TestTruthNetSplit(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	const want = 100e3
	for _, tc := range []struct {
		name, component string
		ingress         bool // the server's veth ingress, else the client's egress
	}{
		{"server ingress", "client_net_rx", true},
		{"client egress", "client_net_tx", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			cfg := Config{Server: "threads", ServerPort: port, NetNS: true}
			var delayed uint64
			tr := interleave(t, cfg, cfg, func(t *testing.T, _ *Config, cb *Callbacks) func() {
				var inj *delay.Injector
				var err error
				// The veth pair exists once the run has made it, before
				// the server starts: the run's note names it.
				cb.Note = func(s string) {
					m := vethNote.FindStringSubmatch(s)
					if m == nil || inj != nil || err != nil {
						return
					}
					match := delay.Match{DstPort: uint16(port)}
					if tc.ingress {
						err = inNetns(m[3], func() error {
							inj, err = delay.AttachIngress(m[2], match, time.Duration(want))
							return err
						})
					} else {
						inj, err = delay.Attach(m[1], match, time.Duration(want))
					}
				}
				return func() {
					if err != nil {
						t.Fatalf("inject: %v", err)
					}
					if inj == nil {
						t.Fatal("inject: the run named no veth pair")
					}
					n, _ := inj.Delayed()
					delayed += n
					inj.Close() // the veth pair went with the run; nothing is left to detach
				}
			})
			if delayed < 1000 {
				t.Fatalf("injector delayed only %d segments", delayed)
			}
			landsIn(t, tr, tc.component, want)
		})
	}
}

// vethNote is the run's note on its veth pair: the host's end, the
// server's end and the server's namespace.
var vethNote = regexp.MustCompile(`veth (\S+) \(.*\) ↔ (\S+) \(.*\) in namespace (\S+)`)

// inNetns runs f with the calling thread in network namespace name
// (made by ip netns), and returns the thread to its own after. A thread
// that cannot return stays locked, so that the runtime ends it.
func inNetns(name string, f func() error) error {
	runtime.LockOSThread()
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own network namespace: %w", err)
	}
	defer own.Close()
	ns, err := os.Open("/run/netns/" + name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open network namespace %s: %w", name, err)
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", name, err)
	}
	ferr := f()
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("return from network namespace %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}
