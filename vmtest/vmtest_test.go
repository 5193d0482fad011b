package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/hostinfo"
	"github.com/volleyscope/volleyscope/internal/report"
)

// TestConsoleParsing: verdict lines (also behind a kernel message on the
// same line) and a results.json sent in base64 lines are read back; a
// garbled results line fails the checksum instead of passing as data.
func TestConsoleParsing(t *testing.T) {
	payload := []byte(`{"meta":{"virtualization":"qemu-tcg"},"latency_ns":{},"run":{}}` + strings.Repeat(" ", 300))
	var z bytes.Buffer
	gz := gzip.NewWriter(&z)
	gz.Write(payload)
	gz.Close()
	enc := base64.StdEncoding.EncodeToString(z.Bytes())
	sum := fmt.Sprintf("%x", sha256.Sum256(payload))
	results := func(garble bool) []string {
		lines := []string{"VMTEST-RESULTS-BEGIN bytes=1"}
		for s := enc; len(s) > 0; {
			n := min(20, len(s))
			chunk := s[:n]
			if garble && len(lines) == 2 {
				chunk = "A" + chunk[1:]
				if chunk == s[:n] {
					chunk = "B" + chunk[1:]
				}
			}
			lines = append(lines, "VMTEST-RESULTS "+chunk)
			s = s[n:]
		}
		return append(lines, "VMTEST-RESULTS-END sha256="+sum)
	}
	for _, tc := range []struct {
		name     string
		lines    []string
		verdicts []string
		results  bool
	}{
		{"verdicts", []string{
			"VMTEST kernel=6.1.0-57-cloud-amd64 mode=fentry level=default PASS (2 passed, 0 failed, 0 skipped, 9.9s)",
			"[   12.3] random: crng init doneVMTEST kernel=6.1.0-57-cloud-amd64 mode=tracepoint level=syscalls SKIP kernel lacks tracepoints",
			"VMTEST kernel=6.1.0-57-cloud-amd64 run=volleyscope FAIL (3.1s): exit status 3",
			"VMTEST   mode=fentry level=default --- SKIP: TestX: why",
		}, []string{
			"mode=fentry level=default PASS (2 passed, 0 failed, 0 skipped, 9.9s)",
			"mode=tracepoint level=syscalls SKIP kernel lacks tracepoints",
			"run=volleyscope FAIL (3.1s): exit status 3",
		}, false},
		{"results", results(false), nil, true},
		{"garbled results", results(true), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &bootResult{}
			for _, l := range tc.lines {
				parseLine(l, res, true)
			}
			var got []string
			for _, v := range res.Verdicts {
				got = append(got, strings.TrimSpace(v.What+" "+v.Result+" "+v.Detail))
			}
			if strings.Join(got, "\n") != strings.Join(tc.verdicts, "\n") {
				t.Errorf("verdicts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.verdicts, "\n"))
			}
			if tc.results && !bytes.Equal(res.Results, payload) {
				t.Errorf("results %q (%v), want the payload", res.Results, res.ResultsErr)
			}
			if !tc.results && strings.HasPrefix(tc.name, "garbled") && (res.Results != nil || res.ResultsErr == nil) {
				t.Errorf("garbled results accepted: %q, err %v", res.Results, res.ResultsErr)
			}
		})
	}
}

// TestPlan: a mode the kernel's config rules out is a SKIP naming the
// option, decided before booting; every other mode runs once per level,
// its subtests selected; the lines keep the matrix order.
func TestPlan(t *testing.T) {
	noKprobes := map[string]string{"CONFIG_DEBUG_INFO_BTF": "y", "CONFIG_BPF_EVENTS": "y", "CONFIG_FUNCTION_TRACER": "y",
		"CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS": "y", "CONFIG_KPROBE_EVENTS": "y"}
	tg := &target{spec: kernelSpec{Modes: []string{"fentry", "kprobe"}}, k: kernel{Name: "k", Config: noKprobes}}
	tg.plan(&options{Run: "^TestKernelHooksAndEvents$", Levels: defaultLevels})
	var runs []string
	for _, r := range tg.runs {
		runs = append(runs, r.Mode+" "+r.Run)
	}
	if want := "fentry ^TestKernelHooksAndEvents$/^default/,fentry ^TestKernelHooksAndEvents$/^syscalls/"; strings.Join(runs, ",") != want {
		t.Errorf("runs %q, want %q", strings.Join(runs, ","), want)
	}
	if len(tg.skips) != 2 || !strings.Contains(tg.skips[0].Detail, "CONFIG_KPROBES=unset") {
		t.Errorf("skips %+v, want kprobe at both levels for CONFIG_KPROBES", tg.skips)
	}
	res := &bootResult{Verdicts: []verdict{{What: "mode=fentry level=default", Result: "PASS"}}}
	var lines []string
	for _, v := range tg.verdicts(res, true) {
		lines = append(lines, v.What+" "+v.Result)
	}
	want := "run=volleyscope FAIL,mode=fentry level=default PASS,mode=fentry level=syscalls FAIL,mode=kprobe level=default SKIP,mode=kprobe level=syscalls SKIP"
	if strings.Join(lines, ",") != want {
		t.Errorf("lines %q, want %q", strings.Join(lines, ","), want)
	}
	printMatrix(tg.verdicts(res, false), true, time.Second)
}

