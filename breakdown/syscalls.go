package breakdown

import (
	"fmt"
	"sort"

	"github.com/volleyscope/volleyscope/probe"
	"github.com/volleyscope/volleyscope/stats"
)

// SyscallStat is the latency distribution of one system call on one side.
type SyscallStat struct {
	Side  string
	Name  string
	Count int64
	P50Ns float64
	P99Ns float64
	MaxNs float64
	Hist  *hdrHist
}

// Syscalls summarizes the completed system calls among events, per side
// (threads in clientTIDs are the client; every other tracked thread is the
// server) and name, busiest first.
func Syscalls(events []probe.Event, clientTIDs map[uint32]bool) []SyscallStat {
	t := NewSyscallTable()
	for i := range events {
		t.Add(&events[i], clientTIDs)
	}
	return t.Stats()
}

type syscallKey struct {
	side string
	nr   uint64
}

// SyscallTable tallies completed system calls one event at a time.
type SyscallTable struct {
	m map[syscallKey]*hdrHist
}

// NewSyscallTable starts an empty table.
func NewSyscallTable() *SyscallTable {
	return &SyscallTable{m: map[syscallKey]*hdrHist{}}
}

// Add counts e if it is a completed system call; threads in clientTIDs
// are the client's, every other tracked thread the server's.
func (t *SyscallTable) Add(e *probe.Event, clientTIDs map[uint32]bool) {
	if e.Kind != probe.KindSyscall {
		return
	}
	k := syscallKey{"server", e.Arg1}
	if clientTIDs[e.TID] {
		k.side = "client"
	}
	h := t.m[k]
	if h == nil {
		h = newHdr()
		t.m[k] = h
	}
	h.add(int64(e.TS) - int64(e.Arg0))
}

// Stats summarizes the table per side and name, busiest first.
func (t *SyscallTable) Stats() []SyscallStat {
	m := t.m
	out := make([]SyscallStat, 0, len(m))
	for k, h := range m {
		l := stats.Summarize(h.h)
		out = append(out, SyscallStat{Side: k.side, Name: SyscallName(k.nr), Count: l.Count, P50Ns: l.P50, P99Ns: l.P99, MaxNs: l.Max, Hist: h})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Side != out[j].Side {
			return out[i].Side < out[j].Side
		}
		return out[i].Count > out[j].Count
	})
	return out
}

// SyscallName names an x86-64 system call number.
func SyscallName(nr uint64) string {
	if s, ok := syscallNames[nr]; ok {
		return s
	}
	return fmt.Sprintf("syscall_%d", nr)
}

// x86-64 numbers (arch/x86/entry/syscalls/syscall_64.tbl) of the calls a
// network server and its runtime make.
var syscallNames = map[uint64]string{
	0: "read", 1: "write", 3: "close", 7: "poll", 13: "rt_sigaction", 14: "rt_sigprocmask", 15: "rt_sigreturn",
	19: "readv", 20: "writev", 23: "select", 24: "sched_yield", 35: "nanosleep", 39: "getpid",
	41: "socket", 42: "connect", 43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg",
	48: "shutdown", 49: "bind", 50: "listen", 54: "setsockopt", 55: "getsockopt", 56: "clone", 57: "fork",
	59: "execve", 60: "exit", 61: "wait4", 62: "kill", 72: "fcntl", 186: "gettid", 200: "tkill", 202: "futex",
	203: "sched_setaffinity", 204: "sched_getaffinity", 228: "clock_gettime", 230: "clock_nanosleep",
	231: "exit_group", 232: "epoll_wait", 233: "epoll_ctl", 234: "tgkill", 257: "openat", 270: "pselect6",
	271: "ppoll", 281: "epoll_pwait", 288: "accept4", 290: "eventfd2", 291: "epoll_create1", 299: "recvmmsg",
	307: "sendmmsg", 425: "io_uring_setup", 426: "io_uring_enter", 427: "io_uring_register", 435: "clone3",
	441: "epoll_pwait2",
}
