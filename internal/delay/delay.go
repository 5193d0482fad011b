// Package delay injects a known network-path delay for the breakdown's
// truth tests: a tcx program on an interface's egress or ingress that
// busy-waits a fixed time on the data segments of one direction of one
// TCP connection. It is test-only tooling; nothing in the product attaches
// it.
package delay

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// Injector is an attached delay.
type Injector struct {
	objs delayObjects
	l    link.Link
}

// Match selects the segments to delay by TCP port (host order); set one.
type Match struct {
	SrcPort uint16 // delay segments sent from this port
	DstPort uint16 // delay segments sent to this port
}

// Attach holds every matching data segment leaving iface for d. tcx
// egress runs in __dev_queue_xmit, before the qdisc and the driver: in
// the sender's stack.
func Attach(iface string, m Match, d time.Duration) (*Injector, error) {
	return attach(iface, m, d, ebpf.AttachTCXEgress)
}

// AttachIngress holds every matching data segment arriving on iface for
// d. tcx ingress runs in __netif_receive_skb_core, after receive
// processing started (the netif_receive_skb tracepoint): in the
// receiver's stack.
func AttachIngress(iface string, m Match, d time.Duration) (*Injector, error) {
	return attach(iface, m, d, ebpf.AttachTCXIngress)
}

func attach(iface string, m Match, d time.Duration, at ebpf.AttachType) (*Injector, error) {
	if (m.SrcPort == 0) == (m.DstPort == 0) {
		return nil, errors.New("attach delay: set exactly one of SrcPort and DstPort")
	}
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("attach delay: %w", err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("attach delay: %w", err)
	}
	spec, err := loadDelay()
	if err != nil {
		return nil, fmt.Errorf("attach delay: %w", err)
	}
	for name, v := range map[string]any{"match_sport": m.SrcPort, "match_dport": m.DstPort, "delay_ns": uint64(d.Nanoseconds())} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("attach delay: set %s: %w", name, err)
		}
	}
	inj := &Injector{}
	if err := spec.LoadAndAssign(&inj.objs, nil); err != nil {
		return nil, fmt.Errorf("attach delay: load: %w", err)
	}
	// The program reads the packet from its link-layer header, where
	// both hooks have skb->data.
	inj.l, err = link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: inj.objs.DelayEgress, Attach: at})
	if err != nil {
		inj.objs.Close()
		return nil, fmt.Errorf("attach delay to %s %s: %w", iface, at, err)
	}
	return inj, nil
}

// Delayed is how many segments were held back so far.
func (i *Injector) Delayed() (uint64, error) {
	var n uint64
	err := i.objs.Delayed.Lookup(uint32(0), &n)
	return n, err
}

// Close detaches and unloads the program.
func (i *Injector) Close() error {
	err := i.l.Close()
	return errors.Join(err, i.objs.Close())
}
