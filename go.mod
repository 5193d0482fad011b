module github.com/volleyscope/volleyscope

go 1.26.8

require (
	github.com/HdrHistogram/hdrhistogram-go v1.4.0
	github.com/cilium/ebpf v0.22.0
	github.com/spf13/pflag v1.1.0
	golang.org/x/sys v0.49.0
	gonum.org/v1/gonum v0.17.0
)

tool github.com/cilium/ebpf/cmd/bpf2go
