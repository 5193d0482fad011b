package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// defaultKernelPattern selects Debian 12's own kernel series in its cloud
// flavour: built-in virtio-free boot path (serial console, initramfs,
// loopback need no module), BTF, kprobes and fentry.
const defaultKernelPattern = `^linux-image-6\.1\.0-.*-cloud-amd64-unsigned$`

// kernel is a bootable kernel image and what its config says about it.
type kernel struct {
	Name     string   // release, e.g. 6.1.0-56-cloud-amd64
	Vmlinuz  string   // path of the image
	Warnings []string // config options missing for the tests, if known
}

// aptRun runs an apt command; when it fails, it runs 'apt-get update' once
// and tries again, since a stale or empty package list is the usual cause
// (a fresh container has none).
func aptRun(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	try := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		return cmd.CombinedOutput()
	}
	out, err := try()
	if err == nil && !(name == "apt-cache" && len(bytes.TrimSpace(out)) == 0) {
		return out, nil
	}
	if upd, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
		return out, fmt.Errorf("apt-get update: %w: %s", uerr, lastLines(upd, 5))
	}
	out, err = try()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(out, 5))
	}
	return out, nil
}

// ensureQemu installs qemu-system-x86 when qemu-system-x86_64 is missing.
func ensureQemu(ctx context.Context) error {
	if _, err := exec.LookPath("qemu-system-x86_64"); err == nil {
		return nil
	}
	fmt.Println("vmtest: installing qemu-system-x86")
	if _, err := aptRun(ctx, "", "apt-get", "install", "-y", "--no-install-recommends", "qemu-system-x86"); err != nil {
		return fmt.Errorf("install qemu: %w", err)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return fmt.Errorf("install qemu: qemu-system-x86_64 still not found: %w", err)
	}
	return nil
}

// newestKernelPkg asks apt-cache for the packages matching pattern and
// returns the one with the highest version-like name.
func newestKernelPkg(ctx context.Context, pattern string) (string, error) {
	out, err := aptRun(ctx, "", "apt-cache", "search", "--names-only", pattern)
	if err != nil {
		return "", fmt.Errorf("find kernel package: %w", err)
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("find kernel package: apt knows none matching %s; pass --kernel-pkg or --kernel", pattern)
	}
	sort.Slice(names, func(i, j int) bool { return versionLess(names[i], names[j]) })
	return names[len(names)-1], nil
}

// versionLess compares names piecewise, digit runs as numbers, so that
// 6.1.0-9 sorts before 6.1.0-56.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		ra, rest1 := nextRun(a)
		rb, rest2 := nextRun(b)
		if ra != rb {
			na, ea := strconv.ParseUint(ra, 10, 64)
			nb, eb := strconv.ParseUint(rb, 10, 64)
			if ea == nil && eb == nil {
				return na < nb
			}
			return ra < rb
		}
		a, b = rest1, rest2
	}
	return len(a) < len(b)
}

// nextRun splits off the leading run of digits or of non-digits.
func nextRun(s string) (string, string) {
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	d := digit(s[0])
	i := 1
	for i < len(s) && digit(s[i]) == d {
		i++
	}
	return s[:i], s[i:]
}

// fetchKernel downloads (once) and extracts (once) a kernel package into
// cache and returns its image.
func fetchKernel(ctx context.Context, cache, pkg string) (kernel, error) {
	dir := filepath.Join(cache, pkg)
	if k, err := findKernel(dir); err == nil {
		return k, nil
	}
	debs, _ := filepath.Glob(filepath.Join(cache, pkg+"_*.deb"))
	if len(debs) == 0 {
		fmt.Printf("vmtest: downloading %s\n", pkg)
		if _, err := aptRun(ctx, cache, "apt-get", "download", pkg); err != nil {
			return kernel{}, fmt.Errorf("download kernel: %w", err)
		}
		debs, _ = filepath.Glob(filepath.Join(cache, pkg+"_*.deb"))
		if len(debs) == 0 {
			return kernel{}, fmt.Errorf("download kernel: no %s_*.deb in %s after apt-get download", pkg, cache)
		}
	}
	sort.Strings(debs)
	deb := debs[len(debs)-1]
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return kernel{}, fmt.Errorf("extract %s: %w: %s", deb, err, lastLines(out, 5))
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return kernel{}, fmt.Errorf("extract %s: %w", deb, err)
	}
	return findKernel(dir)
}

// findKernel locates boot/vmlinuz-* in an extracted package and reads the
// neighbouring config-* for the options the tests rely on.
func findKernel(dir string) (kernel, error) {
	imgs, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(imgs) == 0 {
		return kernel{}, fmt.Errorf("find kernel image: no boot/vmlinuz-* under %s", dir)
	}
	img := imgs[0]
	release := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
	k := kernel{Name: release, Vmlinuz: img}
	cfg, err := os.ReadFile(filepath.Join(dir, "boot", "config-"+release))
	if err != nil {
		k.Warnings = append(k.Warnings, "no kernel config to check: "+err.Error())
		return k, nil
	}
	k.Warnings = checkConfig(cfg)
	return k, nil
}

// requiredConfig are the options the guest needs built in (=y): a module
// would need a loader the initramfs does not have.
var requiredConfig = []struct{ option, why string }{
	{"CONFIG_BLK_DEV_INITRD", "the initramfs cannot be loaded"},
	{"CONFIG_RD_GZIP", "the gzip-compressed initramfs cannot be unpacked"},
	{"CONFIG_SERIAL_8250_CONSOLE", "no output on the serial console"},
	{"CONFIG_DEVTMPFS", "no /dev"},
	{"CONFIG_BPF_SYSCALL", "no eBPF at all"},
	{"CONFIG_BPF_EVENTS", "eBPF cannot attach to tracepoints or kprobes"},
	{"CONFIG_DEBUG_INFO_BTF", "no kernel BTF: tp_btf and fentry cannot load"},
	{"CONFIG_KPROBES", "no kprobes: kprobe mode cannot work"},
	{"CONFIG_KPROBE_EVENTS", "no kprobe events: kprobe mode cannot work"},
	{"CONFIG_FUNCTION_TRACER", "no ftrace: fentry mode cannot work"},
	{"CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS", "no ftrace direct calls: fentry mode cannot attach"},
	{"CONFIG_FTRACE_SYSCALLS", "no syscall tracepoints"},
}

// checkConfig returns one warning per required option that is not =y.
func checkConfig(cfg []byte) []string {
	set := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			set[k] = v
		}
	}
	var warn []string
	for _, r := range requiredConfig {
		if v := set[r.option]; v != "y" {
			if v == "" {
				v = "unset"
			}
			warn = append(warn, fmt.Sprintf("%s=%s: %s", r.option, v, r.why))
		}
	}
	return warn
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
