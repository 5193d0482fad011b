package hostinfo

import (
	"os"
	"strings"
)

// Values of Virtualization (results.json's meta.virtualization).
const (
	// VirtEmulated is qemu's software emulation (TCG): every guest
	// instruction is translated, so a round trip's time is the emulator's,
	// tens of times the hardware's and shaped differently (the cost of a
	// system call or a wake-up is not the hardware's).
	VirtEmulated = "qemu-tcg"
	// VirtUnnamed is a hypervisor that none of the files read names.
	VirtUnnamed = "vm"
)

// Virtualization names what this machine runs on, from what the kernel
// shows: VirtEmulated under qemu's software emulation, a hypervisor's
// name ("kvm", "hyperv", "xen", "vmware") under hardware virtualization,
// VirtUnnamed for another hypervisor, and "" where none shows (bare
// metal, or a CPU that hides the hypervisor bit).
func Virtualization() string { return detectVirt(os.ReadFile) }

// Files detectVirt reads.
const (
	cpuinfoPath     = "/proc/cpuinfo"
	clocksourcePath = "/sys/devices/system/clocksource/clocksource0/available_clocksource"
	sysVendorPath   = "/sys/class/dmi/id/sys_vendor"
	hypervisorPath  = "/sys/hypervisor/type" // Xen only
)

// detectVirt decides from the files read. The signals, in order:
//   - qemu names its "max" CPU model "QEMU TCG CPU …" under TCG (under
//     KVM the same model takes the host CPU's name);
//   - the CPUID hypervisor bit, shown as the "hypervisor" flag in
//     /proc/cpuinfo: without it, no virtualization is claimed;
//   - a paravirtual clock the hypervisor offers (kvm-clock, Hyper-V's
//     TSC page, Xen's) names it;
//   - the DMI system vendor names VMware, and QEMU: a qemu machine
//     without kvm-clock is qemu's emulation (a KVM guest started with
//     kvmclock turned off would be misnamed so).
func detectVirt(read func(string) ([]byte, error)) string {
	text := func(p string) string {
		b, err := read(p)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	var model string
	hyper := false
	for _, line := range strings.Split(text(cpuinfoPath), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		case "flags":
			hyper = hyper || containsWord(v, "hypervisor")
		}
	}
	if strings.HasPrefix(model, "QEMU TCG CPU") {
		return VirtEmulated
	}
	clocks := text(clocksourcePath)
	vendor := text(sysVendorPath)
	switch {
	case text(hypervisorPath) == "xen" || containsWord(clocks, "xen"):
		return "xen"
	case !hyper:
		return ""
	case containsWord(clocks, "kvm-clock"):
		return "kvm"
	case strings.Contains(clocks, "hyperv_clocksource"):
		return "hyperv"
	case strings.HasPrefix(vendor, "VMware"):
		return "vmware"
	case vendor == "QEMU" || strings.HasPrefix(model, "QEMU"):
		return VirtEmulated
	}
	return VirtUnnamed
}

// containsWord reports whether the space-separated list s holds w.
func containsWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}
