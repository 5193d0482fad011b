package main

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestKVMProbe: where /dev/kvm opens, the probe answers within its bound
// either way and says why it refuses; where it does not, it refuses.
func TestKVMProbe(t *testing.T) {
	err := kvmRunsGuest()
	if _, statErr := os.Stat("/dev/kvm"); statErr != nil && err == nil {
		t.Fatalf("no /dev/kvm (%v), yet a guest ran", statErr)
	}
	t.Logf("KVM runs a guest here: %v (err %v)", err == nil, err)
	if err != nil {
		return
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	start := time.Now()
	err = qemuRunsKVM(context.Background(), 1)
	if took := time.Since(start); took > qemuSmokeTimeout+2*time.Second {
		t.Errorf("the qemu smoke boot took %v, beyond its bound of %v", took, qemuSmokeTimeout)
	}
	t.Logf("qemu's firmware runs under KVM here: %v (err %v)", err == nil, err)
}
