package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KVM ioctls and constants, from linux/kvm.h (KVMIO is 0xAE; the sizes in
// the _IOR/_IOW numbers are those of the structs below on x86-64).
const (
	kvmCreateVM             = 0xAE01
	kvmGetVCPUMmapSize      = 0xAE04
	kvmCreateVCPU           = 0xAE41
	kvmSetUserMemoryRegion  = 0x4020AE46 // struct kvm_userspace_memory_region, 32 bytes
	kvmRun                  = 0xAE80
	kvmSetRegs              = 0x4090AE82 // struct kvm_regs, 144 bytes
	kvmGetSregs             = 0x8138AE83 // struct kvm_sregs, 312 bytes
	kvmSetSregs             = 0x4138AE84
	kvmExitHLT              = 5
	kvmRunExitReasonOffset  = 8 // struct kvm_run: two u8, six bytes of padding, then exit_reason
	kvmSregsCSBase          = 0 // struct kvm_sregs begins with cs: base (u64), limit (u32), selector (u16)
	kvmSregsCSSelector      = 12
	kvmRegsRIP, kvmRegsFlag = 16, 17 // u64 indexes of rip and rflags in struct kvm_regs
)

// kvmRunTimeout bounds the test guest: it executes one instruction.
const kvmRunTimeout = 5 * time.Second

// kvmUsable says why KVM cannot run a guest here, or nil when it can.
// /dev/kvm can exist, and even create a VM, in a guest whose host does not pass virtualisation
// through (no vmx/svm), where a vCPU then never runs: qemu -accel kvm
// would sit silent until the boot's start timeout. So it runs a guest of
// its own: one page holding HLT, a vCPU in real mode at address 0, and
// KVM_RUN must come back with KVM_EXIT_HLT within kvmRunTimeout.
//
// A guest that runs HLT can still leave qemu's stuck (a nested hypervisor
// that runs real mode but not what qemu's firmware does next), so then
// qemu itself boots its firmware under KVM for at most qemuSmokeTimeout,
// and the firmware must write its banner to the debug port. Either
// failing means TCG at once, where the boot would otherwise wait a
// minute for a guest that never starts.
func kvmUsable(ctx context.Context, cpus int) error {
	if err := kvmRunsGuest(); err != nil {
		return err
	}
	return qemuRunsKVM(ctx, cpus)
}

// qemuSmokeTimeout bounds qemu's firmware under KVM: it writes its banner
// within a fraction of a second where KVM works.
const qemuSmokeTimeout = 5 * time.Second

// qemuRunsKVM boots qemu's firmware alone (no disk, no kernel) under KVM
// and waits for SeaBIOS's banner on the debug console (I/O port 0x402).
func qemuRunsKVM(ctx context.Context, cpus int) error {
	dir, err := os.MkdirTemp("", "vmtest-kvm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log := filepath.Join(dir, "debugcon.log")
	tctx, cancel := context.WithTimeout(ctx, qemuSmokeTimeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "64", "-smp", strconv.Itoa(max(cpus, 1)),
		"-display", "none", "-no-reboot", "-nic", "none", "-serial", "none", "-monitor", "none",
		"-chardev", "file,id=dbg,path="+log, "-device", "isa-debugcon,iobase=0x402,chardev=dbg")
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("qemu under KVM: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cancel()
		<-exited
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, _ := os.ReadFile(log); bytes.Contains(b, []byte("SeaBIOS")) {
			return nil
		}
		select {
		case err := <-exited:
			exited <- err // for the deferred wait
			return fmt.Errorf("qemu under KVM exited before its firmware ran: %v: %s", err, bytes.TrimSpace(out.Bytes()))
		case <-tctx.Done():
			return fmt.Errorf("qemu under KVM: its firmware wrote nothing in %v", qemuSmokeTimeout)
		case <-tick.C:
		}
	}
}

func kvmRunsGuest() error {
	kvm, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(kvm)
	ioctl := func(fd int, req uintptr, arg uintptr) (uintptr, error) {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if errno != 0 {
			return 0, errno
		}
		return r, nil
	}
	vmfd, err := ioctl(kvm, kvmCreateVM, 0)
	if err != nil {
		return fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	vm := int(vmfd)
	defer unix.Close(vm)

	mem, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	defer unix.Munmap(mem)
	mem[0] = 0xF4       // hlt
	var region [32]byte // slot, flags, guest_phys_addr, memory_size, userspace_addr
	binary.LittleEndian.PutUint64(region[16:], 4096)
	binary.LittleEndian.PutUint64(region[24:], uint64(uintptr(unsafe.Pointer(&mem[0]))))
	if _, err := ioctl(vm, kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&region[0]))); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION: %w", err)
	}
	cpufd, err := ioctl(vm, kvmCreateVCPU, 0)
	if err != nil {
		return fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	cpu := int(cpufd)
	defer unix.Close(cpu)
	size, err := ioctl(kvm, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	run, err := unix.Mmap(cpu, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map kvm_run: %w", err)
	}
	defer unix.Munmap(run)
	var sregs [312]byte
	if _, err := ioctl(cpu, kvmGetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	binary.LittleEndian.PutUint64(sregs[kvmSregsCSBase:], 0) // real mode, code at 0
	binary.LittleEndian.PutUint16(sregs[kvmSregsCSSelector:], 0)
	if _, err := ioctl(cpu, kvmSetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	var regs [18]uint64
	regs[kvmRegsRIP], regs[kvmRegsFlag] = 0, 2 // bit 1 of RFLAGS is always set
	if _, err := ioctl(cpu, kvmSetRegs, uintptr(unsafe.Pointer(&regs[0]))); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // a vCPU runs on the thread that calls KVM_RUN
		_, err := ioctl(cpu, kvmRun, 0)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("KVM_RUN: %w", err)
		}
	case <-time.After(kvmRunTimeout):
		// The thread stays in KVM_RUN; the deferred closes drop the VM
		// once the kernel lets go of it.
		return errors.New("KVM_RUN: the test guest did not stop within " + kvmRunTimeout.String())
	}
	if reason := binary.LittleEndian.Uint32(run[kvmRunExitReasonOffset:]); reason != kvmExitHLT {
		return fmt.Errorf("KVM_RUN: exit reason %d, want HLT (%d)", reason, kvmExitHLT)
	}
	return nil
}
