package session

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"

	"github.com/volleyscope/volleyscope/internal/affinity"
	"github.com/volleyscope/volleyscope/internal/cpulock"
	"github.com/volleyscope/volleyscope/internal/netns"
	"github.com/volleyscope/volleyscope/internal/serverproc"
)

// cleanLeftovers removes what killed runs left on the machine: a --netns
// run's namespace and veth pair (the --out folder's temporary files are
// removed when it is opened). Every run does it, --netns or not, so that
// nothing stays until the next --netns run.
func cleanLeftovers() error {
	return netns.RemoveStale()
}

// runCPUs are the CPUs a run occupies: the clients' and a started
// server's, every CPU for a side that is not pinned. A running server
// (--addr) adds the CPUs its user pinned it to, if any.
func runCPUs(cfg Config) []int {
	all := func() []int {
		cpus := make([]int, runtime.NumCPU())
		for i := range cpus {
			cpus[i] = i
		}
		return cpus
	}
	cpus := cfg.Load.ClientCPUs
	if len(cpus) == 0 {
		return all()
	}
	switch {
	case cfg.Agent != "": // the server is on the agent's host
	case cfg.Addr == "":
		if len(cfg.ServerCPUs) == 0 {
			return all()
		}
		cpus = append(slices.Clone(cpus), cfg.ServerCPUs...)
	default:
		cpus = append(slices.Clone(cpus), addrServerCPUs(cfg.Addr)...)
	}
	return cpus
}

// claimCPUs removes what killed runs left behind, then holds the run's
// CPUs against other volleyscope runs when cfg.LockCPUs is set
// (cpulock), until teardown; with cfg.WaitCPUs a taken CPU is waited
// for, with a note saying whom for.
func (p *pipeline) claimCPUs(ctx context.Context) error {
	if err := cleanLeftovers(); err != nil {
		p.cb.note("warning: " + err.Error())
	}
	if !p.cfg.LockCPUs {
		return nil
	}
	cpus := runCPUs(p.cfg)
	l, err := cpulock.Acquire(ctx, cpus, false, p.cfg.Command)
	var busy *cpulock.BusyError
	if err != nil && p.cfg.WaitCPUs && errors.As(err, &busy) {
		p.cb.note(fmt.Sprintf("waiting for CPU %d, measured by %s (--wait)", busy.CPU, busy.Holder))
		l, err = cpulock.Acquire(ctx, cpus, true, p.cfg.Command)
	}
	if err != nil {
		return err
	}
	p.undo = append(p.undo, l.Release)
	return nil
}

// addrServerCPUs is where a running server's processes may run (every
// holder of its sockets, serverproc.FindAll); nil when anywhere, or when
// they cannot be found.
func addrServerCPUs(addr string) []int {
	pids, _, err := serverproc.FindAll(addr)
	if err != nil {
		return nil
	}
	return affinity.OfProcesses(pids)
}
