// Package attach is the self-test of 'make vmtest': a test that loads and
// attaches one tiny program per hook family (classic tracepoint, fentry,
// fexit, kprobe, kretprobe) with cilium/ebpf and checks that each fires on
// a loopback TCP exchange. It proves the VM pipeline (kernel, initramfs,
// init, console parsing) independently of the probe package:
//
//	go run ./vmtest --pkg ./vmtest/testdata/attach
//
// It lives under testdata so that 'go test ./...' on the host, whose
// kernel may refuse fentry or lack kprobes, never runs it.
package attach
