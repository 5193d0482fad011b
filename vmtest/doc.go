// Command vmtest boots a stock Debian kernel under qemu and runs the probe's
// kernel tests inside it, once per hook mode. It exists because the
// development machine's kernel refuses fentry/fexit (EPERM) and has no
// kprobes, while users' kernels (Debian 12's 6.1, for one) have both and
// lack the sock:* tracepoints the probe prefers, so the fallback hooks can
// only be exercised on such a kernel.
//
// Steps, all as root ('make vmtest'):
//
//  1. install qemu-system-x86 with apt-get if qemu-system-x86_64 is missing;
//  2. 'apt-get download' a linux-image-*-cloud-amd64-unsigned package (the
//     newest 6.1 one by default) into the cache directory and extract
//     boot/vmlinuz-* with 'dpkg-deb -x'. The cloud flavour has the serial
//     console, loopback, BTF (CONFIG_DEBUG_INFO_BTF=y) and the BPF hooks
//     built in, so the initramfs needs no modules and no module loader;
//  3. build the test binary ('go test -c', CGO_ENABLED=0 so it is static)
//     and the guest's /init (./vmtest/init);
//  4. write a newc cpio archive (gzip-compressed) holding /init,
//     /probe.test, /vmtest.json and a /dev/console node;
//  5. boot qemu-system-x86_64 with the kernel and archive, KVM when
//     /dev/kvm works, TCG otherwise; stream the serial console to a log
//     file and print the guest's "VMTEST kernel=… mode=… PASS|FAIL|SKIP"
//     lines.
//
// The exit status is non-zero when a mode fails, when a mode reports
// nothing (the guest hung, crashed or timed out), or when no VMTEST line
// appears at all.
//
// Usage:
//
//	go run ./vmtest [--kernel-pkg NAME[,NAME…]] [--modes tracepoint,fentry,kprobe]
//	                [--run 'TestKernel|TestProbe'] [--pkg ./probe] [--timeout 15m]
//
// The self-test, which attaches a tiny program per hook family without the
// probe package, is:
//
//	go run ./vmtest --pkg ./vmtest/testdata/attach
package main
