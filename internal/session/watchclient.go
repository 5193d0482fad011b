package session

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/serverproc"
)

// clientAlone settles a watch of clients without --server-pid: the
// server's port (wc.ServerPort, or the one port the clients' established
// connections go to), and whether the server is on another host. It is
// on this host when a connection to that port has its peer socket in our
// namespace, or when none is open yet and the port listens here: the
// watch is then today's, of both sides, on that port (alone false). When
// every connection to the port has its peer elsewhere (another host, or
// another namespace behind a veth or a NAT), the client's side alone is
// watched (alone true, t filled). Errors are *FlagError.
func clientAlone(wc WatchConfig) (t watchTarget, alone bool, err error) {
	port := uint16(wc.ServerPort)
	var conns []serverproc.Conn
	for _, pid := range wc.ClientPIDs {
		c, err := serverproc.Connections(pid)
		if err != nil {
			return t, false, flagErr("--client-pid", err)
		}
		conns = append(conns, c...)
	}
	who := clientText(wc.ClientPIDs)
	if port == 0 {
		var ports []uint16
		for _, c := range conns {
			if !slices.Contains(ports, c.Remote.Port()) {
				ports = append(ports, c.Remote.Port())
			}
		}
		slices.Sort(ports)
		switch len(ports) {
		case 0:
			return t, false, flagErr("--server-port", fmt.Errorf("%s holds no established TCP connection to follow: start its traffic first, or name the server with --server-port PORT or --server-pid PID", who))
		case 1:
			port = ports[0]
		default:
			return t, false, flagErr("--server-port", fmt.Errorf("%s has connections to ports %s: choose the server's with --server-port", who, portList(ports)))
		}
	}
	t.port = port
	var remotes []string
	for _, c := range conns {
		if c.Remote.Port() != port {
			continue
		}
		if c.PeerHere {
			return t, false, nil // the server is here: both sides
		}
		if a := c.Remote.String(); !slices.Contains(remotes, a) {
			remotes = append(remotes, a)
		}
	}
	if len(remotes) == 0 {
		if _, listening := serverproc.Holders(0, port); listening {
			return t, false, nil // the clients have not connected yet
		}
		return t, false, flagErr("--server-port", fmt.Errorf("nothing listens on port %d here, and %s holds no connection to port %d; start the client's traffic first, or check the port (ss -tnp)", port, who, port))
	}
	slices.Sort(remotes)
	t.remotes = remotes
	t.label = fmt.Sprintf("watched: %s → %s", who, strings.Join(remotes, ", "))
	return t, true, nil
}

// clientText names the watched clients: "client pid N (comm)" or
// "clients pids N and M".
func clientText(pids []int) string {
	if len(pids) == 1 {
		return fmt.Sprintf("client pid %d (%s)", pids[0], processName(pids[0]))
	}
	return "clients " + pidText(pids)
}

// errNoServer is the watch given neither side.
var errNoServer = errors.New("watch needs the server or a client: give --server-port PORT or --server-pid PID, or --client-pid PID alone for a client whose server is on another host")

// beyondBounds counts, over a watch of the client's side alone, which
// bounds each split round trip's beyond_host took (splitClient): the
// packet hooks', or the send's return and the data ready.
type beyondBounds struct {
	device, stack atomic.Int64
}

// add counts one round trip from the join (any goroutine).
func (c *beyondBounds) add(rt *breakdown.RoundTrip) {
	switch {
	case !rt.Joined:
	case rt.Xmit[0] != 0:
		c.device.Add(1)
	default:
		c.stack.Add(1)
	}
}

// parts says in the summary which bounds beyond_host took.
func (c *beyondBounds) parts(p *report.Parts) {
	d, s := c.device.Load(), c.stack.Load()
	if d+s == 0 {
		return
	}
	msg := fmt.Sprintf("beyond_host: %d of %d round trips split from the request's last segment handed to the device to the start of receive processing of the reply (net_dev_start_xmit, netif_receive_skb)", d, d+s)
	if s > 0 {
		msg += fmt.Sprintf("; %d from the client's send returning to the reply's data ready (the packet hooks did not see their segments: their client_net runs to the send's return, and beyond_host holds the rest of the stack's time)", s)
	}
	p.Warnings = append(p.Warnings, msg)
}
