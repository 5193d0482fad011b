package probe

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/bpf"
)

// PayloadCap is how many bytes of a syscall's data a Payload record
// holds at most (PAYLOAD_CAP in bpf/payload.h).
const PayloadCap = len(bpf.PayloadPayload{}.Data)

// PayloadConfig configures a payload capture (OpenPayload).
type PayloadConfig struct {
	Port uint16 // the server's listening port; required
	// Recv captures the server's receives (its sockets whose local port
	// is Port); otherwise the clients' sends (sockets whose remote port is
	// Port).
	Recv bool
	// MaxCaptures bounds the cost: each connection's first MaxCaptures
	// sends (or receives) are captured and no more; 0: every one.
	MaxCaptures uint32
	// Poll is how often the reader looks at the ring (the programs never
	// wake it); 0: 10ms.
	Poll time.Duration
	// skip leaves out each event's first skip candidates: tests load
	// the fallbacks with it.
	skip int
}

// Payload is one captured send or receive: the first bytes of its data
// and its length.
type Payload struct {
	TS    int64  // the syscall's exit, CLOCK_MONOTONIC ns
	SK    uint64 // the socket (struct sock address), as probe.Event.SK
	Total int64  // bytes the syscall sent or received
	TID   uint32
	TGID  uint32
	Lport uint16
	Rport uint16
	Recv  bool
	Nr    uint32 // syscall number
	Data  []byte // the first min(Total, PayloadCap) bytes, or fewer if unreadable; valid during the callback only
}

// PayloadCapture reads the data of the watched processes' socket
// syscalls on one port (bpf/payload.c), for a watch's protocol parsers.
// It is separate from Probe: only a watch loads it.
type PayloadCapture struct {
	cfg   PayloadConfig
	objs  bpf.PayloadObjects
	links []*hookLink // detached while tracing is off (SetTracing)
	// detaching is the last SetTracing(false)'s detach while in flight.
	detaching <-chan error
	rd        *ringbuf.Reader
	rest      *ebpf.Collection // the maps Assign did not take
	stats     interface{ Close() error }
	hooks     []Hook
	// watermark: every record stamped before it has been handed to Run's
	// callback.
	watermark atomic.Int64
	mu        sync.Mutex
	closed    bool
}

// payloadHooks are the capture's two events, each with its candidates in
// order of preference (as hookTable's).
var payloadHooks = []eventHooks{
	{event: "payload_sys_enter", costs: "the payload capture: connections are timed, not parsed", cands: []candidate{
		syscallsCand("tp_payload_enter", "sys_enter_"),
		{famTPBTF, []attachment{{prog: "tpbtf_payload_enter", target: "sys_enter"}}, "tp_btf/sys_enter"},
		{famRawTP, []attachment{{prog: "rawtp_payload_enter", target: "sys_enter"}}, "raw_tp/sys_enter"},
		{famTracepoint, []attachment{{prog: "tp_payload_enter", target: "raw_syscalls/sys_enter"}}, "tracepoint/raw_syscalls/sys_enter"},
	}},
	{event: "payload_sys_exit", costs: "the payload capture (as payload_sys_enter)", cands: []candidate{
		syscallsCand("tp_payload_exit", "sys_exit_"),
		{famTPBTF, []attachment{{prog: "tpbtf_payload_exit", target: "sys_exit"}}, "tp_btf/sys_exit"},
		{famRawTP, []attachment{{prog: "rawtp_payload_exit", target: "sys_exit"}}, "raw_tp/sys_exit"},
		{famTracepoint, []attachment{{prog: "tp_payload_exit", target: "raw_syscalls/sys_exit"}}, "tracepoint/raw_syscalls/sys_exit"},
	}},
}

// payloadSyscalls are the data syscalls the capture reads (bpf/payload.c).
var payloadSyscalls = []string{"write", "sendto", "sendmsg", "writev", "read", "recvfrom", "recvmsg", "readv"}

// syscallsCand is one program on each data syscall's own tracepoint
// (syscalls:sys_enter_write …; CONFIG_FTRACE_SYSCALLS).
func syscallsCand(prog, prefix string) candidate {
	c := candidate{fam: famTracepoint, name: "tracepoint/syscalls/" + prefix + "{write,sendto,sendmsg,writev,read,recvfrom,recvmsg,readv}"}
	for _, sc := range payloadSyscalls {
		c.att = append(c.att, attachment{prog: prog, target: "syscalls/" + prefix + sc})
	}
	return c
}

