package session

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// otherLoad measures how much of the machine's CPU went to processes
// other than this test process and its children over a stretch, and
// which of them took most: a test whose bound assumes the CPUs are its
// own may widen it where other work really held them, naming that work.
type otherLoad struct {
	at    time.Time
	busy  int64           // the machine's busy ticks (/proc/stat)
	procs map[int]procCPU // every process's CPU ticks, by pid
	// Set by stop: the share of the machine's CPU others used, and the
	// busiest of them.
	others float64
	names  []string
}

// otherLoadWiden is the share of the machine's CPU that others must have
// used for a test to widen a bound: half a CPU on this 2-vCPU VM.
const otherLoadWiden = 0.25

// procCPU is one process's CPU ticks and what it is.
type procCPU struct {
	ticks int64
	comm  string
	ours  bool // this test process or one of its children
}

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on Linux).
const clockTicks = 100

func startOtherLoad() *otherLoad {
	return &otherLoad{at: time.Now(), busy: machineBusy(), procs: procTicks()}
}

// stop ends the stretch: others is the part of the machine's CPU (all
// CPUs) that processes not ours used since the start, names the three
// that used most of it.
func (o *otherLoad) stop() {
	o.others, o.names = o.share()
}

// widen says, for a test's log, whether others held enough of the
// machine to widen a bound, and what they were.
func (o *otherLoad) widen() (bool, string) {
	if o == nil {
		return false, "not measured"
	}
	return o.others >= otherLoadWiden, fmt.Sprintf("other processes used %.0f%% of the machine's CPUs meanwhile (%s)", 100*o.others, strings.Join(o.names, ", "))
}

func (o *otherLoad) share() (float64, []string) {
	busy, procs := machineBusy(), procTicks()
	wall := time.Since(o.at).Seconds() * clockTicks * float64(runtime.NumCPU())
	var ours int64
	type use struct {
		name  string
		ticks int64
	}
	var others []use
	for pid, p := range procs {
		d := p.ticks - o.procs[pid].ticks
		if p.ours {
			ours += d
		} else if d > 0 {
			others = append(others, use{fmt.Sprintf("%s (pid %d)", p.comm, pid), d})
		}
	}
	slices.SortFunc(others, func(a, b use) int { return int(b.ticks - a.ticks) })
	var names []string
	for _, u := range others[:min(3, len(others))] {
		names = append(names, fmt.Sprintf("%s %.0f%%", u.name, 100*float64(u.ticks)/wall))
	}
	if wall <= 0 {
		return 0, names
	}
	return max(0, float64(busy-o.busy-ours)) / wall, names
}

// machineBusy is the non-idle ticks of every CPU so far (/proc/stat).
func machineBusy() int64 {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && i != 3 && i != 4 && i < 8 { // not idle, iowait; not guest (in user)
			busy += n
		}
	}
	return busy
}

// processCPU reads every process's utime+stime (ticks).
func procTicks() map[int]procCPU {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	out := make(map[int]procCPU, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		var t int64
		fields := f[11:13]
		if pid == self {
			fields = f[11:15]
		}
		for _, v := range fields {
			n, _ := strconv.ParseInt(v, 10, 64)
			t += n
		}
		out[pid] = procCPU{ticks: t, comm: s[open+1 : end], ours: pid == self || ppid == self}
	}
	return out
}