// TestCheckRun: a guest's run must have measured and joined every round
// trip, and under TCG say it was emulated.
func TestCheckRun(t *testing.T) {
	good := func() *report.Results {
		return &report.Results{
			Meta:           report.Meta{Virtualization: hostinfo.VirtEmulated, Hooks: map[string]string{"send_start": "fentry/tcp_sendmsg"}},
			Latency:        report.Latency{Count: 100},
			BreakdownCheck: &report.BreakdownCheck{Joined: 100},
		}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*report.Results)
		accel string
		want  string // "" = no error
	}{
		{"good", func(*report.Results) {}, "tcg", ""},
		{"nothing measured", func(r *report.Results) { r.Latency.Count = 0 }, "tcg", "no round trips"},
		{"no probe", func(r *report.Results) { r.BreakdownCheck = nil }, "tcg", "joined no round trip"},
		{"a few unjoined", func(r *report.Results) { r.BreakdownCheck.Unjoined = 1 }, "tcg", ""},
		{"many unjoined", func(r *report.Results) {
			r.BreakdownCheck.Unjoined = 3
			r.BreakdownCheck.UnjoinedReasons = map[string]int{"b": 1, "a": 2}
		}, "tcg", "3 of 103 round trips not joined with the probe's events, over 1%: 2 a, 1 b"},
		{"emulation not named", func(r *report.Results) { r.Meta.Virtualization = "" }, "tcg", `meta.virtualization "" under TCG`},
		{"kvm", func(r *report.Results) { r.Meta.Virtualization = "kvm" }, "kvm", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.edit(r)
			err := checkRun(r, tc.accel)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("checkRun = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("checkRun = %v, want %q", err, tc.want)
			}
		})
	}
	if s := runSummary(good()); !strings.Contains(s, "100 round trips, 100 joined") || !strings.Contains(s, "send_start=fentry/tcp_sendmsg") {
		t.Errorf("runSummary = %q", s)
	}
}

// TestSpecs: a package named on the command line comes from where its
// series does; --modes replaces each kernel's own.
func TestSpecs(t *testing.T) {
	o := &options{KernelPkgs: []string{"linux-image-6.12.95+deb12-cloud-amd64-unsigned", "linux-image-6.1.0-57-cloud-amd64-unsigned"}, Modes: []string{"fentry"}}
	got := specs(o)
	if len(got) != 2 || !got[0].Backports || got[1].Backports {
		t.Fatalf("specs = %+v, want the 6.12 package from backports, the 6.1 one not", got)
	}
	for _, s := range got {
		if strings.Join(s.Modes, ",") != "fentry" {
			t.Errorf("%s: modes %v, want [fentry]", s.Pkg, s.Modes)
		}
	}
	if m := specs(&options{Kernels: []string{"6.12"}}); len(m) != 1 || m[0].Label != "6.12" || len(m[0].Modes) != 3 {
		t.Errorf("--kernels 6.12: %+v", m)
	}
}

// TestReadyLine: the guest's VMTEST-READY line hands its address to the
// host, also behind a kernel message, and a second one does not block.
func TestReadyLine(t *testing.T) {
	ready := make(chan string, 1)
	res := &bootResult{ready: ready}
	parseLine("[    4.2] virtio_net virtio0 eth0: renamedVMTEST-READY 10.213.0.2:9000", res, true)
	parseLine("VMTEST-READY 10.213.0.2:9000", res, true)
	select {
	case a := <-ready:
		if a != "10.213.0.2:9000" {
			t.Errorf("ready %q, want 10.213.0.2:9000", a)
		}
	default:
		t.Fatal("no address from the VMTEST-READY line")
	}
	if len(res.Verdicts) != 0 {
		t.Errorf("a READY line made verdicts %+v", res.Verdicts)
	}
}

