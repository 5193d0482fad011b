package probe

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Sentinel errors of Check.
var (
	ErrPermission = errors.New("the probe needs root or CAP_BPF+CAP_PERFMON; run 'volleyscope bench' to measure without it")
	ErrNoBTF      = errors.New("the kernel has no BTF (/sys/kernel/btf/vmlinux); the probe needs CONFIG_DEBUG_INFO_BTF; run 'volleyscope bench' to measure without it")
)

// Check says what, if anything, keeps the probe from running here.
func Check() error {
	if !privileged() {
		return ErrPermission
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return ErrNoBTF
	}
	return nil
}

// privileged: root, or the capabilities BPF (39) and PERFMON (38).
func privileged() bool {
	if os.Geteuid() == 0 {
		return true
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	return has(unix.CAP_BPF) && has(unix.CAP_PERFMON)
}

// ensureTracefs mounts tracefs if it is missing: classic tracepoints need
// it (tp_btf and raw tracepoints do not).
func ensureTracefs() error {
	if _, err := os.Stat("/sys/kernel/tracing/events"); err == nil {
		return nil
	}
	if _, err := os.Stat("/sys/kernel/debug/tracing/events"); err == nil {
		return nil
	}
	return unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, "")
}
