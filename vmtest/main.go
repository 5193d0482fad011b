package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// options are the command's settings; the comments give the flag defaults.
type options struct {
	// KernelPkgs are Debian package names of kernels to boot, one after
	// the other. Default: the newest linux-image-6.1.0-*-cloud-amd64-unsigned
	// apt knows.
	KernelPkgs []string
	// Kernel is a vmlinuz to boot instead of a package's (no apt at all).
	Kernel string
	// CacheDir holds downloaded packages, extracted kernels and logs.
	// Default /var/cache/volleyscope-vmtest.
	CacheDir string
	// Pkg is the Go package whose test binary runs in the guest. Default
	// ./probe.
	Pkg string
	// Run is the -test.run pattern. Default "TestKernel|TestProbe".
	Run string
	// Modes are the VOLLEYSCOPE_PROBE_MODE values, one test run each.
	// Default tracepoint,fentry,kprobe.
	Modes []string
	// Timeout bounds one boot, from qemu's start to its exit. Default 15m.
	Timeout time.Duration
	// TestTimeout is passed as -test.timeout to each mode's run. Default 5m.
	TestTimeout time.Duration
	// MemMiB and CPUs size the guest. Default 1024 MiB and 2 CPUs (the
	// probe's tests pin client and server to different CPUs).
	MemMiB, CPUs int
	// Accel is kvm, tcg or auto (kvm when /dev/kvm can create a VM).
	Accel string
	// Verbose copies the whole console to stdout, not only VMTEST lines.
	Verbose bool
}

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
	fs.StringSliceVar(&o.KernelPkgs, "kernel-pkg", nil, "Debian kernel package(s) to boot, comma-separated (default: newest linux-image-6.1.0-*-cloud-amd64-unsigned)")
	fs.StringVar(&o.Kernel, "kernel", "", "boot this vmlinuz instead of a package's")
	fs.StringVar(&o.CacheDir, "cache", "/var/cache/volleyscope-vmtest", "directory for packages, kernels and console logs")
	fs.StringVar(&o.Pkg, "pkg", "./probe", "Go package whose tests run in the guest")
	fs.StringVar(&o.Run, "run", "TestKernel|TestProbe", "-test.run pattern")
	fs.StringSliceVar(&o.Modes, "modes", []string{"tracepoint", "fentry", "kprobe"}, "VOLLEYSCOPE_PROBE_MODE values, one test run each")
	fs.DurationVar(&o.Timeout, "timeout", 15*time.Minute, "hard limit for one boot")
	fs.DurationVar(&o.TestTimeout, "test-timeout", 5*time.Minute, "-test.timeout for each mode")
	fs.IntVar(&o.MemMiB, "mem", 1024, "guest memory in MiB")
	fs.IntVar(&o.CPUs, "smp", 2, "guest CPUs")
	fs.StringVar(&o.Accel, "accel", "auto", "qemu accelerator: kvm, tcg or auto")
	fs.BoolVarP(&o.Verbose, "verbose", "v", false, "copy the whole guest console to stdout")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./vmtest [flags]   (as root)\n\n"+
			"Boots a Debian kernel under qemu and runs the probe's kernel tests in it,\n"+
			"once per hook mode, printing one VMTEST line per mode.\n\n"+
			"examples:\n"+
			"  go run ./vmtest\n"+
			"  go run ./vmtest --kernel-pkg linux-image-6.12.57+deb12-cloud-amd64-unsigned\n"+
			"  go run ./vmtest --pkg ./vmtest/testdata/attach   # self-test without the probe\n\nflags:\n")
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
	if len(o.Modes) == 0 {
		return nil, errors.New("--modes is empty")
	}
	if o.Kernel != "" && len(o.KernelPkgs) > 0 {
		return nil, errors.New("--kernel and --kernel-pkg exclude each other")
	}
	return o, nil
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
		return errors.New("needs root (apt-get, and the tests load eBPF programs)")
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return fmt.Errorf("create cache: %w", err)
	}
	if err := ensureQemu(ctx); err != nil {
		return err
	}

	var kernels []kernel
	if o.Kernel != "" {
		kernels = append(kernels, kernel{Name: filepath.Base(o.Kernel), Vmlinuz: o.Kernel})
	} else {
		pkgs := o.KernelPkgs
		if len(pkgs) == 0 {
			p, err := newestKernelPkg(ctx, defaultKernelPattern)
			if err != nil {
				return err
			}
			pkgs = []string{p}
		}
		for _, p := range pkgs {
			k, err := fetchKernel(ctx, o.CacheDir, p)
			if err != nil {
				return err
			}
			kernels = append(kernels, k)
		}
	}

	work, err := os.MkdirTemp("", "vmtest-")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(work)
	start := time.Now()
	initrd, err := buildInitramfs(ctx, work, o)
	if err != nil {
		return err
	}
	fmt.Printf("vmtest: built %s in %s\n", initrd, time.Since(start).Round(100*time.Millisecond))

	accel := o.Accel
	tryKVM := false // auto mode, KVM not yet proven to run a guest
	if accel == "auto" {
		accel = "tcg"
		if kvmUsable() {
			accel, tryKVM = "kvm", true
		}
	}
	var failed []string
	for _, k := range kernels {
		for _, w := range k.Warnings {
			fmt.Printf("vmtest: %s: warning: %s\n", k.Name, w)
		}
		bc := bootConfig{
			Kernel:  k,
			Initrd:  initrd,
			Accel:   accel,
			MemMiB:  o.MemMiB,
			CPUs:    o.CPUs,
			Timeout: o.Timeout,
			// One log per boot, so a failure is still there after the next.
			LogPath: filepath.Join(o.CacheDir, "console-"+k.Name+"-"+time.Now().Format("20060102-150405")+".log"),
			Verbose: o.Verbose,
		}
		if tryKVM {
			// Under TCG the guest's init starts within seconds; a
			// KVM guest silent for a minute is not running.
			bc.StartTimeout = time.Minute
		}
		res, err := boot(ctx, bc)
		if tryKVM && errors.Is(err, errNotStarted) {
			fmt.Printf("vmtest: %v\nvmtest: falling back to TCG (software emulation)\n", err)
			accel, tryKVM = "tcg", false
			bc.Accel, bc.StartTimeout = accel, 0
			res, err = boot(ctx, bc)
		}
		tryKVM = false
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", k.Name, err))
			continue
		}
		if bad := res.check(o.Modes); len(bad) > 0 {
			failed = append(failed, fmt.Sprintf("%s: %s (console log: %s)", k.Name, strings.Join(bad, "; "), res.LogPath))
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "\n  "))
	}
	return nil
}
