package probe

import (
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// TestNeighbours attaches a program of its own (two instructions, built
// with the asm package) to the sched_switch raw tracepoint before Open,
// and checks that Open lists it, with this process as its owner, and
// warns about it; our own programs are never listed.
func TestNeighbours(t *testing.T) {
	requireRoot(t)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "vs_neighbour",
		Type:         ebpf.RawTracepoint,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		t.Fatalf("load a raw tracepoint program: %v", err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sched_switch", Program: prog})
	if err != nil {
		t.Fatalf("attach to sched_switch: %v", err)
	}
	defer l.Close()

	p, err := Open(Config{Mode: testMode(), Ports: []uint16{1}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var mine *Neighbour
	for i, n := range p.Neighbours() {
		t.Logf("neighbour %+v", n)
		if n.ProgramID == id {
			mine = &p.Neighbours()[i]
		}
		for _, c := range p.progs {
			for _, ours := range c.Programs {
				if oi, err := ours.Info(); err == nil {
					if oid, _ := oi.ID(); oid == n.ProgramID {
						t.Errorf("our own program %d listed as a neighbour", oid)
					}
				}
			}
		}
	}
	if mine == nil {
		t.Fatalf("program %d on sched_switch not listed: %+v", id, p.Neighbours())
	}
	// findOwners skips this process (the probe's own descriptors), so the
	// owner is named only when another process holds it: not here.
	if mine.Hook != "sched_switch" || mine.Program != "vs_neighbour" || mine.PID == os.Getpid() {
		t.Errorf("listed as %+v, want hook sched_switch, program vs_neighbour", *mine)
	}
	var warned bool
	for _, w := range NeighbourWarnings(p.Neighbours()) {
		t.Log(w)
		if strings.Contains(w, "vs_neighbour") && strings.Contains(w, "sched_switch") && strings.HasSuffix(w, "their run time adds to our boundaries") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning names vs_neighbour on sched_switch: %q", NeighbourWarnings(p.Neighbours()))
	}
}

func TestNeighbourWarnings(t *testing.T) {
	for _, tc := range []struct {
		name string
		ns   []Neighbour
		want []string
	}{
		{"none", nil, nil},
		{"one", []Neighbour{{Hook: "sched_switch", ProgramID: 7, Program: "tp_sched"}},
			[]string{"another BPF program runs on one of our hooks: tp_sched on sched_switch (id 7): their run time adds to our boundaries"}},
		{"two hooks, owners first", []Neighbour{
			{Hook: "sched_switch", ProgramID: 41, Program: "sched_switch", Owner: "bpftrace", PID: 812},
			{Hook: "sched_switch", ProgramID: 42},
			{Hook: "sys_enter", ProgramID: 50, Owner: "bpftrace", PID: 812},
		}, []string{
			"other BPF programs run on 2 of our hooks: bpftrace (pid 812) on sched_switch, sys_enter (ids 41, 50); program on sched_switch (id 42): their run time adds to our boundaries",
		}},
		{"another volleyscope: one line", []Neighbour{
			{Hook: "sched_switch", ProgramID: 1, Owner: "volleyscope", PID: 9},
			{Hook: "sched_wakeup", ProgramID: 2, Owner: "volleyscope", PID: 9},
			{Hook: "tcp_sendmsg_locked", ProgramID: 3, Owner: "volleyscope", PID: 9},
		}, []string{
			"other BPF programs run on 3 of our hooks: volleyscope (pid 9) on sched_switch, sched_wakeup, tcp_sendmsg_locked (ids 1, 2, 3): their run time adds to our boundaries",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := NeighbourWarnings(tc.ns)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