// OpenPayload loads the payload capture and attaches its two hooks, each
// to the first candidate that loads. Nothing is captured until Watch
// names a process. The exit is attached before the entry, so that no
// entry is stashed that no exit would clear.
func OpenPayload(cfg PayloadConfig) (*PayloadCapture, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	if cfg.Port == 0 {
		return nil, errors.New("payload capture: no port")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 10 * time.Millisecond
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("lift the locked-memory limit: %w", err)
	}
	tracefsErr := ensureTracefs()
	spec, err := bpf.LoadPayload()
	if err != nil {
		return nil, fmt.Errorf("load payload spec: %w", err)
	}
	var s bpf.PayloadSpecs
	if err := spec.Assign(&s); err != nil {
		return nil, fmt.Errorf("load payload spec: %w", err)
	}
	for _, v := range []struct {
		spec *ebpf.VariableSpec
		val  any
	}{
		{s.WatchPort, cfg.Port},
		{s.CaptureRecv, boolByte(cfg.Recv)},
		{s.MaxCaptures, cfg.MaxCaptures},
	} {
		if err := v.spec.Set(v.val); err != nil {
			return nil, fmt.Errorf("set %s: %w", v.spec.Name, err)
		}
	}
	c := &PayloadCapture{cfg: cfg}
	// Run statistics for the capture's own cost (Runs); best effort, as
	// the probe's.
	if st, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME); err == nil {
		c.stats = st
	}
	// Each program is loaded alone, so that one refused (a tp_btf the
	// kernel lacks) does not keep the others from loading; the maps are
	// created once and shared.
	ms := spec.Copy()
	ms.Programs = map[string]*ebpf.ProgramSpec{}
	coll, err := ebpf.NewCollection(ms)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("create payload maps: %w", err)
	}
	shared := maps.Clone(coll.Maps)
	// The typed maps take theirs; the collection keeps the rest (the
	// constants' array) for Close.
	c.rest = coll
	if err := coll.Assign(&c.objs.PayloadMaps); err != nil {
		c.Close()
		return nil, fmt.Errorf("create payload maps: %w", err)
	}
	cache := btf.NewCache()
	for i := len(payloadHooks) - 1; i >= 0; i-- {
		ev := payloadHooks[i]
		h := Hook{Event: ev.event, Costs: ev.costs}
		var errs errList
		for _, cand := range ev.cands[min(cfg.skip, len(ev.cands)-1):] {
			// One program, attached at each of the candidate's places.
			a := cand.att[0]
			one := spec.Copy()
			one.Programs = map[string]*ebpf.ProgramSpec{a.prog: spec.Programs[a.prog].Copy()}
			pc, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: shared, Cache: cache})
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: load: %w", cand.name, shortErr(err)))
				continue
			}
			var ls []link.Link
			for _, at := range cand.att {
				var l link.Link
				if l, err = attach(cand.fam, at, pc.Programs[a.prog]); err != nil {
					break
				}
				ls = append(ls, l)
			}
			if err != nil {
				for _, l := range ls {
					l.Close()
				}
				pc.Close()
				if cand.fam == famTracepoint && tracefsErr != nil {
					err = fmt.Errorf("%w (tracefs: %v)", err, tracefsErr)
				}
				errs = append(errs, fmt.Errorf("%s: attach: %w", cand.name, err))
				continue
			}
			for j, l := range ls {
				c.links = append(c.links, &hookLink{l: l, fam: cand.fam, a: cand.att[j], prog: pc.Programs[a.prog]})
			}
			c.keep(pc.Programs[a.prog], i)
			pc.Programs[a.prog] = nil // kept: not closed with the collection
			pc.Close()
			h.State, h.Hook = HookAttached, cand.name
			break
		}
		if h.State != HookAttached {
			h.Err = errs
			c.Close()
			return nil, fmt.Errorf("attach %s: %w", ev.event, errs)
		}
		c.hooks = append([]Hook{h}, c.hooks...)
	}
	if c.rd, err = ringbuf.NewReader(c.objs.Payloads); err != nil {
		c.Close()
		return nil, fmt.Errorf("open payload ring reader: %w", err)
	}
	return c, nil
}

