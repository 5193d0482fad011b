package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/volleyscope/volleyscope/internal/hostinfo"
	"github.com/volleyscope/volleyscope/internal/report"
)

// options are the command's settings; the comments give the flag defaults.
type options struct {
	// Kernels are labels of defaultMatrix rows to run. Default: all.
	Kernels []string
	// KernelPkgs are Debian package names of kernels to boot instead of
	// the matrix, each with Modes (or every mode).
	KernelPkgs []string
	// Kernel is a vmlinuz to boot instead of a package's (no apt at all).
	Kernel string
	// CacheDir holds downloaded packages, extracted kernels, console logs
	// and the guests' results. Default /var/cache/volleyscope-vmtest.
	CacheDir string
	// ResultsDir receives each kernel's results.json as LABEL.json.
	// Default CacheDir/results.
	ResultsDir string
	// Pkg is the Go package whose test binary runs in the guest. Default
	// ./probe.
	Pkg string
	// Run is the -test.run pattern; each level L adds "/^L/". Default
	// "^TestKernelHooksAndEvents$", the test that attaches every hook of
	// a level and checks each round trip's events.
	Run string
	// Modes, when set, replace every kernel's own modes.
	Modes []string
	// Levels are the probe levels, one test run each per mode (the
	// subtests of Run named after them). Default default,syscalls; none
	// with a --pkg other than ./probe.
	Levels []string
	// Volleyscope makes each guest run 'volleyscope run' and send its
	// results.json back; the host then compares the kernels. Default on.
	Volleyscope bool
	// Timeout bounds one boot, from qemu's start to its exit. Default 8m.
	Timeout time.Duration
	// TestTimeout is passed as -test.timeout to each test run. Default 3m.
	TestTimeout time.Duration
	// MemMiB and CPUs size the guest. Default 1024 MiB and 2 CPUs (the
	// probe's tests pin client and server to different CPUs).
	MemMiB, CPUs int
	// Accel is kvm, tcg or auto (kvm when /dev/kvm can create a VM).
	Accel string
	// CPU is qemu's -cpu model under TCG. Default tcgCPU.
	CPU string
	// Verbose copies the whole console to stdout, not only VMTEST lines.
	Verbose bool
	// Net is the matrix kernel (a label) of one more boot, networked: the
	// guest serves on a NIC whose tap is in a namespace this run makes,
	// and the host drives it from there (netScenario). Default 6.12;
	// off ("") with --kernel, --kernel-pkg, another --pkg or
	// --volleyscope=false unless given.
	Net string
}

// defaultCache is the cache directory (--cache).
const defaultCache = "/var/cache/volleyscope-vmtest"

