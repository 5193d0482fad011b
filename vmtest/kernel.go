package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// kernel is a bootable kernel image and what its config says about it.
type kernel struct {
	Name     string            // release, e.g. 6.1.0-56-cloud-amd64
	Vmlinuz  string            // path of the image
	Dir      string            // the extracted package (boot/, and lib/modules when kept); "" for --kernel
	Config   map[string]string // CONFIG_* → value from the package's config; nil if unknown
	Warnings []string          // config options missing for the tests, if known
}

// aptEnv is the apt configuration a package is found and downloaded with:
// the machine's (Opts empty) or the cache directory's own.
type aptEnv struct {
	Opts []string // "-o" settings passed to apt-get and apt-cache
	Name string   // for messages: "apt" or the suite
}

// backportsSuite is where Debian 12 publishes its newer kernels (6.12 for
// bookworm). The machine's apt sources may not list it; adding it there
// would offer its packages to every other 'apt-get install' on the
// machine, so the cache directory gets an apt configuration of its own
// (sources, package lists and apt's cache), used for these look-ups and
// downloads only.
const backportsSuite = "bookworm-backports"

// debianKeyring verifies the suite's Release file.
const debianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// backportsEnv writes (once) the cache's own apt configuration for
// backportsSuite and returns the options that select it.
func backportsEnv(cache string) (aptEnv, error) {
	root := filepath.Join(cache, "apt")
	if _, err := os.Stat(debianKeyring); err != nil {
		return aptEnv{}, fmt.Errorf("set up apt for %s: %w (install debian-archive-keyring)", backportsSuite, err)
	}
	for _, d := range []string{"sources.list.d", "lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return aptEnv{}, fmt.Errorf("set up apt for %s: %w", backportsSuite, err)
		}
	}
	src := filepath.Join(root, "sources.list")
	line := fmt.Sprintf("deb [signed-by=%s] http://deb.debian.org/debian %s main\n", debianKeyring, backportsSuite)
	if b, err := os.ReadFile(src); err != nil || string(b) != line {
		if err := os.WriteFile(src, []byte(line), 0o644); err != nil {
			return aptEnv{}, fmt.Errorf("set up apt for %s: %w", backportsSuite, err)
		}
	}
	return aptEnv{Name: backportsSuite, Opts: []string{
		"-o", "Dir::Etc::sourcelist=" + src,
		"-o", "Dir::Etc::sourceparts=" + filepath.Join(root, "sources.list.d"),
		"-o", "Dir::State::Lists=" + filepath.Join(root, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(root, "cache"),
	}}, nil
}

// aptRun runs an apt command; when it fails, or apt-cache finds nothing,
// it runs 'apt-get update' once (with the same configuration) and tries
// again, since a stale or empty package list is the usual cause (a fresh
// container has none).
func aptRun(ctx context.Context, dir string, env aptEnv, name string, args ...string) ([]byte, error) {
	try := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, name, append(append([]string(nil), env.Opts...), args...)...)
		cmd.Dir = dir
		return cmd.CombinedOutput()
	}
	out, err := try()
	if err == nil && !(name == "apt-cache" && len(bytes.TrimSpace(out)) == 0) {
		return out, nil
	}
	upd := append(append([]string(nil), env.Opts...), "update")
	if uout, uerr := exec.CommandContext(ctx, "apt-get", upd...).CombinedOutput(); uerr != nil {
		return out, fmt.Errorf("apt-get update: %w: %s", uerr, lastLines(uout, 5))
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
	if _, err := aptRun(ctx, "", aptEnv{}, "apt-get", "install", "-y", "--no-install-recommends", "qemu-system-x86"); err != nil {
		return fmt.Errorf("install qemu: %w", err)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return fmt.Errorf("install qemu: qemu-system-x86_64 still not found: %w", err)
	}
	return nil
}

