package main

import (
	"fmt"
	"strings"
	"time"
)

// kernelSpec is one kernel of the matrix: where its package comes from and
// the hook modes run on it.
type kernelSpec struct {
	// Label names the kernel in the matrix and its results file
	// (Label.json), e.g. "6.1".
	Label string
	// Pattern selects the package: the newest name apt knows that
	// matches it is booted.
	Pattern string
	// Backports: the package is in bookworm-backports, read through the
	// cache directory's own apt configuration (the machine's sources are
	// left as they are).
	Backports bool
	// Pkg is a package name given on the command line (--kernel-pkg):
	// booted as named, Pattern unused.
	Pkg string
	// Modes are the VOLLEYSCOPE_PROBE_MODE values run on this kernel.
	Modes []string
}

// defaultMatrix is what 'make vmtest' and CI run. Debian 12's own 6.1
// lacks the sock:* and tcp:tcp_sendmsg_locked tracepoints (6.3, 6.6,
// 6.11), so its socket events take the fentry or kprobe paths and its
// tracepoint mode must skip, naming them; 6.12 (bookworm-backports) has
// them all, so its tracepoint mode is the tp_btf path end to end.
var defaultMatrix = []kernelSpec{
	{Label: "6.1", Pattern: `^linux-image-6\.1\.0-.*-cloud-amd64-unsigned$`, Modes: []string{"fentry", "kprobe", "tracepoint"}},
	{Label: "6.12", Pattern: `^linux-image-6\.12\..*-cloud-amd64-unsigned$`, Backports: true, Modes: []string{"tracepoint", "fentry", "kprobe"}},
}

// defaultNet is the kernel of the networked boot (--net): one boot is
// enough to prove a guest reachable through its tap, and 6.12 is the
// newer of the two.
const defaultNet = "6.12"

// defaultLevels are the probe's two levels: the hooks the breakdown needs,
// and those plus the syscall hooks (--syscalls). The probe's kernel test
// names its subtests after them (TestKernelHooksAndEvents/default/…,
// …/syscalls/…).
var defaultLevels = []string{"default", "syscalls"}

// modeNeeds are the kernel options without which a mode cannot work: the
// mode is then a SKIP naming the option, decided on the host from the
// package's config before booting.
var modeNeeds = map[string][]string{
	"tracepoint": {"CONFIG_DEBUG_INFO_BTF", "CONFIG_BPF_EVENTS"},
	"fentry":     {"CONFIG_DEBUG_INFO_BTF", "CONFIG_FUNCTION_TRACER", "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS"},
	"kprobe":     {"CONFIG_KPROBES", "CONFIG_KPROBE_EVENTS"},
}

// cannotRun says why a mode cannot work on a kernel with this config
// (option → value), or "" when it can or the config is unknown.
func cannotRun(mode string, config map[string]string) string {
	if config == nil {
		return ""
	}
	var missing []string
	for _, opt := range modeNeeds[mode] {
		if v := config[opt]; v != "y" {
			if v == "" {
				v = "unset"
			}
			missing = append(missing, opt+"="+v)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return "kernel config " + strings.Join(missing, ", ") + ": " + mode + " mode cannot attach"
}

// verdict is one line of the matrix.
type verdict struct {
	Kernel string // release, e.g. 6.1.0-57-cloud-amd64
	What   string // "mode=fentry level=default", or "run=volleyscope"
	Result string // PASS, FAIL or SKIP
	Detail string // counts and time, or the reason of a SKIP or FAIL
}

func (v verdict) String() string {
	s := fmt.Sprintf("%-26s %-34s %s", v.Kernel, v.What, v.Result)
	if v.Detail != "" {
		s += " " + v.Detail
	}
	return s
}

// emulatedNote says, under the matrix of a TCG run, what its tests assert.
const emulatedNote = "under TCG the tests assert that every hook of the level attaches in the mode's family and that each round trip's events arrive once, on the right socket, in order; scheduling rates (switches, wakings per round trip) are the emulator's and only logged"

// printMatrix writes the matrix, in the order run, a note when it ran
// under emulation, and a last line with the counts and the wall time.
func printMatrix(vs []verdict, emulated bool, wall time.Duration) {
	fmt.Printf("vmtest: matrix (%d lines):\n", len(vs))
	count := map[string]int{}
	for _, v := range vs {
		fmt.Printf("  %s\n", v)
		count[v.Result]++
	}
	var parts []string
	for _, r := range []string{"PASS", "FAIL", "SKIP"} {
		parts = append(parts, fmt.Sprintf("%d %s", count[r], r))
	}
	if emulated {
		fmt.Printf("vmtest: %s\n", emulatedNote)
	}
	fmt.Printf("vmtest: %s in %s\n", strings.Join(parts, ", "), wall.Round(time.Second))
}