// keepLogs is how many console logs the cache keeps, newest first.
const keepLogs = 30

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := pflag.NewFlagSet("vmtest", pflag.ContinueOnError)
	var labels []string
	for _, k := range defaultMatrix {
		labels = append(labels, k.Label)
	}
	fs.StringSliceVar(&o.Kernels, "kernels", labels, "kernels of the matrix to run (each the newest Debian cloud package of its series)")
	fs.StringSliceVar(&o.KernelPkgs, "kernel-pkg", nil, "Debian kernel package(s) to boot instead of the matrix, comma-separated")
	fs.StringVar(&o.Kernel, "kernel", "", "boot this vmlinuz instead of the matrix")
	fs.StringVar(&o.CacheDir, "cache", defaultCache, "directory for packages, kernels, console logs and results")
	fs.StringVar(&o.ResultsDir, "results", "", "directory for each guest's results.json, as KERNEL.json (default CACHE/results)")
	fs.StringVar(&o.Pkg, "pkg", "./probe", "Go package whose tests run in the guest")
	fs.StringVar(&o.Run, "run", "^TestKernelHooksAndEvents$", "-test.run pattern; each level L adds /^L/")
	fs.StringSliceVar(&o.Modes, "modes", nil, "VOLLEYSCOPE_PROBE_MODE values for every kernel (default: each kernel's own)")
	fs.StringSliceVar(&o.Levels, "levels", defaultLevels, "probe levels, one test run each per mode ('' for one run per mode)")
	fs.BoolVar(&o.Volleyscope, "volleyscope", true, "also make a short 'volleyscope run' in each guest and compare the kernels")
	fs.DurationVar(&o.Timeout, "timeout", 8*time.Minute, "hard limit for one boot")
	fs.DurationVar(&o.TestTimeout, "test-timeout", 3*time.Minute, "-test.timeout for each test run")
	fs.IntVar(&o.MemMiB, "mem", 1024, "guest memory in MiB")
	fs.IntVar(&o.CPUs, "smp", 2, "guest CPUs")
	fs.StringVar(&o.Accel, "accel", "auto", "qemu accelerator: kvm, tcg or auto")
	fs.StringVar(&o.CPU, "cpu", tcgCPU, "qemu -cpu model under TCG (KVM uses host)")
	fs.BoolVarP(&o.Verbose, "verbose", "v", false, "copy the whole guest console to stdout")
	fs.StringVar(&o.Net, "net", defaultNet, "boot this matrix kernel once more with a NIC on a tap in a namespace of the run's own, and drive a server in the guest from the host ('' for none)")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./vmtest [flags]   (as root)\n\n"+
			"Boots Debian kernels under qemu (6.1, and 6.12 from bookworm-backports),\n"+
			"runs the probe's kernel tests in each hook mode at each probe level, one\n"+
			"PASS/FAIL/SKIP line each, makes a short 'volleyscope run' in each guest and\n"+
			"compares the kernels' results.json. Exit status 1 on any FAIL.\n\n"+
			"examples:\n"+
			"  go run ./vmtest\n"+
			"  go run ./vmtest --kernels 6.12 --modes fentry\n"+
			"  go run ./vmtest --kernel-pkg linux-image-6.1.0-57-cloud-amd64-unsigned\n"+
			"  go run ./vmtest --pkg ./vmtest/testdata/attach --run . --volleyscope=false   # self-test without the probe\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch o.Accel {
	case "auto", "kvm", "tcg":
	default:
		return nil, fmt.Errorf("--accel %q: want kvm, tcg or auto", o.Accel)
	}
	if fs.Changed("modes") && len(o.Modes) == 0 {
		return nil, errors.New("--modes is empty")
	}
	for _, m := range o.Modes {
		if _, ok := modeNeeds[m]; !ok {
			return nil, fmt.Errorf("--modes: %q: want tracepoint, fentry or kprobe", m)
		}
	}
	if o.Kernel != "" && len(o.KernelPkgs) > 0 {
		return nil, errors.New("--kernel and --kernel-pkg exclude each other")
	}
	for _, l := range o.Kernels {
		if !slices.ContainsFunc(defaultMatrix, func(k kernelSpec) bool { return k.Label == l }) {
			return nil, fmt.Errorf("--kernels: %q is not in the matrix (%s)", l, strings.Join(labels, ", "))
		}
	}
	if o.Pkg != "./probe" && !fs.Changed("levels") {
		o.Levels = nil // the levels are the probe test's subtests
	}
	if len(o.Levels) == 1 && o.Levels[0] == "" {
		o.Levels = nil
	}
	if !fs.Changed("net") && (o.Kernel != "" || len(o.KernelPkgs) > 0 || o.Pkg != "./probe" || !o.Volleyscope) {
		o.Net = "" // a run narrowed to other things does not get this boot unasked
	}
	if o.Net != "" {
		if o.Kernel != "" {
			return nil, errors.New("--net boots a matrix kernel's package (the NIC driver is a module), which --kernel has not; add --net ''")
		}
		if !slices.ContainsFunc(defaultMatrix, func(k kernelSpec) bool { return k.Label == o.Net }) {
			return nil, fmt.Errorf("--net: %q is not in the matrix (%s)", o.Net, strings.Join(labels, ", "))
		}
	}
	if o.ResultsDir == "" {
		o.ResultsDir = filepath.Join(o.CacheDir, "results")
	}
	return o, nil
}

// specs are the kernels to boot, from the flags.
func specs(o *options) []kernelSpec {
	all := []string{"tracepoint", "fentry", "kprobe"}
	var out []kernelSpec
	switch {
	case o.Kernel != "":
		out = []kernelSpec{{Label: filepath.Base(o.Kernel), Modes: all}}
	case len(o.KernelPkgs) > 0:
		for _, p := range o.KernelPkgs {
			s := kernelSpec{Pkg: p, Modes: all}
			// A package of a matrix series comes from where that
			// series does (bookworm-backports for 6.12).
			for _, k := range defaultMatrix {
				if regexp.MustCompile(k.Pattern).MatchString(p) {
					s.Backports = k.Backports
				}
			}
			out = append(out, s)
		}
	default:
		for _, k := range defaultMatrix {
			if slices.Contains(o.Kernels, k.Label) {
				out = append(out, k)
			}
		}
	}
	if len(o.Modes) > 0 {
		for i := range out {
			out[i].Modes = o.Modes
		}
	}
	return out
}

