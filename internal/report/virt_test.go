package report

import (
	"bytes"
	"io/fs"
	"strings"
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

// TestCompareEmulated: runs recorded under emulation are labelled, a
// difference in virtualization is warned about, and no verdict is given
// even where two groups of runs would get one.
func TestCompareEmulated(t *testing.T) {
	base := readTestResults(t, "results-probed.json")
	run := func(name, virt string, scale float64) Named {
		r := *base
		r.Meta.Virtualization = virt
		r.Latency.Mean *= scale
		r.Latency.P50 *= scale
		r.Latency.P99 *= scale
		return Named{Name: name, R: &r}
	}
	for _, tc := range []struct {
		name    string
		a, b    []Named
		want    []string
		notWant []string
	}{
		{"both emulated, groups", []Named{run("a1", VirtEmulated, 1), run("a2", VirtEmulated, 1.01)}, []Named{run("b1", VirtEmulated, 1.3), run("b2", VirtEmulated, 1.31)},
			[]string{"emulated: a1, a2, b1, b2 ran under software emulation (qemu-tcg)", "no verdict: timings under software emulation are not judged"},
			[]string{"virtualization differs", "p50:        "}},
		{"one emulated", []Named{run("kvm.json", "kvm", 1)}, []Named{run("tcg.json", VirtEmulated, 30)},
			[]string{"warning: virtualization differs: A kvm, B qemu-tcg", "emulated: tcg.json ran under", "no verdict: timings under software emulation"},
			nil},
		{"none emulated", []Named{run("a1", "kvm", 1), run("a2", "kvm", 1.01)}, []Named{run("b1", "kvm", 1.3), run("b2", "kvm", 1.31)},
			[]string{"p50:        "},
			[]string{"emulated:", "virtualization differs", "no verdict"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteComparison(&buf, [][]Named{tc.a, tc.b}, 0.99); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, s := range tc.want {
				if !strings.Contains(out, s) {
					t.Errorf("report lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.notWant {
				if strings.Contains(out, s) {
					t.Errorf("report has %q:\n%s", s, out)
				}
			}
		})
	}
}
