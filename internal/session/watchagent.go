package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"

	"github.com/volleyscope/volleyscope/internal/agent"
	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/serverproc"
	"github.com/volleyscope/volleyscope/probe"
)

// A watch across two hosts: the client runs here, the server (a program
// volleyscope did not start) on another host where `volleyscope agent
// --watch-port PORT` (or --watch-pid) runs. The agent follows that
// server only because its own command line says so; the controller
// asks which server it watches (Hello's Info), follows the client here,
// and reads both probes through twoHosts, as run --agent does: the
// client's round trips come from its traffic (watchTrips), the agent's
// events are mapped onto this host's clock, and the split is run's.

// watches says whether the agent was told to watch a running server.
func (c AgentConfig) watches() bool { return c.WatchPID != 0 || c.WatchPort != 0 }

// watch adds the server the agent's --watch-port or --watch-pid names.
func (h *AgentHost) watch() error {
	port, pids, err := watchedListener(h.cfg.WatchPID, h.cfg.WatchPort, "--watch-pid", "--watch-port")
	if err != nil {
		return err
	}
	host := h.cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	label := fmt.Sprintf("watched: port %d (%s)", port, processName(pids[0]))
	st := &serverStage{addr: net.JoinHostPort(host, strconv.Itoa(int(port))), port: port, pids: pids, label: label}
	h.servers = append(h.servers, &agentServer{name: label, stage: st, watched: true})
	h.note(fmt.Sprintf("watching the server on port %d (%s): %s", port, processName(pids[0]), pidText(pids)))
	return nil
}

// watchedListener resolves a running server named by its process, its
// listening port, or both (which must agree), as watch's --server-pid
// and --server-port are resolved: the process exists in our network
// namespace, the port has a listener, and the processes holding its
// sockets are found. Errors are *FlagError naming pidFlag or portFlag.
func watchedListener(pid, port int, pidFlag, portFlag string) (uint16, []int, error) {
	if port < 0 || port > 65535 {
		return 0, nil, flagErr(portFlag, fmt.Errorf("port %d is not in 1-65535", port))
	}
	if pid != 0 {
		if err := checkWatchPID(pidFlag, pid); err != nil {
			return 0, nil, err
		}
	}
	p := uint16(port)
	if p == 0 {
		ports, err := serverproc.ListeningPorts(pid)
		if err != nil {
			return 0, nil, flagErr(pidFlag, err)
		}
		slices.Sort(ports)
		switch len(ports) {
		case 0:
			return 0, nil, flagErr(pidFlag, fmt.Errorf("process %d listens on no TCP port; give the port with %s", pid, portFlag))
		case 1:
			p = ports[0]
		default:
			return 0, nil, flagErr(pidFlag, fmt.Errorf("process %d listens on ports %s; choose one with %s", pid, portList(ports), portFlag))
		}
	}
	pids, listening := serverproc.Holders(0, p)
	switch {
	case !listening:
		return 0, nil, flagErr(portFlag, fmt.Errorf("nothing listens on port %d here; start the server first, or check the port (ss -ltnp)", p))
	case pid != 0 && !slices.Contains(pids, pid):
		return 0, nil, flagErr(pidFlag, fmt.Errorf("process %d holds no socket of port %d (held by %s)", pid, p, pidText(pids)))
	case len(pids) == 0:
		return 0, nil, flagErr(portFlag, fmt.Errorf("no process visible to us holds port %d's sockets; run as root, in the server's PID namespace", p))
	}
	return p, pids, nil
}

// checkWatchPID checks a process a watch follows: it runs, and in our
// network namespace, whose ports are the ones the probe is given.
func checkWatchPID(flag string, pid int) error {
	if pid <= 0 {
		return flagErr(flag, fmt.Errorf("pid %d: want a process id", pid))
	}
	if !processAlive(pid) {
		return flagErr(flag, fmt.Errorf("no process %d: is it running? (ps -p %d)", pid, pid))
	}
	ourNet, _ := os.Readlink("/proc/self/ns/net")
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return flagErr(flag, fmt.Errorf("process %d: read its network namespace: %w; run as root", pid, err))
	}
	if ns != ourNet {
		return flagErr(flag, fmt.Errorf("process %d is in another network namespace (%s, ours %s): its ports are not ours; run volleyscope in its namespace (nsenter -t %d -n volleyscope watch …)", pid, ns, ourNet, pid))
	}
	return nil
}