// target is a kernel ready to boot with the runs planned for it.
type target struct {
	spec    kernelSpec
	k       kernel
	label   string     // results file name without .json
	runs    []guestRun // what the guest runs
	skips   []verdict  // decided here: the kernel cannot run the mode
	planned []string   // every line of this kernel, in matrix order ("mode=M level=L")
}

func run(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (apt-get, and the tests load eBPF programs); run it with sudo")
	}
	wallStart := time.Now()
	for _, d := range []string{o.CacheDir, o.ResultsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := ensureQemu(ctx); err != nil {
		return err
	}

	// Every kernel is found and downloaded before the first boot: a
	// missing package fails the run at once.
	var targets []*target
	for _, s := range specs(o) {
		t := &target{spec: s, label: s.Label}
		if o.Kernel != "" {
			t.k = kernel{Name: filepath.Base(o.Kernel), Vmlinuz: o.Kernel}
		} else {
			pkg, env, err := resolveKernel(ctx, o.CacheDir, s)
			if err != nil {
				return fmt.Errorf("kernel %s: %w", s.Label, err)
			}
			if t.k, err = fetchKernel(ctx, o.CacheDir, env, pkg, false); err != nil {
				return fmt.Errorf("kernel %s: %w", s.Label, err)
			}
		}
		if t.label == "" {
			t.label = t.k.Name
		}
		t.plan(o)
		targets = append(targets, t)
	}

	var netKernel kernel
	if o.Net != "" {
		i := slices.IndexFunc(defaultMatrix, func(k kernelSpec) bool { return k.Label == o.Net })
		pkg, env, err := resolveKernel(ctx, o.CacheDir, defaultMatrix[i])
		if err != nil {
			return fmt.Errorf("kernel %s (--net): %w", o.Net, err)
		}
		if netKernel, err = fetchKernel(ctx, o.CacheDir, env, pkg, true); err != nil {
			return fmt.Errorf("kernel %s (--net): %w", o.Net, err)
		}
	}

	work, err := os.MkdirTemp("", "vmtest-")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(work)
	start := time.Now()
	bins, err := buildBinaries(ctx, work, o, len(targets) > 0)
	if err != nil {
		return err
	}
	fmt.Printf("vmtest: built the guest's binaries in %s\n", time.Since(start).Round(100*time.Millisecond))

	accel := o.Accel
	tryKVM := false // auto mode, KVM not yet proven to run a guest
	if accel == "auto" {
		accel = "tcg"
		if err := kvmUsable(ctx, o.CPUs); err != nil {
			fmt.Printf("vmtest: KVM cannot run a guest here (%v): TCG (software emulation)\n", err)
		} else {
			accel, tryKVM = "kvm", true
		}
	}
	var matrix []verdict
	var failed, resultFiles []string
	for _, t := range targets {
		for _, w := range t.k.Warnings {
			fmt.Printf("vmtest: %s: warning: %s\n", t.k.Name, w)
		}
		gc := guestConfig{Runs: t.runs, TestTimeout: o.TestTimeout.String()}
		if o.Volleyscope {
			gc.Volleyscope, gc.ResultsFile = guestVolleyscope, guestResults
		}
		initrd := filepath.Join(work, "initrd-"+t.label+".cpio.gz")
		if err := buildInitramfs(initrd, bins, gc); err != nil {
			return err
		}
		bc := bootConfig{
			Kernel:  t.k,
			Initrd:  initrd,
			Accel:   accel,
			CPU:     o.CPU,
			MemMiB:  o.MemMiB,
			CPUs:    o.CPUs,
			Timeout: o.Timeout,
			Verbose: o.Verbose,
		}
		// One log per boot, so a failure is still there after the next.
		logPath := func() string {
			return filepath.Join(o.CacheDir, "console-"+t.k.Name+"-"+bc.Accel+"-"+time.Now().Format("20060102-150405")+".log")
		}
		if tryKVM {
			// Under TCG the guest's init starts within seconds; a
			// KVM guest silent for a minute is not running.
			bc.StartTimeout = time.Minute
		}
		unlock, err := machineLock(ctx)
		if err != nil {
			return err
		}
		bc.LogPath = logPath()
		res, err := boot(ctx, bc)
		if tryKVM && errors.Is(err, errNotStarted) {
			fmt.Printf("vmtest: %v\nvmtest: falling back to TCG (software emulation)\n", err)
			accel, tryKVM = "tcg", false
			bc.Accel, bc.StartTimeout = accel, 0
			bc.LogPath = logPath()
			res, err = boot(ctx, bc)
		}
		unlock()
		tryKVM = false
		if ctx.Err() != nil {
			return ctx.Err()
		}
		lines := t.verdicts(res, o.Volleyscope)
		matrix = append(matrix, lines...)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", t.k.Name, err))
		} else if bad := res.check(t.expected(o.Volleyscope)); len(bad) > 0 {
			failed = append(failed, fmt.Sprintf("%s: %s (console log: %s)", t.k.Name, strings.Join(bad, "; "), res.LogPath))
		}
		if o.Volleyscope && res != nil {
			f, r, err := saveResults(o.ResultsDir, t.label, res)
			if err == nil {
				resultFiles = append(resultFiles, f)
				err = checkRun(r, bc.Accel)
			}
			for i := range matrix {
				v := &matrix[i]
				if v.Kernel != t.k.Name || v.What != "run=volleyscope" || v.Result != "PASS" {
					continue
				}
				if err != nil {
					v.Result, v.Detail = "FAIL", err.Error()
				} else {
					v.Detail += "; " + runSummary(r)
				}
			}
		}
	}
	if o.Net != "" {
		vs, err := runNetBoots(ctx, o, netKernel, bins, work, accel)
		matrix = append(matrix, vs...)
		if err != nil {
			return err
		}
	}
	pruneLogs(o.CacheDir)
	fmt.Println()
	// The note is about the probe's kernel test (VOLLEYSCOPE_EMULATED).
	printMatrix(matrix, accel == "tcg" && o.Pkg == "./probe" && len(targets) > 0, time.Since(wallStart))
	if len(resultFiles) >= 2 && bins.Volleyscope != "" {
		compareKernels(ctx, bins.Volleyscope, o.ResultsDir, resultFiles)
	}
	for _, v := range matrix {
		if v.Result == "FAIL" && !slices.ContainsFunc(failed, func(f string) bool { return strings.HasPrefix(f, v.Kernel+":") }) {
			failed = append(failed, fmt.Sprintf("%s: %s FAIL", v.Kernel, v.What))
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "\n  "))
	}
	return nil
}