// TestNetFlags: --net boots a matrix kernel; it is on by default only for
// the default matrix, and refuses --kernel, which has no modules.
func TestNetFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		net  string
		err  string
	}{
		{nil, defaultNet, ""},
		{[]string{"--net="}, "", ""},
		{[]string{"--kernels="}, defaultNet, ""},
		{[]string{"--kernel-pkg", "linux-image-x"}, "", ""},
		{[]string{"--kernel-pkg", "linux-image-x", "--net", "6.1"}, "6.1", ""},
		{[]string{"--volleyscope=false"}, "", ""},
		{[]string{"--kernel", "/boot/vmlinuz"}, "", ""},
		{[]string{"--kernel", "/boot/vmlinuz", "--net", "6.12"}, "", "--kernel has not"},
		{[]string{"--net", "5.10"}, "", `--net: "5.10" is not in the matrix`},
	} {
		o, err := parseFlags(tc.args)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: err %v, want %q", tc.args, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case err == nil && o.Net != tc.net:
			t.Errorf("%q: --net %q, want %q", tc.args, o.Net, tc.net)
		}
	}
}

// TestModuleName: file names of modules, compressed or not, map to the
// names .modinfo's depends= uses (- and _ alike).
func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"virtio_net.ko":      "virtio_net",
		"net_failover.ko.xz": "net_failover",
		"virtio-rng.ko.xz":   "virtio_rng",
		"modules.builtin":    "",
		"virtio_net.ko.zst":  "",
	} {
		got, ok := moduleName(in)
		if got != want || ok != (want != "") {
			t.Errorf("moduleName(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestCheckAgentRun: the guest's run must be joined, its clock offset
// where the guest's boot puts it, and no one-way time negative beyond
// the estimate's interval.
func TestCheckAgentRun(t *testing.T) {
	facts := netFacts{StartMonoNs: 100e9, ReadyMonoNs: 110e9}
	good := func() map[string]any {
		return map[string]any{
			"latency_ns":      map[string]any{"count": 1000},
			"breakdown_check": map[string]any{"joined": 1000, "unjoined": 0},
			"errors":          []string{},
			"run":             map[string]any{"validity": map[string]any{"one_way_times_held": true}},
			"two_hosts": map[string]any{
				"clock":            map[string]any{"offset_first_ns": -105e9, "half_width_median_ns": 20000, "samples_ab": 500, "samples_ba": 500},
				"client_to_server": map[string]any{"checked": 1000},
				"server_to_client": map[string]any{"checked": 1000},
			},
		}
	}
	th := func(m map[string]any) map[string]any { return m["two_hosts"].(map[string]any) }
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want string // "" = pass
	}{
		{"good", func(map[string]any) {}, ""},
		{"a few unjoined", func(m map[string]any) { m["breakdown_check"] = map[string]any{"joined": 1000, "unjoined": 5} }, ""},
		{"many unjoined", func(m map[string]any) { m["breakdown_check"] = map[string]any{"joined": 1000, "unjoined": 50} }, "not joined across the two hosts"},
		{"one host", func(m map[string]any) { delete(m, "two_hosts") }, "no two_hosts"},
		{"offset near zero", func(m map[string]any) { th(m)["clock"].(map[string]any)["offset_first_ns"] = 0 }, "not where the guest's boot puts it"},
		{"offset of the wrong sign", func(m map[string]any) { th(m)["clock"].(map[string]any)["offset_first_ns"] = 105e9 }, "not where the guest's boot puts it"},
		{"one direction only", func(m map[string]any) { th(m)["clock"].(map[string]any)["samples_ba"] = 0 }, "no clock estimate"},
		{"negative one-way", func(m map[string]any) {
			th(m)["server_to_client"] = map[string]any{"checked": 1000, "negative_beyond_uncertainty": 3}
		}, "negative beyond"},
		{"validity not said", func(m map[string]any) { m["run"] = map[string]any{} }, "one_way_times_held"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := good()
			tc.edit(m)
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			detail, err := checkAgentRun(b, facts)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("checkAgentRun = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("checkAgentRun = %v, want %q", err, tc.want)
			case err == nil && !strings.Contains(detail, "clock offset -105.000 s"):
				t.Errorf("detail %q does not give the offset", detail)
			}
		})
	}
}