// newestKernelPkg asks apt-cache for the packages matching pattern and
// returns the one with the highest version-like name.
func newestKernelPkg(ctx context.Context, env aptEnv, pattern string) (string, error) {
	out, err := aptRun(ctx, "", env, "apt-cache", "search", "--names-only", pattern)
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
		return "", fmt.Errorf("find kernel package: %s knows none matching %s; pass --kernel-pkg or --kernel", env.Name, pattern)
	}
	return newest(names), nil
}

// newest is the highest version-like name of names.
func newest(names []string) string {
	sort.Slice(names, func(i, j int) bool { return versionLess(names[i], names[j]) })
	return names[len(names)-1]
}

// cachedKernelPkg is the newest package matching pattern already extracted
// in cache: what a run without a package registry boots.
func cachedKernelPkg(cache, pattern string) (string, bool) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return "", false
	}
	ents, _ := os.ReadDir(cache)
	var names []string
	for _, e := range ents {
		if e.IsDir() && re.MatchString(e.Name()) {
			if _, err := findKernel(filepath.Join(cache, e.Name())); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	if len(names) == 0 {
		return "", false
	}
	return newest(names), true
}

// resolveKernel picks the package of a matrix row: as named, else the
// newest apt knows, else (apt failing: no network) the newest cached.
func resolveKernel(ctx context.Context, cache string, spec kernelSpec) (string, aptEnv, error) {
	env := aptEnv{Name: "apt"}
	if spec.Backports {
		var err error
		if env, err = backportsEnv(cache); err != nil {
			return "", env, err
		}
	}
	if spec.Pkg != "" {
		return spec.Pkg, env, nil
	}
	pkg, err := newestKernelPkg(ctx, env, spec.Pattern)
	if err != nil {
		if c, ok := cachedKernelPkg(cache, spec.Pattern); ok {
			fmt.Printf("vmtest: %s: %v\nvmtest: %s: booting the cached %s\n", spec.Label, err, spec.Label, c)
			return c, env, nil
		}
		return "", env, err
	}
	return pkg, env, nil
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
// cache and returns its image. Of the package boot/ is kept, and with
// modules its lib/modules too (a networked guest loads its NIC's driver
// from there); a cached extraction without them is redone from the cached
// package.
func fetchKernel(ctx context.Context, cache string, env aptEnv, pkg string, modules bool) (kernel, error) {
	dir := filepath.Join(cache, pkg)
	if k, err := findKernel(dir); err == nil {
		if _, err := os.Stat(modulesDir(k)); err == nil || !modules {
			return k, nil
		}
	}
	debs, _ := filepath.Glob(filepath.Join(cache, pkg+"_*.deb"))
	if len(debs) == 0 {
		fmt.Printf("vmtest: downloading %s (%s)\n", pkg, env.Name)
		if _, err := aptRun(ctx, cache, env, "apt-get", "download", pkg); err != nil {
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
	defer os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return kernel{}, fmt.Errorf("extract %s: %w: %s", deb, err, lastLines(out, 5))
	}
	os.RemoveAll(dir)
	keep := []string{"boot"}
	if modules {
		keep = append(keep, filepath.Join("lib", "modules"))
	}
	for _, d := range keep {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, d)), 0o755); err != nil {
			return kernel{}, fmt.Errorf("extract %s: %w", deb, err)
		}
		if err := os.Rename(filepath.Join(tmp, d), filepath.Join(dir, d)); err != nil {
			os.RemoveAll(dir)
			return kernel{}, fmt.Errorf("extract %s: %w", deb, err)
		}
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
	k := kernel{Name: release, Vmlinuz: img, Dir: dir}
	cfg, err := os.ReadFile(filepath.Join(dir, "boot", "config-"+release))
	if err != nil {
		k.Warnings = append(k.Warnings, "no kernel config to check: "+err.Error())
		return k, nil
	}
	k.Config = parseConfig(cfg)
	k.Warnings = checkConfig(k.Config)
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

// parseConfig reads a kernel config: CONFIG_X=value lines.
func parseConfig(cfg []byte) map[string]string {
	set := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			set[k] = v
		}
	}
	return set
}

// checkConfig returns one warning per required option that is not =y.
func checkConfig(set map[string]string) []string {
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
