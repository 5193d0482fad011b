package attach

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// hook is one way of running a program when the kernel sends on a TCP
// socket (or, for the tracepoint, changes a TCP socket's state).
type hook struct {
	name   string
	family string // the VOLLEYSCOPE_PROBE_MODE that selects it
	spec   ebpf.ProgramSpec
	attach func(*ebpf.Program) (link.Link, error)
}

var hooks = []hook{
	{
		name: "tracepoint/sock/inet_sock_set_state", family: "tracepoint",
		spec: ebpf.ProgramSpec{Type: ebpf.TracePoint},
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.Tracepoint("sock", "inet_sock_set_state", p, nil)
		},
	},
	{
		name: "fentry/tcp_sendmsg", family: "fentry",
		spec: ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, AttachTo: "tcp_sendmsg"},
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: p})
		},
	},
	{
		name: "fexit/tcp_sendmsg", family: "fentry",
		spec: ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFExit, AttachTo: "tcp_sendmsg"},
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: p})
		},
	},
	{
		name: "kprobe/tcp_sendmsg", family: "kprobe",
		spec: ebpf.ProgramSpec{Type: ebpf.Kprobe},
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.Kprobe("tcp_sendmsg", p, nil)
		},
	},
	{
		name: "kretprobe/tcp_sendmsg", family: "kprobe",
		spec: ebpf.ProgramSpec{Type: ebpf.Kprobe},
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.Kretprobe("tcp_sendmsg", p, nil)
		},
	},
}

// TestKernelAttach runs the hooks of the family VOLLEYSCOPE_PROBE_MODE
// names, or all of them for "auto"/unset. A forced family that does not
// load or attach fails; under auto it skips, as the probe would fall back.
func TestKernelAttach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("requires root (loads eBPF programs)")
	}
	mode := os.Getenv("VOLLEYSCOPE_PROBE_MODE")
	if mode == "" {
		mode = "auto"
	}
	ran := 0
	for _, h := range hooks {
		if mode != "auto" && mode != h.family {
			continue
		}
		ran++
		t.Run(h.name, func(t *testing.T) {
			counter, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
			if err != nil {
				t.Fatalf("create map: %v", err)
			}
			defer counter.Close()
			spec := h.spec
			spec.License = "GPL"
			spec.Instructions = countInstructions(counter.FD())
			prog, err := ebpf.NewProgram(&spec)
			if err != nil {
				refused(t, mode, "load", err)
				return
			}
			defer prog.Close()
			l, err := h.attach(prog)
			if err != nil {
				refused(t, mode, "attach", err)
				return
			}
			defer l.Close()
			exchange(t)
			var n uint64
			if err := counter.Lookup(uint32(0), &n); err != nil {
				t.Fatalf("read counter: %v", err)
			}
			if n == 0 {
				t.Fatalf("%s attached but never fired during a loopback TCP exchange", h.name)
			}
			t.Logf("%s fired %d times", h.name, n)
		})
	}
	if ran == 0 {
		t.Fatalf("no hook belongs to mode %q", mode)
	}
}

// refused fails a forced mode and skips under auto.
func refused(t *testing.T, mode, what string, err error) {
	t.Helper()
	if mode == "auto" && (errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.EINVAL)) {
		t.Skipf("%s refused by this kernel: %v", what, err)
	}
	t.Fatalf("%s: %v", what, err)
}

// countInstructions adds one to element 0 of an array map, whatever the
// context: the same code serves every program type.
func countInstructions(mapFD int) asm.Instructions {
	return asm.Instructions{
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
}

// exchange connects over 127.0.0.1 and bounces 4 bytes each way.
func exchange(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			done <- err
			return
		}
		_, err = c.Write(buf)
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
}