// resolveAgentWatch is resolveWatch for a server behind an agent: the
// clients are this host's, the server is the agent's to name (its port
// is learnt from the agent: dialWatchAgent).
func resolveAgentWatch(wc WatchConfig) (watchTarget, error) {
	var t watchTarget
	host, port, err := net.SplitHostPort(wc.Agent)
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
		return t, flagErr("--agent", fmt.Errorf("%q: want HOST:PORT, the agent's --listen address", wc.Agent))
	}
	switch {
	case wc.ServerPID != 0:
		return t, flagErr("--server-pid", errors.New("with --agent the server runs on the agent's host: the agent's own --watch-pid or --watch-port names it"))
	case wc.ServerPort < 0 || wc.ServerPort > 65535:
		return t, flagErr("--server-port", fmt.Errorf("port %d is not in 1-65535", wc.ServerPort))
	case len(wc.ClientPIDs) == 0:
		return t, flagErr("--client-pid", errors.New("watch --agent follows a client on this host: give --client-pid (for the server's side alone, run the watch on the server's host)"))
	case wc.Duration < 0:
		return t, flagErr("--duration", fmt.Errorf("%v is negative; give a duration, or none to watch until Ctrl-C", wc.Duration))
	}
	if err := probe.Check(); err != nil {
		return t, flagErr("--client-pid", fmt.Errorf("watching programs: %w", err))
	}
	for _, pid := range wc.ClientPIDs {
		if err := checkWatchPID("--client-pid", pid); err != nil {
			return t, err
		}
	}
	t.port = uint16(wc.ServerPort)
	return t, nil
}

// dialWatchAgent connects to the watch's agent and takes the server it
// watches: the one on --server-port if given, else its only one. It
// fills in t's port and label; the server's processes stay the agent's.
func (p *pipeline) dialWatchAgent(ctx context.Context, wc WatchConfig, t *watchTarget) error {
	c, err := agent.Dial(ctx, wc.Agent, wc.AgentCred)
	if err != nil {
		return err
	}
	p.undo = append(p.undo, func() { c.Close() })
	info := c.Info()
	var watched []agent.ServerInfo
	var ports []uint16
	for _, s := range info.Servers {
		if s.Watched && (t.port == 0 || s.Port == t.port) {
			watched = append(watched, s)
		}
		if s.Watched {
			ports = append(ports, s.Port)
		}
	}
	switch {
	case len(ports) == 0:
		return flagErr("--agent", fmt.Errorf("agent %s watches no server: start it with --watch-port PORT or --watch-pid PID (it follows a running server only if its own command line says so)", wc.Agent))
	case len(watched) == 0:
		return flagErr("--server-port", fmt.Errorf("agent %s watches port %s, not %d", wc.Agent, portList(ports), t.port))
	case len(watched) > 1:
		return flagErr("--server-port", fmt.Errorf("agent %s watches ports %s: choose one with --server-port", wc.Agent, portList(ports)))
	}
	si := watched[0]
	p.remote = &remoteServer{addr: wc.Agent, client: c, server: si}
	t.port, t.label = si.Port, fmt.Sprintf("%s on %s", si.Name, wc.Agent)
	p.cb.note(fmt.Sprintf("agent %s: volleyscope %s on %s (kernel %s, %d CPUs); %s at %s, %s",
		wc.Agent, info.Version, info.Host.CPUModel, info.Host.Kernel, info.Host.NCPU, si.Name, si.Addr, pidText(si.PIDs)))
	return nil
}

// attachWatchAgent starts the agent's probe on the watched server and
// joins it with this host's (local: the probe on the clients, with the
// payload capture where it loaded) as run --agent does
// (attachRemote). A lost agent ends the watch through abort.
func (p *pipeline) attachWatchAgent(ctx context.Context, local EventSource) (EventSource, error) {
	r := p.remote
	var err error
	r.stream, err = r.client.Events(context.WithoutCancel(ctx), agent.EventsRequest{Server: r.server.Name, Watch: true, Syscalls: p.cfg.Syscalls, ProbeMode: p.cfg.ProbeMode})
	if err != nil {
		return nil, err
	}
	p.undo = append(p.undo, r.stream.Close)
	st := r.stream.Started()
	p.cb.note(fmt.Sprintf("probe on the server (agent %s): %s", r.addr, st.Summary))
	for _, n := range st.Notices {
		p.cb.note(n)
	}
	r.source = newAgentSource("agent "+r.addr, r.stream, r.client)
	r.hosts = newTwoHosts(local, r.source, r.server.Port)
	r.hosts.lost = func(err error) {
		r.lost.Store(fmt.Errorf("%w; the watch stopped there (what was measured before is kept)", err))
		p.abort(err)
	}
	r.oneWay = newOneWay(r.hosts.halfWidth)
	p.cost = newRemoteCost(func() (proccost.Sample, error) { return r.source.costSample("cost") }, -1)
	return r.hosts, nil
}
