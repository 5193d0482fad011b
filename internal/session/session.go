package session

import (
	"runtime"
	"time"

	"github.com/volleyscope/volleyscope/internal/agent"
	"github.com/volleyscope/volleyscope/loadgen"
)

// DefaultServer is the built-in server a run starts when none is named:
// blocking I/O on a thread per connection, whose user space does the
// least of the seven, so that the kernel's part of a round trip stands
// out, and whose latency distribution is the narrowest of them, so that
// the stopping rule's targets are met soonest.
const DefaultServer = "threads"

// Config is one measurement. The zero value runs the default server with
// one client and no probe.
type Config struct {
	Server     string        // a server spec (SpecSyntax); default DefaultServer
	Self       string        // the volleyscope binary that runs built-in servers; default this executable
	Addr       string        // a running server host:port; overrides Server
	ServerCPUs []int         // CPUs for the server process; nil: not pinned
	ServerPort int           // port for a started server; 0 picks a free one
	ServerSpin time.Duration // busy-work per request in built-in servers
	Load       loadgen.Options
	Probe      bool   // attach the eBPF probe and join the breakdown
	ProbeMode  string // hook family: auto, tracepoint, fentry, kprobe
	Syscalls   bool   // add the per-syscall latency table
	Record     string // save the raw event stream and client records here
	// NetNS runs a started server in a network namespace of its own,
	// joined to ours by a veth pair that the run creates and removes.
	NetNS bool
	Netem string // netem arguments for that veth pair (e.g. "delay 100us"); needs NetNS
	Out   string // write results.json, requests.csv and latency.hlog into this directory
	// Verbose adds detail to the notices: every probe hook, by event.
	Verbose bool
	// LockCPUs holds the CPUs the run pins (client and server) against
	// other volleyscope runs for as long as it runs (internal/cpulock):
	// a run that finds one taken is refused, or with WaitCPUs waits.
	// Command is the command line recorded for such a run to name.
	LockCPUs, WaitCPUs bool
	Command            string
	// Agent is an agent's address (HOST:PORT): the server is on its host
	// and the agent runs the probe there (run --agent); AgentServer names
	// which of its servers (default: its only one), and AgentCred is how
	// the two trust each other, and how load agents are dialled.
	Agent       string
	AgentServer string
	AgentCred   agent.Credentials
	// LoadAgents run every client connection on other hosts, split among
	// them (--load-agent HOST:PORT, `volleyscope agent --load-to`), none
	// on this one; their round trips are merged here (agent.RunLoad).
	// The probe cannot follow clients on other hosts: a run with load
	// agents has no breakdown.
	LoadAgents []string
	// ServerHost is the address a started built-in server listens on
	// (--server-host), where the load agents reach it; default
	// 127.0.0.1.
	ServerHost string
}

// DefaultCPUs picks a client/server placement: on a machine with two or
// more CPUs the server gets CPU 0 and the clients the others, the layout
// whose cross-CPU wake-ups a breakdown is most often asked about.
func DefaultCPUs() (client, server []int) {
	n := runtime.NumCPU()
	if n < 2 {
		return nil, nil
	}
	for c := 1; c < n; c++ {
		client = append(client, c)
	}
	return client, []int{0}
}

// withServer is cfg loading the server spec names: on this host, or,
// with an agent, the agent's server of that name.
func (cfg Config) withServer(spec string) Config {
	if cfg.Agent != "" {
		cfg.AgentServer = spec
	} else {
		cfg.Server = spec
	}
	return cfg
}
