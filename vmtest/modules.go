package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// nicModules are the modules a guest needs for qemu's virtio-net-pci NIC.
// Debian's cloud kernels build virtio_net as a module (with net_failover
// and failover under it), and 6.1 also virtio_pci and the virtio core;
// what a kernel has built in is skipped.
var nicModules = []string{"virtio_pci", "virtio_net"}

// module is a kernel module ready for the initramfs: its name and its
// uncompressed object.
type module struct {
	Name string
	Data []byte
}

// modulesDir is where an extracted kernel package keeps its modules.
func modulesDir(k kernel) string {
	return filepath.Join(k.Dir, "lib", "modules", k.Name)
}

// resolveModules returns the named modules of kernel k and those they
// depend on, each after its dependencies, read from the package's
// lib/modules. The package has no modules.dep (depmod writes it when the
// package is installed), so the dependencies come from each module's
// .modinfo "depends=" entry.
func resolveModules(ctx context.Context, k kernel, names []string) ([]module, error) {
	dir := modulesDir(k)
	files := map[string]string{} // module name → path
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name, ok := moduleName(d.Name()); ok && !d.IsDir() {
			files[name] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the modules of %s: %w", k.Name, err)
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if name, ok := moduleName(filepath.Base(sc.Text())); ok {
				builtin[name] = true
			}
		}
	}
	var out []module
	seen := map[string]bool{}
	var add func(name string, chain []string) error
	add = func(name string, chain []string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if seen[name] || builtin[name] {
			return nil
		}
		seen[name] = true
		path, ok := files[name]
		if !ok {
			return fmt.Errorf("kernel %s has no module %s (needed by %s) under %s", k.Name, name, strings.Join(chain, " ← "), dir)
		}
		data, err := readModule(ctx, path)
		if err != nil {
			return err
		}
		deps, err := moduleDepends(data)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		for _, d := range deps {
			if err := add(d, append([]string{name}, chain...)); err != nil {
				return err
			}
		}
		out = append(out, module{Name: name, Data: data})
		return nil
	}
	for _, n := range names {
		if err := add(n, []string{"the guest's NIC"}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// moduleName is the module name of a file name (virtio-rng.ko.xz →
// virtio_rng): the kernel treats - and _ alike in module names.
func moduleName(file string) (string, bool) {
	for _, ext := range []string{".ko", ".ko.xz"} {
		if base, ok := strings.CutSuffix(file, ext); ok {
			return strings.ReplaceAll(base, "-", "_"), true
		}
	}
	return "", false
}

// readModule reads a module, uncompressing an .xz one with xz(1) (Debian
// compresses 6.12's modules; dpkg-deb needs xz anyway), so that the guest
// loads it whatever its kernel's CONFIG_MODULE_DECOMPRESS.
func readModule(ctx context.Context, path string) ([]byte, error) {
	if !strings.HasSuffix(path, ".xz") {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		return b, nil
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "xz", "-dc", path)
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("uncompress %s: %w: %s (install xz-utils)", path, err, strings.TrimSpace(stderr.String()))
	}
	return b, nil
}

// moduleDepends reads the "depends=" entry of a module's .modinfo
// section: NUL-separated key=value strings.
func moduleDepends(obj []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
