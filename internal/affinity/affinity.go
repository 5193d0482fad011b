// Package affinity sets the CPUs that this process's threads may run on.
//
// Linux keeps an affinity mask per thread, not per process
// (sched_setaffinity(2) on a thread ID), and a new thread starts with the
// mask of the thread that created it (clone(2)), as does a child process
// with the mask of the thread that forked it. Confining a whole Go process
// therefore means setting the mask of every thread listed in
// /proc/self/task; the threads the runtime creates afterwards inherit it.
package affinity

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cpuSet turns a CPU list into a mask.
func cpuSet(cpus []int) (unix.CPUSet, error) {
	var set unix.CPUSet
	for _, c := range cpus {
		if c < 0 || c >= 1024 {
			return set, fmt.Errorf("CPU %d: out of range 0-1023", c)
		}
		set.Set(c)
	}
	return set, nil
}

// PinThread restricts the calling OS thread to cpus, and returns what
// puts its mask back. The caller must hold the thread with
// runtime.LockOSThread and never unlock it, so that the thread ends with
// its goroutine instead of going back to Go's pool with a changed mask;
// and it should call unpin before its goroutine ends all the same: when
// the thread is the main one, Go parks it rather than ending it, and a
// thread left pinned is the mask that every later fork from it, and
// ConfineProcess's view of the process, would inherit.
func PinThread(cpus []int) (unpin func(), err error) {
	set, err := cpuSet(cpus)
	if err != nil {
		return nil, fmt.Errorf("pin thread to CPUs %v: %w", cpus, err)
	}
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("pin thread to CPUs %v: %w", cpus, err)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("pin thread to CPUs %v: %w", cpus, err)
	}
	return func() { _ = unix.SchedSetaffinity(0, &old) }, nil
}

// Threads lists the thread IDs of this process, from /proc/self/task.
func Threads() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("list own threads: %w", err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if t, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, t)
		}
	}
	return tids, nil
}

// maxPasses bounds ConfineProcess's re-reads of the thread list: the Go
// runtime starts threads in bursts of a few, so a second pass finds
// nothing new in practice.
const maxPasses = 20

// startMask is the main thread's mask when the package was initialized,
// before any thread was pinned: the mask a thread created during a
// confinement goes back to.
var startMask unix.CPUSet

func init() { _ = unix.SchedGetaffinity(0, &startMask) }

// ConfineProcess restricts every thread of this process to cpus, and with
// them every thread and child process created afterwards, except children
// forked from a thread pinned elsewhere on purpose (a server started by
// package serverproc). Threads pinned earlier to a subset of other CPUs
// are moved too. A thread created while the list is read would escape if
// its creator was already past, so the list is read again until a pass
// finds no thread it has not set. An empty cpus does nothing.
//
// undo puts each thread back on the mask it had before, and a thread
// created since on the process's mask at start-up; it is never nil. No
// thread's mask stands for the process's: a goroutine that pinned a
// thread and ended locked to it leaves the thread pinned, and when that
// thread is the main one Go keeps it (idle) rather than ending it, so its
// mask can be a server's CPU long after.
func ConfineProcess(cpus []int) (undo func() error, err error) {
	undo = func() error { return nil }
	if len(cpus) == 0 {
		return undo, nil
	}
	set, err := cpuSet(cpus)
	if err != nil {
		return undo, fmt.Errorf("confine process to CPUs %v: %w", cpus, err)
	}
	before := map[int]unix.CPUSet{}
	restore := func() error {
		return setAll(func(tid int, _ bool) unix.CPUSet {
			if m, ok := before[tid]; ok {
				return m
			}
			return startMask
		})
	}
	if err := setAll(func(tid int, first bool) unix.CPUSet {
		// A thread first listed in a later pass was created during this
		// confinement, maybe from a thread set already: its mask now is
		// not one to go back to.
		var m unix.CPUSet
		if first && unix.SchedGetaffinity(tid, &m) == nil {
			before[tid] = m
		}
		return set
	}); err != nil {
		// Threads set before the failure would stay confined, and every
		// child forked from them after (an agent, a server) with them.
		if rerr := restore(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restore: %w", rerr))
		}
		return undo, fmt.Errorf("confine process to CPUs %v: %w", cpus, err)
	}
	return func() error {
		if err := restore(); err != nil {
			return fmt.Errorf("restore process CPUs: %w", err)
		}
		return nil
	}, nil
}

// setAll gives every thread of this process the mask maskOf returns for
// it; first says whether the thread was in the first list read.
func setAll(maskOf func(tid int, first bool) unix.CPUSet) error {
	done := map[int]bool{}
	for pass := 0; pass < maxPasses; pass++ {
		tids, err := Threads()
		if err != nil {
			return err
		}
		fresh := 0
		for _, t := range tids {
			if done[t] {
				continue
			}
			fresh++
			done[t] = true
			m := maskOf(t, pass == 0)
			// ESRCH: the thread ended after the list was read.
			if err := unix.SchedSetaffinity(t, &m); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("set CPUs of thread %d: %w", t, err)
			}
		}
		if fresh == 0 {
			return nil
		}
	}
	return fmt.Errorf("threads kept appearing after %d passes over /proc/self/task", maxPasses)
}

// ThreadCPUs is where one thread may run.
type ThreadCPUs struct {
	TID  int
	CPUs []int // ascending
}

// Placement reads the allowed CPUs of every thread of process pid from
// /proc/PID/task/*/status (Cpus_allowed_list), in thread ID order. A
// thread that ends while it is read is left out.
func Placement(pid int) ([]ThreadCPUs, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list threads of process %d: %w", pid, err)
	}
	var out []ThreadCPUs
	for _, e := range ents { // ReadDir sorts by name; thread IDs are compared as numbers below
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(dir + "/" + e.Name() + "/status")
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read CPUs of thread %d: %w", tid, err)
		}
		_, rest, ok := strings.Cut(string(b), "\nCpus_allowed_list:")
		if !ok {
			return nil, fmt.Errorf("read CPUs of thread %d: no Cpus_allowed_list in its status", tid)
		}
		line, _, _ := strings.Cut(rest, "\n")
		cpus, err := ParseList(strings.TrimSpace(line))
		if err != nil {
			return nil, fmt.Errorf("read CPUs of thread %d: %w", tid, err)
		}
		out = append(out, ThreadCPUs{TID: tid, CPUs: cpus})
	}
	slices.SortFunc(out, func(a, b ThreadCPUs) int { return a.TID - b.TID })
	return out, nil
}

// ParseList reads the kernel's CPU list format ("0-3,7"), as in
// Cpus_allowed_list and /sys/devices/system/cpu/online, into ascending CPU
// numbers. The empty string is no CPU.
func ParseList(s string) ([]int, error) {
	var cpus []int
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("CPU list %q: %q is not a CPU number", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	slices.Sort(cpus)
	return slices.Compact(cpus), nil
}

// Within reports whether every CPU of cpus is in allowed.
func Within(cpus, allowed []int) bool {
	for _, c := range cpus {
		if !slices.Contains(allowed, c) {
			return false
		}
	}
	return true
}
