// Package netns makes the two hosts of a --netns run: a network namespace
// of its own for the server, joined to the caller's namespace by a veth
// pair, so that a round trip crosses a real device (veth transmit, the
// receive softirq, a second IP stack) instead of loopback. It drives
// iproute2's ip(8); it needs root.
package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// prefix starts the name of every namespace and device made here; the
// creating process's pid follows, so that leftovers of a process that was
// killed can be told and removed (RemoveStale).
const prefix = "vs"

// Pair is a namespace for the server and the veth pair that joins it to
// the caller's namespace.
type Pair struct {
	NS       string // the server's namespace, for ip netns exec
	HostIf   string // the veth end in the caller's namespace
	NSIf     string // the veth end in the server's namespace
	HostAddr string // IPv4 address of HostIf (the client's source)
	NSAddr   string // IPv4 address of NSIf (the server's address)
}

// Create makes the namespace and the veth pair, addresses both ends and
// brings them up. On error it removes what it made.
func Create() (*Pair, error) { return CreateNth(0) }

// MaxPairs is how many pairs one process may hold at once (CreateNth).
const MaxPairs = 4

// CreateNth is Create for the process's k-th pair (0 ≤ k < MaxPairs),
// for a test that needs several hosts: each has its own names and its
// own /30, k = 0 being Create's.
func CreateNth(k int) (*Pair, error) {
	if k < 0 || k >= MaxPairs {
		return nil, fmt.Errorf("create network namespace %d: at most %d per process", k, MaxPairs)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("--netns needs iproute2's ip command: %w", err)
	}
	_ = RemoveStale() // what remains of others does not stop this run
	pid := os.Getpid()
	// A /30 of 10.(250+k).0.0/16 per process, chosen by its pid.
	sub := pid % 16384
	host := fmt.Sprintf("10.%d.%d.%d", 250+k, sub/64, (sub%64)*4+1)
	srv := fmt.Sprintf("10.%d.%d.%d", 250+k, sub/64, (sub%64)*4+2)
	// The k-th pair's names end in "x" and k: "vs-PID" and "vsh PID"
	// stay Create's, which RemoveStale reads.
	tag := strconv.Itoa(pid)
	if k > 0 {
		tag += "x" + strconv.Itoa(k)
	}
	p := &Pair{
		NS:       fmt.Sprintf("%s-%s", prefix, tag),
		HostIf:   fmt.Sprintf("%sh%s", prefix, tag),
		NSIf:     fmt.Sprintf("%sn%s", prefix, tag),
		HostAddr: host, NSAddr: srv,
	}
	steps := [][]string{
		{"netns", "add", p.NS},
		{"link", "add", p.HostIf, "type", "veth", "peer", "name", p.NSIf},
		{"link", "set", p.NSIf, "netns", p.NS},
		{"addr", "add", host + "/30", "dev", p.HostIf},
		{"link", "set", p.HostIf, "up"},
		{"-n", p.NS, "addr", "add", srv + "/30", "dev", p.NSIf},
		{"-n", p.NS, "link", "set", p.NSIf, "up"},
		{"-n", p.NS, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			p.Close()
			return nil, fmt.Errorf("create network namespaces: %w", err)
		}
	}
	return p, nil
}

// Exec wraps argv to run in the server's namespace (ip netns exec keeps
// the pid: it enters the namespace and executes argv in its place).
func (p *Pair) Exec(argv []string) []string {
	return append([]string{"ip", "netns", "exec", p.NS}, argv...)
}

// RouteTo routes addr, an address outside this pair's /30 (another
// pair's HostAddr, say), from the namespace through the caller's
// namespace, so that hosts in several namespaces reach one server.
func (p *Pair) RouteTo(addr string) error {
	if err := ip("-n", p.NS, "route", "add", addr+"/32", "via", p.HostAddr); err != nil {
		return fmt.Errorf("route %s from namespace %s: %w", addr, p.NS, err)
	}
	return nil
}

// Netem puts a netem qdisc with args (e.g. "delay 100us") on both ends,
// or says clearly that the kernel has no netem.
func (p *Pair) Netem(args string) error {
	for _, dev := range []struct{ ns, dev string }{{"", p.HostIf}, {p.NS, p.NSIf}} {
		cmd := []string{}
		if dev.ns != "" {
			cmd = append(cmd, "-n", dev.ns)
		}
		cmd = append(cmd, "qdisc", "add", "dev", dev.dev, "root", "netem")
		cmd = append(cmd, strings.Fields(args)...)
		if err := tc(cmd...); err != nil {
			if _, statErr := os.Stat("/sys/module/sch_netem"); statErr != nil {
				return fmt.Errorf("--netem: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is off or the module is not available): %w", err)
			}
			return fmt.Errorf("--netem %q: %w", args, err)
		}
	}
	return nil
}

// Close removes the namespace and the veth pair; it is safe to call
// twice and after a partial Create.
func (p *Pair) Close() error {
	var errs []error
	if p.HostIf != "" && linkExists(p.HostIf) {
		errs = append(errs, ip("link", "del", p.HostIf))
	}
	if p.NS != "" && nsExists(p.NS) {
		errs = append(errs, ip("netns", "del", p.NS))
	}
	return errors.Join(errs...)
}

// RemoveStale removes the namespaces and devices that processes no
// longer alive left behind (a volleyscope killed with SIGKILL cannot
// clean up after itself). It reads /run/netns and /sys/class/net, and
// runs ip(8) only when something is left, so every run may call it at
// once, --netns or not. What could not be removed (ip missing, or not
// root) is the error, with the commands that remove it.
func RemoveStale() error {
	// A name's tag is PID, or PIDxK for a process's k-th pair.
	var stale []*Pair
	find := func(dir, pre string, pair func(name string) *Pair) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			rest, ok := strings.CutPrefix(e.Name(), pre)
			if !ok {
				continue
			}
			pidText, _, _ := strings.Cut(rest, "x")
			if pid, err := strconv.Atoi(pidText); err == nil && pid > 0 && !alive(pid) {
				stale = append(stale, pair(e.Name()))
			}
		}
	}
	find("/run/netns", prefix+"-", func(n string) *Pair { return &Pair{NS: n} })
	find("/sys/class/net", prefix+"h", func(n string) *Pair { return &Pair{HostIf: n} })
	var errs []error
	for _, p := range stale {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove the namespace or veth left by a killed --netns run: %w; remove them as root with 'ip netns del NAME' and 'ip link del NAME'", err)
	}
	return nil
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

func nsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

func ip(args ...string) error { return run("ip", args...) }
func tc(args ...string) error { return run("tc", args...) }

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
