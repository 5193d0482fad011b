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
		if strings.Contains(w, "on sched_switch (") && strings.Contains(w, "vs_neighbour id ") && strings.HasSuffix(w, "their run time adds to our boundaries") {
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
			[]string{"1 other BPF program runs on sched_switch (tp_sched id 7): their run time adds to our boundaries"}},
		{"two hooks, owners first", []Neighbour{
			{Hook: "sched_switch", ProgramID: 41, Program: "sched_switch", Owner: "bpftrace"},
			{Hook: "sched_switch", ProgramID: 42},
			{Hook: "sys_enter", ProgramID: 50, Owner: "bpftrace"},
		}, []string{
			"2 other BPF programs run on sched_switch (bpftrace id 41, program id 42): their run time adds to our boundaries",
			"1 other BPF program runs on sys_enter (bpftrace id 50): their run time adds to our boundaries",
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
