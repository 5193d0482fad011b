package probe

import (
	"errors"
	"reflect"
	"testing"

	"github.com/volleyscope/volleyscope/bpf"
)

// TestHookString: the strings results.json and the terminal show for each
// state stay what users have seen.
func TestHookString(t *testing.T) {
	for _, tc := range []struct {
		h    Hook
		want string
	}{
		{Hook{Event: "sched_switch", State: HookAttached, Hook: "tp_btf/sched_switch"}, "tp_btf/sched_switch"},
		{Hook{Event: "sys_enter", State: HookOff, OffReason: "--syscalls"}, "off (--syscalls)"},
		{Hook{Event: "sched_wakeup", State: HookOff}, "off"},
		{Hook{Event: "sock_send_length", State: HookOff, OffReason: "send_start has a hook"}, "off (send_start has a hook)"},
		{Hook{Event: "sk_data_ready", Err: errors.New("no")}, "none"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.h.String(); got != tc.want {
				t.Errorf("%+v: %q, want %q", tc.h, got, tc.want)
			}
		})
	}
	if HookMissing.String() != "missing" || HookAttached.String() != "attached" || HookOff.String() != "off" {
		t.Errorf("state names %s/%s/%s", HookMissing, HookAttached, HookOff)
	}
}

func TestRingString(t *testing.T) {
	for _, tc := range []struct {
		r    Ring
		want string
	}{
		{Ring{Kind: RingPerCPU}, "per-CPU rings"},
		{Ring{Kind: RingBPF}, "BPF ring buffer"},
		{Ring{Kind: RingBPF, Why: "per-CPU rings refused: x"}, "BPF ring buffer (per-CPU rings refused: x)"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}

// TestHookTablePrograms: every program the hook table names is in the
// object (bpf2go's ProbeProgramSpecs), and every program of the object
// has a place in the table.
func TestHookTablePrograms(t *testing.T) {
	spec, err := bpf.LoadProbe()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, ev := range hookTable {
		for _, c := range ev.cands {
			for _, a := range c.att {
				if _, ok := spec.Programs[a.prog]; !ok {
					t.Errorf("%s: candidate %s names program %s, not in probe.c", ev.event, c.name, a.prog)
				}
				used[a.prog] = true
			}
		}
	}
	st := reflect.TypeFor[bpf.ProbeProgramSpecs]()
	for i := 0; i < st.NumField(); i++ {
		if name := st.Field(i).Tag.Get("ebpf"); !used[name] {
			t.Errorf("program %s of probe.c is in no candidate of the hook table", name)
		}
	}
}