// plan decides, per mode and level, what runs in the guest and what is a
// SKIP decided here from the kernel's config.
func (t *target) plan(o *options) {
	levels := o.Levels
	if len(levels) == 0 {
		levels = []string{""}
	}
	for _, m := range t.spec.Modes {
		why := cannotRun(m, t.k.Config)
		for _, l := range levels {
			what := "mode=" + m
			pattern := o.Run
			if l != "" {
				what += " level=" + l
				pattern += "/^" + l + "/"
			}
			t.planned = append(t.planned, what)
			if why != "" {
				t.skips = append(t.skips, verdict{Kernel: t.k.Name, What: what, Result: "SKIP", Detail: why})
				continue
			}
			t.runs = append(t.runs, guestRun{Mode: m, Level: l, Run: pattern})
		}
	}
}

// expected are the verdicts the guest must print.
func (t *target) expected(vs bool) []string {
	var want []string
	if vs {
		want = append(want, "run=volleyscope")
	}
	for _, r := range t.runs {
		what := "mode=" + r.Mode
		if r.Level != "" {
			what += " level=" + r.Level
		}
		want = append(want, what)
	}
	return want
}

// verdicts are this kernel's matrix lines in order: the volleyscope run,
// then each mode and level, from the guest or decided here; a line the
// guest never printed is a FAIL.
func (t *target) verdicts(res *bootResult, vs bool) []verdict {
	var out []verdict
	get := func(what string) verdict {
		for _, s := range t.skips {
			if s.What == what {
				return s
			}
		}
		if res != nil {
			if v, ok := res.find(what); ok {
				v.Kernel = t.k.Name
				return v
			}
		}
		why := "no verdict: the guest hung, crashed or timed out"
		if res != nil && res.LogPath != "" {
			why += " (console log " + res.LogPath + ")"
		}
		return verdict{Kernel: t.k.Name, What: what, Result: "FAIL", Detail: why}
	}
	if vs {
		out = append(out, get("run=volleyscope"))
	}
	for _, w := range t.planned {
		out = append(out, get(w))
	}
	return out
}

