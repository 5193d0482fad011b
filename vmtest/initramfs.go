package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// guestConfig is written to /vmtest.json for the guest's init
// (vmtest/init's config: the JSON names are the contract).
type guestConfig struct {
	Runs        []guestRun `json:"runs"`
	TestTimeout string     `json:"test_timeout"`
	Env         []string   `json:"env,omitempty"`
	// Volleyscope are the arguments of a /volleyscope run whose
	// results.json the guest prints back; none: no such run.
	Volleyscope []string `json:"volleyscope,omitempty"`
	// ResultsFile is where that run writes results.json.
	ResultsFile string `json:"results_file,omitempty"`
	// Net brings up the guest's NIC; nil: loopback only.
	Net *guestNetConfig `json:"net,omitempty"`
	// Serve is a /volleyscope command run last, for the host to reach
	// through Net, until the host writes stopLine on the console.
	Serve *guestServe `json:"serve,omitempty"`
}

// guestNetConfig is vmtest/init's netConfig.
type guestNetConfig struct {
	// Modules are initramfs paths of the NIC's modules, each after those
	// it depends on.
	Modules []string `json:"modules"`
	Addr    string   `json:"addr"` // IPv4/prefix of the guest's NIC
}

// guestServe is vmtest/init's serveConfig.
type guestServe struct {
	Args    []string `json:"args"`    // of /volleyscope
	Ready   string   `json:"ready"`   // host:port that answers once it serves
	Timeout string   `json:"timeout"` // bound of the whole command (Go duration)
}

// stopLine, written on the guest's console, makes its init stop the Serve
// command and power off (vmtest/init's stopLine).
const stopLine = "vmtest-stop"

// moduleDir is where an initramfs keeps the kernel modules it carries, as
// NAME.ko.
const moduleDir = "lib/modules"

// modulePath is a module's path in the guest.
func modulePath(m module) string { return "/" + moduleDir + "/" + m.Name + ".ko" }

// guestRun is one run of the test binary: a hook mode, a probe level and
// the -test.run pattern that selects that level's tests.
type guestRun struct {
	Mode  string `json:"mode"`
	Level string `json:"level,omitempty"`
	Run   string `json:"run"`
}

// guestVolleyscope is the run each guest makes besides the tests: ping-pong
// against a built-in server, two clients, a few seconds (--ci 0 --p99-ci 0:
// for the whole --duration, whatever the intervals; under TCG they are the
// emulator's anyway). Its results.json comes back to the host.
var guestVolleyscope = []string{"run", "--server", "threads", "--clients", "2", "--proto", "pingpong",
	"--duration", "3s", "--warmup", "1s", "--ci", "0", "--p99-ci", "0", "--out", "/tmp/vs"}

// guestResults is where guestVolleyscope's results.json is.
const guestResults = "/tmp/vs/results.json"

// binaries are the static programs the initramfs holds, built once per
// run and shared by every kernel's archive.
type binaries struct {
	Init, Test, Volleyscope string // Volleyscope "" when not wanted
}

// buildBinaries compiles the guest's /init, the test binary (when tests
// run) and volleyscope (when a guest runs it), all static (CGO_ENABLED=0:
// the initramfs has no C library).
func buildBinaries(ctx context.Context, work string, o *options, tests bool) (binaries, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return binaries{}, err
	}
	b := binaries{Init: filepath.Join(work, "init")}
	if err := goCmd(ctx, root, "build", "-trimpath", "-o", b.Init, "./vmtest/init"); err != nil {
		return b, fmt.Errorf("build guest init: %w", err)
	}
	if tests {
		b.Test = filepath.Join(work, "probe.test")
		if err := goCmd(ctx, root, "test", "-c", "-o", b.Test, o.Pkg); err != nil {
			return b, fmt.Errorf("build test binary of %s: %w", o.Pkg, err)
		}
		if _, err := os.Stat(b.Test); err != nil {
			// 'go test -c' writes nothing for a package without tests.
			return b, fmt.Errorf("build test binary of %s: %w", o.Pkg, err)
		}
	}
	if o.Volleyscope || o.Net != "" {
		b.Volleyscope = filepath.Join(work, "volleyscope")
		if err := goCmd(ctx, root, "build", "-trimpath", "-o", b.Volleyscope, "./cmd/volleyscope"); err != nil {
			return b, fmt.Errorf("build volleyscope: %w", err)
		}
	}
	return b, nil
}

