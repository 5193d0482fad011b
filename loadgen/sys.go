package loadgen

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

func closeFd(fd int) { _ = unix.Close(fd) }

// fdMargin is what a run needs beyond one descriptor per connection: the
// client threads' epoll descriptors, stdio, and what the rest of the
// process opens while the clients run (output files, a probe's rings).
const fdMargin = 20

// raiseNoFile makes room for conns more descriptors on top of those open
// now. It raises the soft RLIMIT_NOFILE as far as the hard limit, and the
// hard limit too where the process may (CAP_SYS_RESOURCE); when that is not
// enough it says how many are needed and how to get them.
func raiseNoFile(conns int) error {
	open := 0
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		open = len(ents)
	}
	need := uint64(conns + open + fdMargin)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read the open-file limit: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	if lim.Max >= need {
		want := unix.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err == nil {
			return nil
		}
	} else if unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: need, Max: need}) == nil {
		return nil
	}
	return fmt.Errorf("%d connections need about %d file descriptors; the limit is %d (hard %d): raise it with ulimit -n %d, or use fewer --clients",
		conns, need, lim.Cur, lim.Max, need)
}

// epollWait waits at most timeoutNs nanoseconds (negative: forever) for
// events on epfd. epoll_pwait2 (Linux 5.11) takes the timeout in
// nanoseconds, which an open-loop schedule needs; before that kernel,
// epoll_wait rounds it up to whole milliseconds.
func epollWait(epfd int, events []unix.EpollEvent, timeoutNs int64) (int, error) {
	if !noPwait2.Load() {
		var tsp unsafe.Pointer
		var ts unix.Timespec
		if timeoutNs >= 0 {
			ts = unix.NsecToTimespec(timeoutNs)
			tsp = unsafe.Pointer(&ts)
		}
		n, _, e := unix.Syscall6(unix.SYS_EPOLL_PWAIT2, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
			uintptr(len(events)), uintptr(tsp), 0, 0)
		if e == 0 {
			return int(n), nil
		}
		if e != unix.ENOSYS {
			return 0, e
		}
		noPwait2.Store(true)
	}
	ms := -1
	if timeoutNs >= 0 {
		ms = int((timeoutNs + 999_999) / 1_000_000)
	}
	return unix.EpollWait(epfd, events, ms)
}

// noPwait2 is set once the kernel said it has no epoll_pwait2.
var noPwait2 atomic.Bool

// sleepUntil sleeps the calling thread until CLOCK_MONOTONIC reaches t.
func sleepUntil(t int64) {
	ts := unix.NsecToTimespec(t)
	for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil) == unix.EINTR {
	}
}

// errnoKey names a failure for counting: the errno's symbol and text when
// there is one ("ECONNREFUSED (connection refused)"), else the error.
func errnoKey(err error) string {
	var e unix.Errno
	if errors.As(err, &e) {
		if name := unix.ErrnoName(e); name != "" {
			return name + " (" + e.Error() + ")"
		}
	}
	return err.Error()
}
