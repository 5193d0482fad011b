package breakdown

import (
	"fmt"
	"runtime"
	"sort"

	"github.com/volleyscope/volleyscope/internal/stats"
	"github.com/volleyscope/volleyscope/probe"
)

// SyscallStat is the latency distribution of one system call on one side.
type SyscallStat struct {
	Side  string
	Name  string
	Count int64
	P50Ns float64
	P99Ns float64
	MaxNs float64
	Log2  []stats.Log2Bucket // the distribution in power-of-two buckets
	Hist  *hdrHist
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
		out = append(out, SyscallStat{Side: k.side, Name: SyscallName(k.nr), Count: l.Count, P50Ns: l.P50, P99Ns: l.P99, MaxNs: l.Max, Log2: stats.Log2(h.h), Hist: h})
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

// syscallNames are this architecture's numbers of the calls a network
// server, its runtime and its C library make.
var syscallNames = map[string]map[uint64]string{"amd64": x86_64Names, "arm64": arm64Names}[runtime.GOARCH]

// x86_64Names: arch/x86/entry/syscalls/syscall_64.tbl.
var x86_64Names = map[uint64]string{
	0: "read", 1: "write", 2: "open", 3: "close", 4: "stat", 5: "fstat", 6: "lstat", 7: "poll", 8: "lseek",
	9: "mmap", 10: "mprotect", 11: "munmap", 12: "brk", 13: "rt_sigaction", 14: "rt_sigprocmask", 15: "rt_sigreturn",
	16: "ioctl", 17: "pread64", 18: "pwrite64", 19: "readv", 20: "writev", 21: "access", 22: "pipe", 23: "select",
	24: "sched_yield", 25: "mremap", 28: "madvise", 32: "dup", 33: "dup2", 35: "nanosleep", 39: "getpid",
	41: "socket", 42: "connect", 43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg",
	48: "shutdown", 49: "bind", 50: "listen", 51: "getsockname", 52: "getpeername", 53: "socketpair",
	54: "setsockopt", 55: "getsockopt", 56: "clone", 57: "fork", 58: "vfork", 59: "execve", 60: "exit",
	61: "wait4", 62: "kill", 63: "uname", 72: "fcntl", 89: "readlink", 96: "gettimeofday", 97: "getrlimit",
	98: "getrusage", 102: "getuid", 110: "getppid", 131: "sigaltstack", 140: "getpriority", 141: "setpriority",
	157: "prctl", 158: "arch_prctl", 160: "setrlimit", 186: "gettid", 200: "tkill", 202: "futex",
	203: "sched_setaffinity", 204: "sched_getaffinity", 217: "getdents64", 218: "set_tid_address",
	219: "restart_syscall", 228: "clock_gettime", 229: "clock_getres", 230: "clock_nanosleep", 231: "exit_group",
	232: "epoll_wait", 233: "epoll_ctl", 234: "tgkill", 257: "openat", 262: "newfstatat", 270: "pselect6",
	271: "ppoll", 273: "set_robust_list", 274: "get_robust_list", 281: "epoll_pwait", 283: "timerfd_create",
	284: "eventfd", 286: "timerfd_settime", 288: "accept4", 290: "eventfd2", 291: "epoll_create1", 293: "pipe2",
	299: "recvmmsg", 302: "prlimit64", 307: "sendmmsg", 318: "getrandom", 319: "memfd_create", 332: "statx",
	334: "rseq", 425: "io_uring_setup", 426: "io_uring_enter", 427: "io_uring_register", 435: "clone3",
	441: "epoll_pwait2",
}

// arm64Names: the generic table (include/uapi/asm-generic/unistd.h).
var arm64Names = map[uint64]string{
	17: "getcwd", 19: "eventfd2", 20: "epoll_create1", 21: "epoll_ctl", 22: "epoll_pwait", 23: "dup", 25: "fcntl",
	29: "ioctl", 56: "openat", 57: "close", 59: "pipe2", 62: "lseek", 63: "read", 64: "write", 65: "readv",
	66: "writev", 67: "pread64", 68: "pwrite64", 72: "pselect6", 73: "ppoll", 93: "exit", 94: "exit_group",
	96: "set_tid_address", 98: "futex", 99: "set_robust_list", 101: "nanosleep", 113: "clock_gettime",
	115: "clock_nanosleep", 122: "sched_setaffinity", 123: "sched_getaffinity", 124: "sched_yield", 129: "kill",
	130: "tkill", 131: "tgkill", 132: "sigaltstack", 134: "rt_sigaction", 135: "rt_sigprocmask",
	139: "rt_sigreturn", 160: "uname", 172: "getpid", 178: "gettid", 198: "socket", 200: "bind", 201: "listen",
	202: "accept", 203: "connect", 204: "getsockname", 205: "getpeername", 206: "sendto", 207: "recvfrom",
	208: "setsockopt", 209: "getsockopt", 210: "shutdown", 211: "sendmsg", 212: "recvmsg", 215: "munmap",
	220: "clone", 222: "mmap", 226: "mprotect", 233: "madvise", 242: "accept4", 243: "recvmmsg", 260: "wait4",
	261: "prlimit64", 269: "sendmmsg", 278: "getrandom", 293: "rseq", 425: "io_uring_setup",
	426: "io_uring_enter", 427: "io_uring_register", 435: "clone3", 441: "epoll_pwait2",
}

// IsSendSyscall says whether system call nr (x86-64) sends on a socket,
// as the join reads a completed syscall's record.
func IsSendSyscall(nr uint64) bool { return isSend(nr) }

// IsRecvSyscall says whether system call nr (x86-64) receives from a
// socket, likewise.
func IsRecvSyscall(nr uint64) bool { return isRecv(nr) }