// saveResults writes the guest's results.json as dir/label.json after
// checking that it is one.
func saveResults(dir, label string, res *bootResult) (string, *report.Results, error) {
	if res.Results == nil {
		err := res.ResultsErr
		if err == nil {
			err = errors.New("the guest sent none")
		}
		return "", nil, fmt.Errorf("results.json: %w", err)
	}
	path := filepath.Join(dir, label+".json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, res.Results, 0o644); err != nil {
		return "", nil, fmt.Errorf("save results: %w", err)
	}
	r, err := report.ReadJSON(tmp)
	if err != nil {
		os.Remove(tmp)
		return "", nil, fmt.Errorf("save results: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", nil, fmt.Errorf("save results: %w", err)
	}
	fmt.Printf("vmtest: %s\n", path)
	return path, r, nil
}

// maxUnjoined is the share of a guest run's round trips that may go
// unjoined: the join names each with its reason rather than guess, and
// under TCG a few do (2 of 918 on 6.1 once: "no client send syscall in
// [t0, t1]"), while a hook that stopped firing leaves most unjoined.
const maxUnjoined = 0.01

// checkRun: the guest's run measured round trips, joined nearly all with
// the probe's events, and (under TCG) says it ran emulated.
func checkRun(r *report.Results, accel string) error {
	bc := r.BreakdownCheck
	switch {
	case r.Latency.Count == 0:
		return errors.New("the run measured no round trips")
	case bc == nil || bc.Joined == 0:
		return errors.New("the run joined no round trip with the probe's events")
	case float64(bc.Unjoined) > maxUnjoined*float64(bc.Joined+bc.Unjoined):
		return fmt.Errorf("%d of %d round trips not joined with the probe's events, over %g%%: %s", bc.Unjoined, bc.Joined+bc.Unjoined, 100*maxUnjoined, reasons(bc.UnjoinedReasons))
	case accel == "tcg" && r.Meta.Virtualization != hostinfo.VirtEmulated:
		return fmt.Errorf("meta.virtualization %q under TCG, want %q", r.Meta.Virtualization, hostinfo.VirtEmulated)
	}
	return nil
}

// reasons lists why round trips went unjoined, in a fixed order.
func reasons(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
	}
	return strings.Join(parts, ", ")
}

// runSummary is what the matrix line says of a good run: round trips,
// the join, and the socket events' hooks.
func runSummary(r *report.Results) string {
	bc := r.BreakdownCheck
	s := fmt.Sprintf("%d round trips, %d joined", bc.Joined+bc.Unjoined, bc.Joined)
	if bc.Unjoined > 0 {
		s += " (unjoined: " + reasons(bc.UnjoinedReasons) + ")"
	}
	s += ", " + r.Meta.Virtualization
	for _, ev := range []string{"send_start", "sock_recv_length", "sk_data_ready"} {
		s += " " + ev + "=" + r.Meta.Hooks[ev]
	}
	return s
}

// compareKernels shows what a user would see: 'volleyscope compare' of the
// kernels' results, run in their directory so that the names are short.
func compareKernels(ctx context.Context, bin, dir string, files []string) {
	args := []string{"compare"}
	for _, f := range files {
		args = append(args, filepath.Base(f))
	}
	fmt.Printf("\nvmtest: (cd %s && volleyscope %s)\n", dir, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		// The comparison is for reading; the matrix decides the status.
		fmt.Printf("vmtest: compare: %v\n", err)
	}
}

// pruneLogs keeps the newest keepLogs console logs in the cache.
func pruneLogs(cache string) {
	logs, _ := filepath.Glob(filepath.Join(cache, "console-*.log"))
	if len(logs) <= keepLogs {
		return
	}
	mtime := func(p string) time.Time {
		if fi, err := os.Stat(p); err == nil {
			return fi.ModTime()
		}
		return time.Time{}
	}
	sort.Slice(logs, func(i, j int) bool { return mtime(logs[i]).After(mtime(logs[j])) })
	for _, p := range logs[keepLogs:] {
		os.Remove(p)
	}
}
