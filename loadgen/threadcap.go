package loadgen

import (
	"errors"
	"fmt"
	"runtime"
)

// MaxThreadsPerCPU is the most connections the threads model drives per
// client CPU. Every connection is a thread, and while replies flow most
// of them are runnable at once; the kernel gives each runnable thread a
// slice of about 0.75 ms (EEVDF's base slice) before the next, so a
// thread woken on a CPU with n runnable ones waits up to n slices. At 256
// that is under 200 ms, less than one check of the run loop
// (DefaultCheckEvery): its clock, Ctrl-C and the duration cap still act
// in time, and a reply waits well inside the default timeout. Thousands
// of threads starve the run loop and every other program on those CPUs
// for seconds; the epoll model drives as many connections from one
// thread per CPU.
const MaxThreadsPerCPU = 256

// ErrTooManyThreads is a threads-model run with more connections than its
// client CPUs can carry (MaxThreadsPerCPU).
var ErrTooManyThreads = errors.New("too many connection threads for the client CPUs")

// CheckThreads refuses a threads-model run (ClientThreads, or ClientAuto
// where it picks threads) with more than MaxThreadsPerCPU connections per
// client CPU; Run calls it, and a command line may call it first to say
// so early.
func (o *Options) CheckThreads() error {
	clients := max(o.Clients, 1)
	if o.ClientModel.Resolve(clients) != ClientThreads {
		return nil
	}
	ncpu := len(o.ClientCPUs)
	if ncpu == 0 {
		ncpu = runtime.NumCPU()
	}
	if most := MaxThreadsPerCPU * ncpu; clients > most {
		return fmt.Errorf("--clients %d with --client-model threads: %w (at most %d per client CPU, %d on %d CPU(s)); use --client-model epoll, or give the clients more CPUs (--client-cpus)",
			clients, ErrTooManyThreads, MaxThreadsPerCPU, most, ncpu)
	}
	return nil
}
