package probe

import (
	"errors"
	"testing"
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
