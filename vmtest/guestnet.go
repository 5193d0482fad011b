package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// guestNet is how the host reaches a networked guest: a network namespace
// of this process's own holding a tap device, whose other end is the
// guest's virtio-net NIC. qemu runs inside the namespace and opens the tap
// by name; the host's programs that talk to the guest run there too (Exec,
// Dial). The namespace keeps the link and its addresses out of the
// machine's own network, and one 'ip netns del' takes everything away.
type guestNet struct {
	NS        string // the namespace, for ip netns exec
	Tap       string // the tap device inside NS
	HostAddr  string // IPv4 address of Tap
	GuestAddr string // IPv4 address of the guest's NIC
	MAC       string // the guest NIC's MAC address
}

const (
	// netNSPrefix starts the name of every namespace made here; the
	// creating process's pid follows, so that the leftovers of a killed
	// run can be told and removed (removeStaleNets). internal/netns uses
	// "vs-", whose own clean-up must not take ours.
	netNSPrefix = "vmt-"
	// netPrefixLen: a /30 holds exactly the host's and the guest's
	// addresses.
	netPrefixLen = 30
	// guestTap is the tap's name; it lives in a namespace of its own, so
	// it needs no pid to be unique.
	guestTap = "vmtap0"
	// guestMAC is a locally administered unicast address (bit 1 of the
	// first octet set), which no vendor's NIC carries.
	guestMAC = "52:54:00:76:6d:01"
)

// newGuestNet makes the namespace and its tap and addresses the host's
// end. Addresses are a /30 of 10.213.0.0/16 chosen by pid, apart from
// internal/netns's 10.250.0.0/16, so that a --netns run beside does not
// clash. On error it removes what it made.
func newGuestNet() (*guestNet, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("a networked guest needs iproute2's ip command: %w", err)
	}
	if err := removeStaleNets(); err != nil {
		fmt.Printf("vmtest: %v\n", err) // others' leftovers do not stop this run
	}
	pid := os.Getpid()
	sub := pid % 16384
	base := fmt.Sprintf("10.213.%d.", sub/64)
	g := &guestNet{
		NS:        netNSPrefix + strconv.Itoa(pid),
		Tap:       guestTap,
		HostAddr:  base + strconv.Itoa((sub%64)*4+1),
		GuestAddr: base + strconv.Itoa((sub%64)*4+2),
		MAC:       guestMAC,
	}
	steps := [][]string{
		{"netns", "add", g.NS},
		{"-n", g.NS, "link", "set", "lo", "up"},
		{"-n", g.NS, "tuntap", "add", "dev", g.Tap, "mode", "tap"},
		{"-n", g.NS, "addr", "add", fmt.Sprintf("%s/%d", g.HostAddr, netPrefixLen), "dev", g.Tap},
		{"-n", g.NS, "link", "set", g.Tap, "up"},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			g.Close()
			return nil, fmt.Errorf("create the guest's network: %w", err)
		}
	}
	return g, nil
}

// GuestCIDR is the guest's address with the prefix length, for its init.
func (g *guestNet) GuestCIDR() string {
	return fmt.Sprintf("%s/%d", g.GuestAddr, netPrefixLen)
}

// Close removes the tap and the namespace; it is safe to call twice and
// after a partial newGuestNet. qemu must have exited: it holds the tap.
func (g *guestNet) Close() error {
	if !nsExists(g.NS) {
		return nil
	}
	var errs []error
	// A tap with no process attached goes with its namespace; deleting it
	// first says so rather than trusting it.
	if out, err := exec.Command("ip", "-n", g.NS, "link", "show", g.Tap).CombinedOutput(); err == nil {
		errs = append(errs, ipCmd("-n", g.NS, "link", "del", g.Tap))
	} else if !strings.Contains(string(out), "does not exist") {
		errs = append(errs, fmt.Errorf("ip -n %s link show %s: %v: %s", g.NS, g.Tap, err, strings.TrimSpace(string(out))))
	}
	errs = append(errs, ipCmd("netns", "del", g.NS))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove the guest's network: %w; remove it as root with 'ip netns del %s'", err, g.NS)
	}
	return nil
}

// Exec wraps argv to run in the namespace (ip netns exec executes argv in
// its own place, so the pid and signals are argv's).
func (g *guestNet) Exec(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", g.NS}, argv...)
}

// qemuArgs attach the guest's NIC to the tap. romfile= leaves out the
// NIC's option ROM (PXE boot), which a -kernel boot never uses.
func (g *guestNet) qemuArgs() []string {
	return []string{
		"-netdev", "tap,id=net0,ifname=" + g.Tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=net0,mac=" + g.MAC + ",romfile=",
	}
}

// WaitPort dials addr from inside the namespace until it answers or ctx
// ends.
func (g *guestNet) WaitPort(ctx context.Context, addr string) error {
	for {
		err := g.dialOnce(ctx, addr)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reach the guest at %s from namespace %s: %w (last: %v)", addr, g.NS, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dialOnce connects to addr from inside the namespace and closes. A
// socket belongs to the network namespace of the thread that creates it,
// so a goroutine locked to its thread enters the namespace, dials, and
// goes back; if it cannot go back it stays locked, and the runtime ends
// the thread with the goroutine instead of reusing it in the wrong
// namespace.
func (g *guestNet) dialOnce(ctx context.Context, addr string) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + g.NS)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open namespace %s: %w", g.NS, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter namespace %s: %w", g.NS, err)
			return
		}
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if c != nil {
			c.Close()
		}
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// removeStaleNets removes the namespaces of processes no longer alive (a
// vmtest killed with SIGKILL cannot clean up after itself). A tap goes
// with its namespace once no qemu holds it.
func removeStaleNets() error {
	ents, _ := os.ReadDir("/run/netns")
	var errs []error
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), netNSPrefix)
		if !ok {
			continue
		}
		if pid, err := strconv.Atoi(rest); err == nil && pid > 0 && syscall.Kill(pid, 0) != nil {
			errs = append(errs, (&guestNet{NS: e.Name(), Tap: guestTap}).Close())
		}
	}
	return errors.Join(errs...)
}

func nsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
