// Package bpf holds the probe's eBPF C sources (probe.c, the shared event
// layout volley.h, vmlinux.h from this kernel's BTF; payload.c and
// payload.h, the watch's payload capture, a separate object) and the Go bindings and
// objects bpf2go generates from them. The generated files are committed so
// that a plain 'go build' needs no clang; 'make generate' rebuilds them.
//
// What it promises: ProbeEvent is struct event of volley.h, field for
// field (package probe's TestEventLayout holds its decoder to it, and
// TestKindsMatchHeader its Kind constants to enum event_kind); the
// objects load on kernels with BTF, and every setting a program reads is a
// volatile const set before load.
package bpf