// buildInitramfs packs the binaries, the guest's config and the kernel
// modules into a newc cpio archive, gzip-compressed, at path. A binary
// whose path is "" is left out.
func buildInitramfs(path string, bins binaries, gc guestConfig, mods ...module) error {
	cfg, err := json.Marshal(gc)
	if err != nil {
		return fmt.Errorf("encode guest config: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	// BestSpeed: the archive is rebuilt every run and unpacked once; the
	// kernel's gunzip does not care about the level.
	gz, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return err
	}
	w := newCpioWriter(gz)
	entries := []func() error{
		func() error { return w.dir("dev", 0o755) },
		// The kernel opens /dev/console as init's stdin, stdout and stderr
		// before running it; without the node init has no output.
		func() error { return w.charDev("dev/console", 0o600, 5, 1) },
		func() error { return w.dir("proc", 0o755) },
		func() error { return w.dir("sys", 0o755) },
		func() error { return w.dir("tmp", 0o1777) },
		func() error { return w.file("vmtest.json", 0o644, cfg) },
		func() error { return w.fileFrom("init", 0o755, bins.Init) },
		func() error {
			if bins.Test == "" {
				return nil
			}
			return w.fileFrom("probe.test", 0o755, bins.Test)
		},
		func() error {
			if bins.Volleyscope == "" {
				return nil
			}
			return w.fileFrom("volleyscope", 0o755, bins.Volleyscope)
		},
	}
	if len(mods) > 0 {
		entries = append(entries,
			func() error { return w.dir("lib", 0o755) },
			func() error { return w.dir(moduleDir, 0o755) })
	}
	for _, m := range mods {
		entries = append(entries, func() error { return w.file(modulePath(m)[1:], 0o644, m.Data) })
	}
	entries = append(entries, w.close)
	for _, e := range entries {
		if err := e(); err != nil {
			return fmt.Errorf("write initramfs: %w", err)
		}
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return nil
}

// moduleRoot is the directory of the main module's go.mod, so that the
// command works from any directory inside the repository.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find module root: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("find module root: not inside the volleyscope module")
	}
	return filepath.Dir(gomod), nil
}

// goTool honours $GO like the Makefile does.
func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// goCmd runs the go tool with CGO_ENABLED=0: the initramfs has no C
// library, so every binary in it must be static.
func goCmd(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// cpioWriter writes the "newc" cpio format, the one the kernel unpacks
// into its initial rootfs (Documentation/driver-api/early-userspace/
// buffer-format.rst): per entry a 110-byte ASCII header of "070701" and
// thirteen 8-digit hex fields, the NUL-terminated name, padding to a
// multiple of 4, the data, padding to a multiple of 4; the archive ends
// with an entry named "TRAILER!!!".
type cpioWriter struct {
	w   io.Writer
	ino uint32
}

func newCpioWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w, ino: 1} }

// File type bits of st_mode (linux/stat.h).
const (
	modeDir  = 0o040000
	modeReg  = 0o100000
	modeChar = 0o020000
)

func (c *cpioWriter) header(name string, mode uint32, size int, rdevMajor, rdevMinor uint32) error {
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.ino++
	if _, err := io.WriteString(c.w, hdr+name+"\x00"); err != nil {
		return err
	}
	return c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) pad(n int) error {
	if r := n % 4; r != 0 {
		_, err := c.w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}

func (c *cpioWriter) dir(name string, perm uint32) error {
	return c.header(name, modeDir|perm, 0, 0, 0)
}

func (c *cpioWriter) charDev(name string, perm, major, minor uint32) error {
	return c.header(name, modeChar|perm, 0, major, minor)
}

func (c *cpioWriter) file(name string, perm uint32, data []byte) error {
	if err := c.header(name, modeReg|perm, len(data), 0, 0); err != nil {
		return err
	}
	if _, err := c.w.Write(data); err != nil {
		return err
	}
	return c.pad(len(data))
}

func (c *cpioWriter) fileFrom(name string, perm uint32, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return c.file(name, perm, data)
}

func (c *cpioWriter) close() error {
	return c.header("TRAILER!!!", 0, 0, 0, 0)
}
