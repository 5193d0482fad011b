// Package proccost measures what a process tree costs the machine over a
// stretch of time, from /proc: the CPU time of every thread (schedstat's
// nanoseconds, split into user and system by stat's ticks) and the
// context switches (status), summed over the process and its descendants
// (a forking server's children). Cost per request is the difference of
// two samples divided by the requests served between them.
package proccost

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sample is a process tree's counters at one moment.
type Sample struct {
	CPUNs       uint64 // time on a CPU, all threads (schedstat)
	UserTicks   uint64 // user time in clock ticks (stat)
	SysTicks    uint64 // system time in clock ticks (stat)
	Voluntary   uint64 // context switches while waiting (blocking)
	Involuntary uint64 // context switches by preemption
	Threads     int
	Procs       int
}

// Cost is the difference of two samples per request.
type Cost struct {
	CPUNs       float64 `json:"cpu_ns"`      // CPU time per request, ns
	UserShare   float64 `json:"user_share"`  // of the CPU time, in user space (from clock ticks: coarse)
	Switches    float64 `json:"switches"`    // context switches per request
	Voluntary   float64 `json:"voluntary"`   // of which the process blocked
	Involuntary float64 `json:"involuntary"` // of which it was preempted
	// Syscalls is the server's system calls per request, from the probe's
	// syscall hooks (--syscalls) over the measured window; 0 without them.
	Syscalls float64 `json:"syscalls,omitempty"`
	Threads  int     `json:"threads"`   // threads of the tree at the end
	Procs    int     `json:"processes"` // processes of the tree at the end
	Requests float64 `json:"requests"`  // requests the difference was divided by
}

// Take samples pid and every process descending from it. Threads that
// end between two samples take their counters with them: a server that
// forks per connection is counted only over the children alive at both.
func Take(pid int) (Sample, error) { return TakeAll([]int{pid}) }

// TakeAll samples every process of roots and their descendants, each
// once: the processes of a server that forked its workers before it was
// found (serverproc.FindAll lists them).
func TakeAll(roots []int) (Sample, error) {
	var pids []int
	seen := map[int]bool{}
	for _, r := range roots {
		for _, p := range tree(r) {
			if !seen[p] {
				seen[p] = true
				pids = append(pids, p)
			}
		}
	}
	if len(pids) == 0 {
		return Sample{}, fmt.Errorf("sample processes %v: they are gone", roots)
	}
	var s Sample
	for _, p := range pids {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", p))
		if len(tasks) > 0 {
			s.Procs++
		}
		for _, t := range tasks {
			s.add(t)
		}
	}
	if s.Threads == 0 {
		return s, fmt.Errorf("sample processes %v: no threads readable", roots)
	}
	return s, nil
}

func (s *Sample) add(task string) {
	b, err := os.ReadFile(task + "/schedstat")
	if err != nil {
		return
	}
	s.Threads++
	if f := strings.Fields(string(b)); len(f) > 0 {
		s.CPUNs += parse(f[0])
	}
	if b, err := os.ReadFile(task + "/stat"); err == nil {
		// Fields after the command, which may hold spaces, in parentheses.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 { // utime and stime are fields 14 and 15
				s.UserTicks += parse(f[11])
				s.SysTicks += parse(f[12])
			}
		}
	}
	if f, err := os.Open(task + "/status"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			switch {
			case !ok:
			case k == "voluntary_ctxt_switches":
				s.Voluntary += parse(strings.TrimSpace(v))
			case k == "nonvoluntary_ctxt_switches":
				s.Involuntary += parse(strings.TrimSpace(v))
			}
		}
		f.Close()
	}
}

func parse(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// MinSpan is the shortest stretch between two samples whose difference
// is given as a cost. schedstat counts nanoseconds, but the kernel brings
// a running thread's count up to date only when it is switched out or at
// the scheduler tick (1–10 ms by CONFIG_HZ), so each sample may miss up
// to a tick of a thread that never blocks; over 50 ticks of the slowest
// HZ that error is at most 2% per such thread (a server thread that
// blocks for every request is brought up to date each time).
const MinSpan = 500 * time.Millisecond

// Check says why a cost over span (between two samples), for a measured
// window of window, is not valid, or "" when it is: the samples must be
// MinSpan apart at least, and cover half of the window or more, so that
// the figure is the window's and not a moment's.
func Check(span, window time.Duration) string {
	switch {
	case span <= 0:
		return "no two samples of the server were taken inside the measured window"
	case span < MinSpan:
		return fmt.Sprintf("its samples were %v apart, under the %v that its counters need (a longer --duration gives it)", span.Round(time.Millisecond), MinSpan)
	case span < window/2:
		return fmt.Sprintf("its samples cover %v of the %v measured window (the first came late)", span.Round(time.Millisecond), window.Round(time.Millisecond))
	}
	return ""
}

// Per is the cost of each of requests between a and b (b taken later).
// Counters that went down (threads ended in between) count as 0.
func Per(a, b Sample, requests float64) Cost {
	c := Cost{Threads: b.Threads, Procs: b.Procs, Requests: requests}
	if requests <= 0 {
		return c
	}
	d := func(x, y uint64) float64 {
		if y < x {
			return 0
		}
		return float64(y - x)
	}
	c.CPUNs = d(a.CPUNs, b.CPUNs) / requests
	c.Voluntary = d(a.Voluntary, b.Voluntary) / requests
	c.Involuntary = d(a.Involuntary, b.Involuntary) / requests
	c.Switches = c.Voluntary + c.Involuntary
	if t := d(a.UserTicks, b.UserTicks) + d(a.SysTicks, b.SysTicks); t > 0 {
		c.UserShare = d(a.UserTicks, b.UserTicks) / t
	}
	return c
}

// tree lists pid and its descendants, from the parent field of every
// /proc/PID/stat.
func tree(pid int) []int {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return nil
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	children := map[int][]int{}
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		p, _ := strconv.Atoi(filepath.Base(filepath.Dir(st)))
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// Add is the cost of two disjoint sets of processes together.
func (s Sample) Add(o Sample) Sample {
	return Sample{
		CPUNs: s.CPUNs + o.CPUNs, UserTicks: s.UserTicks + o.UserTicks, SysTicks: s.SysTicks + o.SysTicks,
		Voluntary: s.Voluntary + o.Voluntary, Involuntary: s.Involuntary + o.Involuntary,
		Threads: s.Threads + o.Threads, Procs: s.Procs + o.Procs,
	}
}
