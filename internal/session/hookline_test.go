package session

import (
	"errors"
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/probe"
)

func TestHookLines(t *testing.T) {
	hooks := []probe.Hook{
		{Event: "sock_send", State: probe.HookAttached, Hook: "tp_btf/net_dev_queue"},
		{Event: "sock_recv_length", State: probe.HookAttached, Hook: "tp_btf/sock_recv_length"},
		{Event: "sched_switch", State: probe.HookAttached, Hook: "raw_tp/sched_switch"},
		{Event: "sys_enter", State: probe.HookOff, OffReason: "--syscalls"},
		{Event: "tcp_rcv", State: probe.HookMissing, Err: errors.New("EPERM")},
	}
	short, long := hookLines("auto", "ringbuf", hooks)
	for _, want := range []string{"mode auto", "records on ringbuf", "3 of 4 hooks attached", "2 tp_btf, 1 raw_tp", "missing: tcp_rcv", "1 off by choice"} {
		if !strings.Contains(short, want) {
			t.Errorf("short %q lacks %q", short, want)
		}
	}
	if strings.Contains(short, "sock_send=") {
		t.Errorf("short %q lists each hook", short)
	}
	for _, want := range []string{"sock_send=tp_btf/net_dev_queue", "sched_switch=raw_tp/sched_switch", "off: sys_enter", "missing: tcp_rcv"} {
		if !strings.Contains(long, want) {
			t.Errorf("long %q lacks %q", long, want)
		}
	}
	if len(short) > 160 {
		t.Errorf("short line is %d characters: %q", len(short), short)
	}
}
