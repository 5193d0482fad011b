// Command vmtest boots stock Debian kernels under qemu and runs the probe's
// kernel tests inside them, once per hook mode and probe level: the
// kernel matrix CI runs after the unit and kernel tests. It exists because
// the development machine's kernel refuses fentry/fexit (EPERM) and has no
// kprobes, while users' kernels have them, and older ones lack the
// tracepoints the probe prefers, so the fallback hooks can only be
// exercised on such kernels.
//
// The matrix (defaultMatrix):
//
//   - Debian 12's 6.1 (the newest linux-image-6.1.0-*-cloud-amd64-unsigned):
//     fentry and kprobe modes, and tracepoint mode, which must SKIP naming
//     the missing sock:* and tcp:tcp_sendmsg_locked tracepoints;
//   - 6.12 from bookworm-backports (linux-image-6.12.*-cloud-amd64-unsigned),
//     which has the sock:* tracepoints (sock_recv_length, sk_data_ready,
//     sock_send_length) but not tcp:tcp_sendmsg_locked (Linux 6.15):
//     tracepoint mode passes with the syscall hooks (send starts at the
//     write's entry) and skips at the default level, naming send_start;
//     fentry and kprobe modes.
//
// Each mode runs at both probe levels, "default" and "syscalls" (the
// subtests of TestKernelHooksAndEvents), and prints one line:
//
//	VMTEST kernel=6.1.0-57-cloud-amd64 mode=fentry level=default PASS (2 passed, 0 failed, 0 skipped, 11.2s)
//
// A mode the kernel's config rules out (CONFIG_KPROBES unset, say) is a
// SKIP decided before booting, naming the option; a run whose tests all
// skipped is a SKIP with the first skip's message, never a PASS. Any FAIL,
// and any run that prints nothing (the guest hung or crashed), makes the
// exit status 1. The whole matrix is printed again at the end, with its
// wall time.
//
// Under software emulation (TCG) the guest's scheduling is the emulator's:
// the init detects it (hostinfo.Virtualization) and sets VOLLEYSCOPE_EMULATED,
// under which the probe test logs its scheduling-rate bounds (switches and
// wakings per round trip, wake-ups outside the sender's write) instead of
// asserting them. What proves the hooks is still asserted: every hook of
// the level attaches in the forced family, and every round trip has each
// of its events exactly once, on the right socket, in order.
//
// Besides the tests, each guest makes a short 'volleyscope run' (ping-pong,
// threads server, 2 clients, 3 s) and prints its results.json on the
// console (gzip, base64, between VMTEST-RESULTS markers, with its
// SHA-256). The host saves it as RESULTS/LABEL.json (default
// /var/cache/volleyscope-vmtest/results/6.1.json, 6.12.json) and shows
// 'volleyscope compare' of the kernels: the hooks each kernel chose, the
// components side by side, and the runs labelled as emulated (meta
// virtualization "qemu-tcg"), with no verdict.
//
// Two more boots (--net, default the 6.12 kernel) give the guest a second
// host's place: a virtio-net NIC whose tap is in a network namespace the
// run makes (vmt-PID, a /30 of 10.213.0.0/16) and always removes, qemu
// running inside it. The guest's init loads the NIC's modules from the
// initramfs (Debian builds virtio_net as a module; the host resolves what
// it depends on from each module's .modinfo), addresses the NIC, starts a
// /volleyscope command on its address and prints VMTEST-READY once that
// answers. The host dials it from the namespace, runs its own volleyscope
// there against it, then writes "vmtest-stop" on the console (qemu's
// stdin): the guest stops the command and powers off. The scenarios
// (netScenarios):
//
//   - run=net-bench: 'serve threads' in the guest, 'bench' on the host;
//     every connection and round trip completes;
//   - run=net-agent: 'agent --server threads' in the guest, 'run --agent'
//     on the host; the join across the two hosts, the clock estimate and
//     the one-way times (agentRun).
//
// TestGuestNetwork runs the same boots from 'go test' (root, qemu and the
// kernel 'make vmtest' cached).
//
// Steps, all as root ('make vmtest'):
//
//  1. install qemu-system-x86 with apt-get if qemu-system-x86_64 is missing;
//  2. find each kernel's package with apt-cache and 'apt-get download' it
//     once into the cache directory, extracting boot/ with 'dpkg-deb -x'.
//     6.1 comes through the machine's apt sources; bookworm-backports
//     through an apt configuration of the cache's own (CACHE/apt: sources,
//     lists and apt cache), so the machine's sources stay as they are.
//     Without a registry the newest kernel already in the cache is booted.
//     The cloud flavour has the serial console, loopback, BTF and the BPF
//     hooks built in, so the initramfs needs no modules;
//  3. build the guest's /init (./vmtest/init), the probe's test binary and
//     volleyscope, all with CGO_ENABLED=0 so they are static;
//  4. per kernel, write a newc cpio archive (gzip) holding them, the
//     guest's config (/vmtest.json) and a /dev/console node;
//  5. boot qemu-system-x86_64 with the kernel and archive, KVM when
//     /dev/kvm works, TCG otherwise (one TCG thread; CPU "max" without
//     CMPXCHG16B), holding the machine-wide kernel-test lock for the boot;
//     stream the serial console to a log file in the cache and print the
//     guest's VMTEST lines.
//
// Usage:
//
//	go run ./vmtest [--kernels 6.1,6.12] [--modes tracepoint,fentry,kprobe]
//	                [--levels default,syscalls] [--kernel-pkg NAME[,NAME…]]
//	                [--volleyscope=false] [--net 6.12|''] [--cache DIR] [--results DIR]
//
// The networked boots alone:
//
//	go run ./vmtest --kernels= --net 6.12
//
// The self-test, which attaches a tiny program per hook family without the
// probe package, is:
//
//	go run ./vmtest --pkg ./vmtest/testdata/attach --run . --volleyscope=false
package main
