// Package cpulock keeps two volleyscope runs off the same CPUs. Each run
// holds, for as long as it measures, an exclusive flock(2) on one file per
// CPU it pins (client and server), in Dir. A second run that asks for a
// CPU in use is refused, naming the run that holds it, or waits for it.
//
// flock belongs to the open file, so the kernel drops a lock when its
// holder exits, however it exits (SIGKILL included): nothing is left to
// clean up, and a lock file left on disk holds nothing. Locks are taken in
// CPU order, so runs that wait can never wait for each other in a circle.
package cpulock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Dir holds the lock files, cpu-N.lock: one directory for the machine,
// in memory (/run is a tmpfs), writable by every user (mode 1777, as
// /tmp) so that runs of root and of other users see each other.
const Dir = "/run/volleyscope"

// dir is Dir, or a test's own directory.
var dir = Dir

// ErrBusy is a CPU held by another run.
var ErrBusy = errors.New("CPU in use by another volleyscope run")

// BusyError is ErrBusy for one CPU, with the run that holds it.
type BusyError struct {
	CPU    int
	Holder string // "pid N (COMMAND)", from the lock file (Holder)
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("%v: CPU %d is measured by %s; wait for it to end, pass --wait to queue behind it, or pin this run to other CPUs (--client-cpus, --server-cpus)", ErrBusy, e.CPU, e.Holder)
}

// Is makes errors.Is(err, ErrBusy) hold.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// Lock is the CPUs one run holds.
type Lock struct {
	files []*os.File
}

// Acquire locks cpus (duplicates and order do not matter) for the caller,
// whose command line who is recorded for a run that finds them taken. A
// CPU held by another run is ErrBusy, wrapped with that run's pid and
// command, unless wait is set: then Acquire waits until the CPU is free
// or ctx ends. An empty cpus locks nothing.
func Acquire(ctx context.Context, cpus []int, wait bool, who string) (*Lock, error) {
	cpus = slices.Compact(slices.Sorted(slices.Values(cpus)))
	l := &Lock{}
	if len(cpus) == 0 {
		return l, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock CPUs: %w; run as root once to create %s, or give it mode 1777", err, dir)
	}
	_ = os.Chmod(dir, os.ModePerm|os.ModeSticky) // best effort: only its owner may
	for _, cpu := range cpus {
		f, err := lockOne(ctx, cpu, wait)
		if err != nil {
			l.Release()
			return nil, err
		}
		// Say who holds it, for a run that finds it taken.
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(fmt.Sprintf("%d %s\n", os.Getpid(), who)), 0)
		}
		l.files = append(l.files, f)
	}
	return l, nil
}

func lockOne(ctx context.Context, cpu int, wait bool) (*os.File, error) {
	path := filepath.Join(dir, fmt.Sprintf("cpu-%d.lock", cpu))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o666)
	if err != nil {
		return nil, fmt.Errorf("lock CPU %d: %w", cpu, err)
	}
	_ = f.Chmod(0o666) // others' runs must open it too; best effort
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock CPU %d: %w", cpu, err)
		}
		if !wait {
			holder := liveHolder(f)
			f.Close()
			return nil, &BusyError{CPU: cpu, Holder: holder}
		}
		return waitFor(ctx, f, cpu)
	}
}

// waitFor blocks in flock until the CPU is ours or ctx ends. A blocked
// flock is woken the moment the holder lets go, so a waiting run takes
// the CPU before a run started after it (polling would let newcomers
// that start between two polls win, again and again).
func waitFor(ctx context.Context, f *os.File, cpu int) (*os.File, error) {
	done := make(chan error, 1)
	go func() {
		for {
			err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
			if err != unix.EINTR {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock CPU %d: %w", cpu, err)
		}
		return f, nil
	case <-ctx.Done():
		// The flock may still be granted: let it go then.
		go func() {
			<-done
			f.Close()
		}()
		return nil, fmt.Errorf("wait for CPU %d: %w", cpu, ctx.Err())
	}
}

// Holder describes the run recorded in a lock file: "pid N (COMMAND)", or
// "another run" when the file says nothing usable (it is being written).
func Holder(f *os.File) string {
	b := make([]byte, 512)
	n, _ := f.ReadAt(b, 0)
	line, _, _ := strings.Cut(string(b[:n]), "\n")
	pid, cmd, _ := strings.Cut(line, " ")
	if _, err := strconv.Atoi(pid); err != nil {
		return "another run"
	}
	if cmd == "" {
		return "pid " + pid
	}
	return fmt.Sprintf("pid %s (%s)", pid, cmd)
}

// liveHolder is Holder, once the file names a live process: a run that
// has just taken the lock writes its name a moment later, and until then
// the file still names the run before it.
func liveHolder(f *os.File) string {
	for i := 0; i < 10; i++ {
		if pid := holderPID(f); pid > 0 && (unix.Kill(pid, 0) == nil || unix.Kill(pid, 0) == unix.EPERM) {
			return Holder(f)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "another run (starting)"
}

// holderPID is the pid a lock file names, or 0.
func holderPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, _, _ := strings.Cut(string(b[:n]), " ")
	p, _ := strconv.Atoi(pid)
	return p
}

// Release lets the CPUs go. It may be called more than once, and on nil.
func (l *Lock) Release() {
	if l == nil {
		return
	}
	for _, f := range l.files {
		f.Close() // closing the last descriptor drops the flock
	}
	l.files = nil
}
