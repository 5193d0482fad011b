package hostinfo

import (
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Host is what a run's results say of the machine it ran on.
type Host struct {
	Kernel   string // uname's release
	CPUModel string // the first "model name" of /proc/cpuinfo
	NCPU     int
	// Vulnerabilities are each CPU vulnerability and its mitigation as
	// the kernel reports them (/sys/devices/system/cpu/vulnerabilities);
	// nil where the kernel has no such directory.
	Vulnerabilities map[string]string
	Governor        string // CPU 0's cpufreq governor; "" where none is exposed
	Virtualization  string // what the machine runs on (Virtualization)
	// ClockSource is the kernel's clock source (tsc, kvm-clock, hpet…):
	// what CLOCK_MONOTONIC, and so every timestamp, is read from.
	ClockSource string
}

// Local reads the facts of this machine. A fact it cannot read is left
// empty: the run goes on without it.
func Local() Host {
	h := Host{NCPU: runtime.NumCPU()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	const vulns = "/sys/devices/system/cpu/vulnerabilities"
	if es, err := os.ReadDir(vulns); err == nil {
		h.Vulnerabilities = map[string]string{}
		for _, e := range es {
			if b, err := os.ReadFile(vulns + "/" + e.Name()); err == nil {
				h.Vulnerabilities[e.Name()] = strings.TrimSpace(string(b))
			}
		}
	}
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"); err == nil {
		h.Governor = strings.TrimSpace(string(b))
	}
	h.Virtualization = Virtualization()
	if b, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource"); err == nil {
		h.ClockSource = strings.TrimSpace(string(b))
	}
	return h
}