// keep holds a loaded program in the typed objects, for Runs and Close.
func (c *PayloadCapture) keep(p *ebpf.Program, i int) {
	if i == 0 {
		c.objs.TpbtfPayloadEnter = p // whichever family it is: the slot names the event
	} else {
		c.objs.TpbtfPayloadExit = p
	}
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Hooks is what OpenPayload attached, entry then exit.
func (c *PayloadCapture) Hooks() []Hook { return c.hooks }

// Watch captures process tgid's syscalls from now on.
func (c *PayloadCapture) Watch(tgid uint32) error {
	w := (tgid >> 6) & 0xffff
	var bits uint64
	if err := c.objs.WatchedTgids.Lookup(w, &bits); err != nil {
		return fmt.Errorf("watch tgid %d: %w", tgid, err)
	}
	bits |= 1 << (tgid & 63)
	if err := c.objs.WatchedTgids.Put(w, bits); err != nil {
		return fmt.Errorf("watch tgid %d: %w", tgid, err)
	}
	return nil
}

// Run hands each record to fn, in the order the ring holds them (by CPU
// and time, not one time order across CPUs), until Close. fn runs on
// Run's goroutine and must copy what it keeps of Data.
func (c *PayloadCapture) Run(fn func(*Payload)) error {
	// Once Run has returned no record will be handed on: a consumer that
	// waits for the watermark must not wait for ever.
	defer c.watermark.Store(math.MaxInt64)
	var rec ringbuf.Record
	var p Payload
	// The reader drains without blocking and then sleeps on a Go timer:
	// a read blocked in epoll_wait is a goroutine in a system call, whose
	// P the runtime's sysmon takes back after 10 ms, and each such
	// hand-off keeps sysmon polling every 20 µs for a while. Over a watch
	// that is a CPU cost per poll, whether or not anything was captured.
	for first := true; ; first = false {
		if !first {
			time.Sleep(c.cfg.Poll)
		}
		start := monotonicNs()
		c.rd.SetDeadline(time.Now())
		for {
			err := c.rd.ReadInto(&rec)
			switch {
			case err == nil:
				decodePayload(rec.RawSample, &p)
				fn(&p)
				continue
			case errors.Is(err, os.ErrDeadlineExceeded):
				// The ring is drained: every record committed before the
				// wait began has been read.
				c.watermark.Store(start)
			case errors.Is(err, ringbuf.ErrClosed):
				return nil
			default:
				return fmt.Errorf("read payload ring: %w", err)
			}
			break
		}
	}
}

// Watermark is a time before which every record has been handed to Run's
// callback (0 before the first poll; the greatest time once Run has
// returned). A record is stamped at its
// syscall's exit, just before the ring commits it.
func (c *PayloadCapture) Watermark() int64 { return c.watermark.Load() }

// decodePayload reads one record through the type bpf2go generated
// from struct payload (bpf/payload.h), so that no offset is kept by hand.
// The ring's records are 8-byte aligned, as the type needs.
func decodePayload(b []byte, p *Payload) {
	if len(b) < int(unsafe.Sizeof(bpf.PayloadPayload{})) {
		*p = Payload{}
		return
	}
	r := (*bpf.PayloadPayload)(unsafe.Pointer(&b[0]))
	*p = Payload{TS: int64(r.Ts), SK: r.Sk, Total: r.Total, TID: r.Tid, TGID: r.Tgid, Lport: r.Lport, Rport: r.Rport,
		Recv: r.Recv != 0, Nr: r.Nr, Data: r.Data[:min(int(r.Cap), PayloadCap)]}
}

// Lost is the number of records dropped because the ring was full.
func (c *PayloadCapture) Lost() uint64 {
	var per []uint64
	if c.objs.PayloadLost == nil || c.objs.PayloadLost.Lookup(uint32(0), &per) != nil {
		return 0
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}

// Runs is the kernel's run statistics of the capture's programs: how
// many times they ran, machine-wide, and their total run time (as
// Probe.MachineRuns).
func (c *PayloadCapture) Runs() (runs, ns uint64, err error) {
	for _, p := range []*ebpf.Program{c.objs.TpbtfPayloadEnter, c.objs.TpbtfPayloadExit} {
		if p == nil {
			continue
		}
		s, err := p.Stats()
		if err != nil {
			return 0, 0, fmt.Errorf("payload capture: program stats: %w", err)
		}
		runs += s.RunCount
		ns += uint64(s.Runtime.Nanoseconds())
	}
	return runs, ns, nil
}

// StopStats turns the kernel's run statistics off (as Probe.StopStats);
// the counts so far stay readable through Runs.
func (c *PayloadCapture) StopStats() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stats != nil {
		c.stats.Close()
		c.stats = nil
	}
}

// SetTracing detaches the capture's hooks (off) or attaches them again
// (on), beside Probe.SetTracing, so that an off stretch costs the
// machine's syscalls nothing. A syscall in progress when the hooks went
// off never had its exit seen: the pending entries are cleared before
// they come back, so that no exit reads a buffer recorded before. A
// connection's sends made while off are not captured; one first seen
// after is parsed from its first send seen.
func (c *PayloadCapture) SetTracing(on bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("payload capture: set tracing: closed")
	}
	if !on {
		if c.detaching == nil {
			c.detaching = detachAll(c.links, true)
		}
		return nil
	}
	if err := detached(&c.detaching); err != nil {
		return fmt.Errorf("payload capture: detach: %w", err)
	}
	if len(c.links) == 0 || c.links[0].l != nil {
		return nil
	}
	var keys []uint32 // collected first: deleting while walking would skip some
	var next uint32
	for err := c.objs.Pendings.NextKey(nil, &next); err == nil; err = c.objs.Pendings.NextKey(next, &next) {
		keys = append(keys, next)
	}
	for _, k := range keys {
		_ = c.objs.Pendings.Delete(k)
	}
	if err := reattach(c.links); err != nil {
		return fmt.Errorf("payload capture: %w", err)
	}
	return nil
}

// Close detaches and unloads everything; Run returns. Safe to call twice.
func (c *PayloadCapture) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	errs = append(errs, detached(&c.detaching), <-detachAll(c.links, true))
	if c.rd != nil {
		errs = append(errs, c.rd.Close())
	}
	errs = append(errs, c.objs.Close())
	if c.rest != nil {
		c.rest.Close()
	}
	if c.stats != nil {
		errs = append(errs, c.stats.Close())
	}
	return errors.Join(errs...)
}
