package hostinfo

import (
	"io/fs"
	"testing"
)

// TestDetectVirt: each kind of machine, as its files show it, is named.
func TestDetectVirt(t *testing.T) {
	const (
		tcgCPU  = "processor\t: 0\nmodel name\t: QEMU TCG CPU version 2.5+\nflags\t\t: fpu vme hypervisor lahf_lm\n"
		epyc    = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu vme hypervisor lahf_lm\n"
		metal   = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu vme lahf_lm\n"
		qemu64  = "processor\t: 0\nmodel name\t: QEMU Virtual CPU version 2.5+\nflags\t\t: fpu hypervisor\n"
		hypname = "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu hypervisor_x\n"
	)
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"qemu tcg, max cpu", map[string]string{cpuinfoPath: tcgCPU, sysVendorPath: "QEMU\n", clocksourcePath: "tsc hpet acpi_pm \n"}, VirtEmulated},
		{"qemu tcg, qemu64 cpu", map[string]string{cpuinfoPath: qemu64, sysVendorPath: "QEMU\n", clocksourcePath: "tsc hpet acpi_pm"}, VirtEmulated},
		{"qemu kvm, qemu64 cpu", map[string]string{cpuinfoPath: qemu64, sysVendorPath: "QEMU\n", clocksourcePath: "kvm-clock tsc hpet acpi_pm"}, "kvm"},
		{"kvm without dmi", map[string]string{cpuinfoPath: epyc, clocksourcePath: "tsc kvm-clock \n"}, "kvm"},
		{"hyper-v", map[string]string{cpuinfoPath: epyc, clocksourcePath: "hyperv_clocksource_tsc_page acpi_pm", sysVendorPath: "Microsoft Corporation"}, "hyperv"},
		{"xen", map[string]string{cpuinfoPath: epyc, hypervisorPath: "xen\n", clocksourcePath: "xen tsc"}, "xen"},
		{"vmware", map[string]string{cpuinfoPath: epyc, sysVendorPath: "VMware, Inc.", clocksourcePath: "tsc hpet"}, "vmware"},
		{"unnamed hypervisor", map[string]string{cpuinfoPath: epyc, clocksourcePath: "tsc"}, VirtUnnamed},
		{"bare metal", map[string]string{cpuinfoPath: metal, clocksourcePath: "tsc hpet acpi_pm", sysVendorPath: "Dell Inc."}, ""},
		{"flag that only looks like it", map[string]string{cpuinfoPath: hypname, clocksourcePath: "tsc"}, ""},
		{"nothing readable", map[string]string{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := func(p string) ([]byte, error) {
				if s, ok := tc.files[p]; ok {
					return []byte(s), nil
				}
				return nil, fs.ErrNotExist
			}
			if got := detectVirt(read); got != tc.want {
				t.Errorf("detectVirt = %q, want %q", got, tc.want)
			}
		})
	}
}
