package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/testenv"
)

// TestGuestNetwork boots the --net kernel (6.12) with a NIC on a tap in a
// namespace the test makes, once per netScenario: a server in the guest
// driven by the host's bench (every round trip through), and an agent in
// the guest under the host's 'run --agent' (the join across two kernels
// and clocks, agentRun). Nothing may be left behind (namespace, tap,
// qemu). It uses the kernel 'make vmtest' keeps in its cache and
// downloads nothing.
func TestGuestNetwork(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed: apt-get install qemu-system-x86 ('make vmtest' does)")
	}
	k := cachedNetKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), netBootTimeout+stopGrace+time.Minute)
	defer cancel()
	work := t.TempDir()
	bins, err := buildBinaries(ctx, work, &options{Net: defaultNet}, false)
	if err != nil {
		t.Fatal(err)
	}
	accel := "tcg"
	if kvmUsable(ctx, 2) == nil {
		accel = "kvm"
	}
	for _, sc := range netScenarios {
		t.Run(sc.What, func(t *testing.T) {
			nc := netBootConfig{
				Kernel: k, Volleyscope: bins.Volleyscope, Init: bins.Init, Work: work, Timeout: netBootTimeout,
				Boot: bootConfig{Accel: accel, MemMiB: 1024, CPUs: 2, LogPath: filepath.Join(work, "console.log")},
			}
			v, res := netBoot(ctx, nc, sc)
			if res != nil {
				t.Logf("qemu ran %s", res.Elapsed.Round(100*time.Millisecond))
			}
			if v.Result == "SKIP" {
				t.Skip(v.Detail)
			}
			if v.Result != "PASS" {
				if b, err := os.ReadFile(nc.Boot.LogPath); err == nil {
					t.Logf("console:\n%s", lastLines(b, 40))
				}
				t.Fatalf("%s", v)
			}
			t.Logf("%s", v)
			if left := leftovers(); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// cachedNetKernel is the --net kernel as 'make vmtest' left it in the
// cache, with its modules (re-extracted from the cached package when the
// extraction lacks them), or a skip saying how to get it.
func cachedNetKernel(t *testing.T) kernel {
	t.Helper()
	var spec kernelSpec
	for _, s := range defaultMatrix {
		if s.Label == defaultNet {
			spec = s
		}
	}
	pkg, ok := cachedKernelPkg(defaultCache, spec.Pattern)
	if !ok {
		t.Skipf("no %s kernel package in %s: 'make vmtest' downloads it", defaultNet, defaultCache)
	}
	debs, _ := filepath.Glob(filepath.Join(defaultCache, pkg+"_*.deb"))
	k, err := findKernel(filepath.Join(defaultCache, pkg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(modulesDir(k)); err != nil && len(debs) == 0 {
		t.Skipf("%s in %s has no modules and its package is not cached: run 'make vmtest'", pkg, defaultCache)
	}
	k, err = fetchKernel(context.Background(), defaultCache, aptEnv{}, pkg, true)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// leftovers are this process's namespace and any qemu it started.
func leftovers() []string {
	var left []string
	if nsExists(netNSPrefix + strconv.Itoa(os.Getpid())) {
		left = append(left, "namespace "+netNSPrefix+strconv.Itoa(os.Getpid()))
	}
	if out, err := exec.Command("pgrep", "-P", strconv.Itoa(os.Getpid()), "qemu").Output(); err == nil && len(out) > 0 {
		left = append(left, "qemu "+string(out))
	}
	return left
}
