// Package bpf holds the probe's eBPF C sources (probe.c, the shared event
// layout volley.h, vmlinux.h from this kernel's BTF) and the Go bindings and
// objects bpf2go generates from them. The generated files are committed so
// that a plain 'go build' needs no clang; 'make generate' rebuilds them.
package bpf
