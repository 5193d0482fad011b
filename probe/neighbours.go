package probe

import (
	"bufio"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// Neighbour is another BPF program attached, through a BPF link, to a
// kernel hook the probe uses. The kernel runs every program on a hook one
// after the other, so a neighbour's run time adds to the time between the
// probe's boundaries, whichever runs first.
type Neighbour struct {
	Hook      string         // the kernel hook: tracepoint or function name, e.g. "sched_switch"
	ProgramID ebpf.ProgramID // the kernel's id of the program (bpftool prog show id N)
	Program   string         // the program's name as loaded (at most 15 characters), "" if unknown
	Owner     string         // command name of a process holding the link or program, "" if none found
	PID       int            // that process, 0 if none found
}

// Neighbours lists the other BPF programs that were attached to the
// probe's hooks when Open ran, by hook then program id. Only attachments
// the kernel describes through a BPF link are seen: raw tracepoints and
// tp_btf (their tracepoint name), fentry/fexit (their function),
// kprobes and classic tracepoints attached through a perf link (from
// Linux 6.6, which reports their target); programs attached the older
// way (a perf event ioctl) are not.
func (p *Probe) Neighbours() []Neighbour { return p.neighbours }

// NeighbourWarnings is one line for all the neighbours (none without
// any): each owner with the hooks it shares with us and its program ids,
// owners in order of their first hook, e.g. "other BPF programs run on
// 2 of our hooks: bpftrace (pid 812) on sched_switch, sys_enter (ids 41,
// 50); program id 42 on sched_switch: their run time adds to our
// boundaries". Another volleyscope run beside ours attaches to every one
// of our hooks: one line says so, where a line per hook said it nine times.
func NeighbourWarnings(ns []Neighbour) []string {
	if len(ns) == 0 {
		return nil
	}
	type group struct {
		who   string
		hooks []string
		ids   []string
	}
	var groups []*group
	byWho := map[string]*group{}
	hooks := map[string]bool{}
	for _, n := range ns {
		who := cmp.Or(n.Owner, n.Program, "program")
		if n.PID > 0 {
			who = fmt.Sprintf("%s (pid %d)", who, n.PID)
		}
		g := byWho[who]
		if g == nil {
			g = &group{who: who}
			byWho[who] = g
			groups = append(groups, g)
		}
		if !slices.Contains(g.hooks, n.Hook) {
			g.hooks = append(g.hooks, n.Hook)
		}
		g.ids = append(g.ids, strconv.Itoa(int(n.ProgramID)))
		hooks[n.Hook] = true
	}
	parts := make([]string, len(groups))
	for i, g := range groups {
		ids := "id " + g.ids[0]
		if len(g.ids) > 1 {
			ids = "ids " + strings.Join(g.ids, ", ")
		}
		parts[i] = fmt.Sprintf("%s on %s (%s)", g.who, strings.Join(g.hooks, ", "), ids)
	}
	what := "other BPF programs run"
	if len(ns) == 1 {
		what = "another BPF program runs"
	}
	of := fmt.Sprintf("%d of our hooks", len(hooks))
	if len(hooks) == 1 {
		of = "one of our hooks"
	}
	return []string{fmt.Sprintf("%s on %s: %s: their run time adds to our boundaries", what, of, strings.Join(parts, "; "))}
}

// kernelHook is the kernel's name for an attachment's target: the
// tracepoint's name without its group ("sched/sched_switch" →
// "sched_switch") or the function's name.
func kernelHook(target string) string {
	return target[strings.LastIndexByte(target, '/')+1:]
}

// findNeighbours walks every BPF link of the machine and keeps those on
// one of our hooks whose program is not ours. Best effort: a link that
// vanishes or cannot be described is skipped.
func (p *Probe) findNeighbours() []Neighbour {
	ours := map[ebpf.ProgramID]bool{}
	for _, c := range p.progs {
		for _, prog := range c.Programs {
			if info, err := prog.Info(); err == nil {
				if id, ok := info.ID(); ok {
					ours[id] = true
				}
			}
		}
	}
	var ns []Neighbour
	it := new(link.Iterator)
	defer it.Close()
	for n := 0; it.Next() && n < 100000; n++ {
		info, err := it.Link.Info()
		if err != nil || ours[info.Program] {
			continue
		}
		hook := linkHook(info)
		if hook == "" || !slices.Contains(p.targets, hook) {
			continue
		}
		nb := Neighbour{Hook: hook, ProgramID: info.Program}
		if prog, err := ebpf.NewProgramFromID(info.Program); err == nil {
			if pi, err := prog.Info(); err == nil {
				nb.Program = pi.Name
			}
			prog.Close()
		}
		ns = append(ns, nb)
	}
	if len(ns) > 0 {
		findOwners(ns)
	}
	slices.SortFunc(ns, func(a, b Neighbour) int {
		if c := strings.Compare(a.Hook, b.Hook); c != 0 {
			return c
		}
		return int(a.ProgramID) - int(b.ProgramID)
	})
	return ns
}

// linkHook is the kernel hook a link attaches to, "" if the kernel does
// not say or it is not a tracing hook.
func linkHook(info *link.Info) string {
	if rt := info.RawTracepoint(); rt != nil {
		return rt.Name
	}
	if tr := info.Tracing(); tr != nil {
		// fentry/fexit, and tp_btf on kernels that describe it as a
		// tracing link: the target's name in the kernel's BTF.
		spec, err := btf.LoadKernelSpec()
		if err != nil {
			return ""
		}
		typ, err := spec.TypeByID(btf.TypeID(tr.TargetBtfId))
		if err != nil {
			return ""
		}
		return strings.TrimPrefix(typ.TypeName(), "btf_trace_")
	}
	if pe := info.PerfEvent(); pe != nil {
		if tp := pe.Tracepoint(); tp != nil {
			return tp.Tracepoint
		}
		if kp := pe.Kprobe(); kp != nil {
			return kp.Function
		}
	}
	return ""
}

// findOwners names, for each neighbour, a process holding its program or
// a link to it, from /proc/PID/fdinfo ("prog_id:" lines). It reads at most
// 100,000 descriptors and for at most half a second.
func findOwners(ns []Neighbour) {
	want := map[ebpf.ProgramID]bool{}
	for _, n := range ns {
		want[n.ProgramID] = true
	}
	found := map[ebpf.ProgramID]int{}
	deadline := time.Now().Add(500 * time.Millisecond)
	budget := 100000
	procs, _ := os.ReadDir("/proc")
	for _, d := range procs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", d.Name(), "fdinfo"))
		for _, fd := range fds {
			if budget--; budget < 0 || time.Now().After(deadline) {
				break
			}
			if id := fdProgID(filepath.Join("/proc", d.Name(), "fdinfo", fd.Name())); want[id] && found[id] == 0 {
				found[id] = pid
			}
		}
		if budget < 0 || time.Now().After(deadline) || len(found) == len(want) {
			break
		}
	}
	for i := range ns {
		if pid := found[ns[i].ProgramID]; pid != 0 {
			ns[i].PID = pid
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			ns[i].Owner = strings.TrimSpace(string(comm))
		}
	}
}

// fdProgID is the prog_id of a BPF program or link descriptor's fdinfo,
// 0 for any other descriptor.
func fdProgID(path string) ebpf.ProgramID {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan() && n < 32; n++ {
		if v, ok := strings.CutPrefix(sc.Text(), "prog_id:"); ok {
			id, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			return ebpf.ProgramID(id)
		}
	}
	return 0
}
