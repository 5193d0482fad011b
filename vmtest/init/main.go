// Command init is PID 1 of the initramfs that 'make vmtest' boots under
// qemu. It prepares the few kernel file systems eBPF tests need, brings the
// loopback interface up (and, for a networked guest, loads the NIC's
// modules and addresses it), makes a short 'volleyscope run' and prints its
// results.json on the console, runs /probe.test once per hook mode and
// probe level with VOLLEYSCOPE_PROBE_MODE set, prints one
// "VMTEST kernel=… mode=… level=… PASS|FAIL|SKIP …" line per run, serves
// the host (a volleyscope server or agent, until the host writes
// "vmtest-stop" on the console), and powers the machine off.
//
// It is built with CGO_ENABLED=0 so that it is static: the initramfs holds
// no C library and no dynamic loader.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/hostinfo"
)

// config is read from /vmtest.json, written by the host side (package
// vmtest's guestConfig: the JSON names are the contract).
type config struct {
	Runs        []testRun `json:"runs"`
	TestTimeout string    `json:"test_timeout"` // -test.timeout per run
	Env         []string  `json:"env"`          // extra KEY=VALUE for the tests
	Volleyscope []string  `json:"volleyscope"`  // arguments of /volleyscope; none: no run
	ResultsFile string    `json:"results_file"` // the results.json that run writes
	// Net, when set, brings up the NIC qemu gives a networked guest.
	Net *netConfig `json:"net"`
	// Serve, when set, is a command run last, for the host to reach
	// through Net, until the host says stop.
	Serve *serveConfig `json:"serve"`
}

// testRun is one run of the test binary.
type testRun struct {
	Mode  string `json:"mode"`  // VOLLEYSCOPE_PROBE_MODE
	Level string `json:"level"` // the probe level its tests cover, for the verdict line
	Run   string `json:"run"`   // -test.run pattern
}

