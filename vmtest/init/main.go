// Command init is PID 1 of the initramfs that 'make vmtest' boots under
// qemu. It prepares the few kernel file systems eBPF tests need, brings the
// loopback interface up, runs /probe.test once per hook mode with
// VOLLEYSCOPE_PROBE_MODE set, prints one "VMTEST kernel=… mode=… PASS|FAIL|SKIP"
// line per mode on the console, and powers the machine off.
//
// It is built with CGO_ENABLED=0 so that it is static: the initramfs holds
// no C library and no dynamic loader.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// config is read from /vmtest.json, written by the host side (package
// vmtest's guestConfig: the JSON names are the contract).
type config struct {
	Run         string   `json:"run"`          // -test.run pattern
	Modes       []string `json:"modes"`        // one test run per mode
	TestTimeout string   `json:"test_timeout"` // -test.timeout per mode
	Env         []string `json:"env"`          // extra KEY=VALUE for the tests
}

const (
	configPath = "/vmtest.json"
	testBinary = "/probe.test"
)

func main() {
	// PID 1 must never return: the kernel panics when init exits. Power off
	// whatever happens, after the console has been flushed.
	defer powerOff()
	if err := run(); err != nil {
		fmt.Printf("VMTEST-ERROR %v\n", err)
	}
	fmt.Println("VMTEST-DONE")
}

func run() error {
	setup()
	raw, err := os.ReadFile(configPath)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var cfg config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("parse %s: %w", configPath, err)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	for _, mode := range cfg.Modes {
		runMode(release, mode, &cfg)
	}
	return nil
}

// mounts are the file systems the probe and its tests look at: /proc (pids,
// kallsyms), /sys (kernel BTF at /sys/kernel/btf/vmlinux), tracefs for the
// tracepoint ids, debugfs for the older tracing path, bpffs for pinning and
// cgroup2 for completeness. devtmpfs gives /dev/null and friends; the
// console itself comes from the /dev/console node in the archive, opened
// by the kernel before init runs.
var mounts = []struct{ source, target, fstype string }{
	{"proc", "/proc", "proc"},
	{"sysfs", "/sys", "sysfs"},
	{"devtmpfs", "/dev", "devtmpfs"},
	{"tracefs", "/sys/kernel/tracing", "tracefs"},
	{"debugfs", "/sys/kernel/debug", "debugfs"},
	{"bpffs", "/sys/fs/bpf", "bpf"},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2"},
	{"tmpfs", "/tmp", "tmpfs"},
}

// setup prepares the machine. Failures are reported, not fatal: a test that
// needs the missing piece will say so itself.
func setup() {
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			fmt.Printf("vmtest-init: mkdir %s: %v\n", m.target, err)
		}
		if err := unix.Mount(m.source, m.target, m.fstype, 0, ""); err != nil {
			fmt.Printf("vmtest-init: mount %s on %s: %v\n", m.fstype, m.target, err)
		}
	}
	if err := linkUp("lo"); err != nil {
		fmt.Printf("vmtest-init: %v\n", err)
	}
	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (64 KiB by
	// default); later ones use memcg and ignore it. Raise it either way.
	inf := &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, inf); err != nil {
		fmt.Printf("vmtest-init: raise RLIMIT_MEMLOCK: %v\n", err)
	}
	os.Setenv("PATH", "/")
	os.Setenv("HOME", "/")
	os.Setenv("TMPDIR", "/tmp")
}

// linkUp sets IFF_UP on an interface with SIOCGIFFLAGS/SIOCSIFFLAGS, the
// two ioctls 'ip link set up' boils down to; no netlink is needed for that.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring %s up: socket: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring %s up: get flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring %s up: set flags: %w", name, err)
	}
	return nil
}

// runMode runs the test binary with one hook mode forced and prints the
// verdict: FAIL if the binary fails, PASS if at least one top-level test
// passed, SKIP if every test that ran skipped (or none matched). Each
// failed or skipped test is echoed on a "VMTEST   " line with its first
// message, so the host can show why without the whole log.
func runMode(release, mode string, cfg *config) {
	args := []string{"-test.v", "-test.count=1"}
	if cfg.Run != "" {
		args = append(args, "-test.run", cfg.Run)
	}
	if cfg.TestTimeout != "" {
		args = append(args, "-test.timeout", cfg.TestTimeout)
	}
	fmt.Printf("vmtest-init: mode=%s: %s %s\n", mode, testBinary, strings.Join(args, " "))
	cmd := exec.Command(testBinary, args...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.Env = append(cmd.Env, "VOLLEYSCOPE_PROBE_MODE="+mode)
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(os.Stdout, &out)
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start).Round(10 * time.Millisecond)

	s := summarize(out.Bytes())
	verdict := "PASS"
	switch {
	case err != nil:
		verdict = "FAIL"
	case s.passed == 0:
		verdict = "SKIP"
	}
	detail := fmt.Sprintf("(%d passed, %d failed, %d skipped, %s)", s.passed, s.failed, s.skipped, elapsed)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		detail += ": " + err.Error()
	}
	for _, l := range s.notes {
		fmt.Printf("VMTEST   mode=%s %s\n", mode, l)
	}
	fmt.Printf("VMTEST kernel=%s mode=%s %s %s\n", release, mode, verdict, detail)
}

type summary struct {
	passed, failed, skipped int      // top-level tests
	notes                   []string // "--- FAIL/SKIP: name: first message"
}

// summarize reads 'go test -v' output. Top-level results start in column
// 0; subtests are indented by four spaces per level. The line after a
// "--- SKIP" or "--- FAIL" line, when indented, is the test's first log
// message (its skip reason or first error).
func summarize(out []byte) summary {
	var s summary
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	pending := -1 // index in notes awaiting its message
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		top := len(trimmed) == len(line)
		if pending >= 0 {
			if !top && !strings.HasPrefix(trimmed, "--- ") && !strings.HasPrefix(trimmed, "=== ") {
				s.notes[pending] += ": " + strings.TrimSpace(trimmed)
			}
			pending = -1
		}
		switch {
		case strings.HasPrefix(trimmed, "--- PASS: "):
			if top {
				s.passed++
			}
		case strings.HasPrefix(trimmed, "--- FAIL: "), strings.HasPrefix(trimmed, "--- SKIP: "):
			if top && strings.HasPrefix(trimmed, "--- FAIL") {
				s.failed++
			} else if top {
				s.skipped++
			}
			s.notes = append(s.notes, trimmed)
			pending = len(s.notes) - 1
		}
	}
	return s
}

func powerOff() {
	unix.Sync()
	// LINUX_REBOOT_CMD_POWER_OFF makes qemu exit; if it fails, returning
	// from PID 1 panics the kernel, and panic=-1 with -no-reboot ends qemu
	// too.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Printf("vmtest-init: power off: %v\n", err)
	}
}