const (
	configPath     = "/vmtest.json"
	testBinary     = "/probe.test"
	vsBinary       = "/volleyscope"
	vsTimeout      = 2 * time.Minute
	resultsLineLen = 76 // base64 characters per console line
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
	virt := hostinfo.Virtualization()
	fmt.Printf("vmtest-init: kernel %s, virtualization %q\n", release, virt)
	if virt == hostinfo.VirtEmulated && len(cfg.Runs) > 0 {
		// The probe's kernel tests then log their scheduling-rate bounds
		// instead of asserting them: under TCG those rates are the
		// emulator's.
		cfg.Env = append(cfg.Env, "VOLLEYSCOPE_EMULATED="+virt)
		fmt.Println("vmtest-init: software emulation: the probe tests' rate bounds are logged, not asserted; each round trip's events are still checked")
	}
	if cfg.Net != nil {
		ifname, err := setupNet(cfg.Net)
		if err != nil {
			return err
		}
		fmt.Printf("vmtest-init: %s has %s (modules loaded: %s)\n", ifname, cfg.Net.Addr, strings.Join(cfg.Net.Modules, " "))
	}
	if len(cfg.Volleyscope) > 0 {
		runVolleyscope(release, &cfg)
	}
	for _, r := range cfg.Runs {
		runTests(release, r, &cfg)
	}
	if cfg.Serve != nil {
		serve(release, cfg.Serve)
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

// runVolleyscope makes the guest's 'volleyscope run', prints its verdict
// line, and its results.json as gzip in base64 between VMTEST-RESULTS
// markers, with the file's SHA-256 for the host to check.
func runVolleyscope(release string, cfg *config) {
	fmt.Printf("vmtest-init: %s %s\n", vsBinary, strings.Join(cfg.Volleyscope, " "))
	ctx, cancel := context.WithTimeout(context.Background(), vsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, vsBinary, cfg.Volleyscope...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start).Round(10 * time.Millisecond)
	verdict, detail := "PASS", fmt.Sprintf("(%s)", elapsed)
	if err != nil {
		verdict, detail = "FAIL", fmt.Sprintf("(%s): %v", elapsed, err)
	}
	if cfg.ResultsFile != "" {
		if perr := printResults(cfg.ResultsFile); perr != nil {
			verdict, detail = "FAIL", detail+"; "+perr.Error()
		}
	}
	fmt.Printf("VMTEST kernel=%s run=volleyscope %s %s\n", release, verdict, detail)
}

// printResults writes path, gzip-compressed and base64-encoded, on the
// console: "VMTEST-RESULTS-BEGIN bytes=N", lines of "VMTEST-RESULTS
// <base64>", "VMTEST-RESULTS-END sha256=<hex of the file>".
func printResults(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	var z bytes.Buffer
	gz := gzip.NewWriter(&z)
	gz.Write(b)
	if err := gz.Close(); err != nil {
		return fmt.Errorf("compress results: %w", err)
	}
	enc := base64.StdEncoding.EncodeToString(z.Bytes())
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "VMTEST-RESULTS-BEGIN bytes=%d\n", len(b))
	for len(enc) > 0 {
		n := min(resultsLineLen, len(enc))
		fmt.Fprintf(w, "VMTEST-RESULTS %s\n", enc[:n])
		enc = enc[n:]
	}
	fmt.Fprintf(w, "VMTEST-RESULTS-END sha256=%x\n", sha256.Sum256(b))
	return w.Flush()
}

// runTests runs the test binary with one hook mode forced and prints the
// verdict from the leaf tests (those without subtests: a parent whose
// subtests all skipped still says PASS): FAIL if the binary fails, PASS if
// at least one leaf passed, SKIP with the first skipped leaf's last
// message if none passed (or none matched). Each failed or skipped leaf is
// echoed on a "VMTEST   " line with its last message, so the host can
// show why without the whole log.
func runTests(release string, r testRun, cfg *config) {
	args := []string{"-test.v", "-test.count=1"}
	if r.Run != "" {
		args = append(args, "-test.run", r.Run)
	}
	if cfg.TestTimeout != "" {
		args = append(args, "-test.timeout", cfg.TestTimeout)
	}
	what := "mode=" + r.Mode
	if r.Level != "" {
		what += " level=" + r.Level
	}
	fmt.Printf("vmtest-init: %s: %s %s\n", what, testBinary, strings.Join(args, " "))
	cmd := exec.Command(testBinary, args...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.Env = append(cmd.Env, "VOLLEYSCOPE_PROBE_MODE="+r.Mode)
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(os.Stdout, &out)
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start).Round(10 * time.Millisecond)

	s := summarize(out.Bytes())
	for _, l := range s.notes {
		fmt.Printf("VMTEST   %s %s\n", what, l)
	}
	verdict := "PASS"
	detail := fmt.Sprintf("(%d passed, %d failed, %d skipped, %s)", s.passed, s.failed, s.skipped, elapsed)
	var exit *exec.ExitError
	switch {
	case err != nil:
		verdict = "FAIL"
		if !errors.As(err, &exit) {
			detail += ": " + err.Error()
		} else if len(s.failedNames) > 0 {
			detail += ": " + strings.Join(s.failedNames, ", ")
		}
	case s.passed == 0:
		verdict = "SKIP"
		detail = "no test matched -test.run " + r.Run
		if s.skipReason != "" {
			detail = s.skipReason
		}
	}
	fmt.Printf("VMTEST kernel=%s %s %s %s\n", release, what, verdict, detail)
}

// summary is what 'go test -v' output says of its leaf tests.
type summary struct {
	passed, failed, skipped int      // leaf tests
	notes                   []string // "--- FAIL/SKIP: name: last message" per leaf
	failedNames             []string
	skipReason              string // the first skipped leaf's last message
}

var (
	// testEvent: "=== RUN   Name", "=== CONT  Name", …
	testEvent = regexp.MustCompile(`^=== (?:RUN|CONT|PAUSE|NAME)\s+(\S+)`)
	// testResult: "--- PASS: Name (1.23s)", indented by nesting.
	testResult = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)
	// testLog: "    file_test.go:12: message", streamed by -v as it is
	// logged, under the test that last ran.
	testLog = regexp.MustCompile(`^\s+[\w.-]+\.go:\d+: (.*)$`)
)

// summarize reads 'go test -v' output. Tests run one after the other (no
// t.Parallel in the kernel tests), so a log line belongs to the test named
// by the last "=== RUN" or "=== CONT".
func summarize(out []byte) summary {
	var s summary
	lastLog := map[string]string{}
	result := map[string]string{}
	var order []string // result lines in their order
	current := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := testEvent.FindStringSubmatch(line); m != nil {
			current = m[1]
			continue
		}
		if m := testResult.FindStringSubmatch(line); m != nil {
			if _, seen := result[m[2]]; !seen {
				order = append(order, m[2])
			}
			result[m[2]] = m[1]
			continue
		}
		if m := testLog.FindStringSubmatch(line); m != nil && current != "" {
			lastLog[current] = m[1]
		}
	}
	isLeaf := func(name string) bool {
		for _, o := range order {
			if strings.HasPrefix(o, name+"/") {
				return false
			}
		}
		return true
	}
	for _, name := range order {
		if !isLeaf(name) {
			continue
		}
		switch result[name] {
		case "PASS":
			s.passed++
			continue
		case "FAIL":
			s.failed++
			s.failedNames = append(s.failedNames, name)
		case "SKIP":
			s.skipped++
			if s.skipReason == "" {
				s.skipReason = lastLog[name]
			}
		}
		note := "--- " + result[name] + ": " + name
		if msg := lastLog[name]; msg != "" {
			note += ": " + msg
		}
		s.notes = append(s.notes, note)
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
