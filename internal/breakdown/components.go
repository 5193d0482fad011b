package breakdown

// Component is one part of a round trip.
type Component int

// The components, in the order of Table. The first ten are the gaps
// between consecutive boundaries, in the order they happen on the
// critical path, less the time the side on the critical path spent
// runnable but off its CPU and the time interrupts took from it on its
// CPU; the next four are those times, per side. The last six split
// client_net and server_net at their data segment's hand-off to a device
// and the start of its receive processing (join.go, splitNet); the
// *_net gap keeps what they do not split. BeyondHost is the rest of a
// round trip seen from the client's side alone (a watch whose server is on
// another host, splitClient); it is 0 in every other split. Each group
// was added after the one before, so the columns of requests.csv keep
// their places.
const (
	ClientUser Component = iota
	ClientNet
	ServerWakeup
	ServerQueue
	ServerKernelRecv
	ServerUser
	ServerNet
	ClientWakeup
	ClientKernelRecv
	ClientUserRecv
	ClientPreempted
	ServerPreempted
	ClientIrq
	ServerIrq
	ClientNetTx
	ClientNetDev
	ClientNetRx
	ServerNetTx
	ServerNetDev
	ServerNetRx
	BeyondHost
	NumComponents
)

// NumBounds is the number of boundaries b0 … b10; the components before
// ClientPreempted are the gaps between consecutive ones.
const NumBounds = int(ClientPreempted) + 1

// ComponentInfo is what every part of volleyscope says of a component.
type ComponentInfo struct {
	Name string // in results.json, requests.csv, the terminal and the page
	// Side is whose time it is: "client" or "server". The *_net
	// components are charged to the sender, whose send syscall runs the
	// receiver's network stack on loopback. "remote" is neither side's
	// on this host: the other host's time and the network's.
	Side string
	// Color is its colour on the report page: blues and greens for the
	// client's side, warm colours for the server's, greys and browns for
	// the time each side was preempted, paler ones for the time
	// interrupts took.
	Color   string
	Meaning string // from which boundary to which, in one line
}

// Table is every component, in Component order: the one list the join,
// the renderers and the README's component table follow (a test holds
// the README to it).
var Table = [NumComponents]ComponentInfo{
	ClientUser:       {"client_user", "client", "#1f77b4", "t0 → the client enters the send syscall"},
	ClientNet:        {"client_net", "client", "#9ecae1", "send entry → the request's last data ready on the server's socket, where the packet hooks did not split it into client_net_tx, _dev and _rx (the client's side alone: → the send returns)"},
	ServerWakeup:     {"server_wakeup", "server", "#ff7f0e", "data ready → the server thread on CPU (0 if it was running)"},
	ServerQueue:      {"server_queue", "server", "#fdd0a2", "on CPU → the server starts the receive that completes the request"},
	ServerKernelRecv: {"server_kernel_recv", "server", "#d62728", "start of the receive → it returns to userspace"},
	ServerUser:       {"server_user", "server", "#ff9896", "receive returned → the server enters the send of the reply's last piece (earlier pieces included)"},
	ServerNet:        {"server_net", "server", "#9467bd", "that send's entry → its data ready on the client's socket, where the packet hooks did not split it into server_net_tx, _dev and _rx"},
	ClientWakeup:     {"client_wakeup", "client", "#2ca02c", "data ready → the client thread on CPU (0 if it was running)"},
	ClientKernelRecv: {"client_kernel_recv", "client", "#98df8a", "on CPU → the client's read of the reply's last piece returns"},
	ClientUserRecv:   {"client_user_recv", "client", "#17becf", "receive returned → t1"},
	ClientPreempted:  {"client_preempted", "client", "#7f7f7f", "the client thread preempted (runnable, off CPU) in client_user, client_net, client_kernel_recv or client_user_recv"},
	ServerPreempted:  {"server_preempted", "server", "#8c564b", "the server thread preempted in server_queue, server_kernel_recv, server_user or server_net"},
	ClientIrq:        {"client_irq", "client", "#c7c7c7", "hard IRQs and softirqs on the client thread's CPU while it ran, in the components client_preempted is carved from"},
	ServerIrq:        {"server_irq", "server", "#c49c94", "the same for the server thread, in those of server_preempted"},
	ClientNetTx:      {"client_net_tx", "client", "#6baed6", "send entry → the request's last segment handed to the device (the client's TCP/IP stack and qdisc)"},
	ClientNetDev:     {"client_net_dev", "client", "#c6dbef", "handed to the device → the server's side starts receiving it (loopback, veth: the hand-off to the receive softirq; a NIC: the wire)"},
	ClientNetRx:      {"client_net_rx", "client", "#4292c6", "receive processing starts → data ready on the server's socket (the server's IP and TCP)"},
	ServerNetTx:      {"server_net_tx", "server", "#807dba", "the reply's send entry → its last segment handed to the device"},
	ServerNetDev:     {"server_net_dev", "server", "#bcbddc", "handed to the device → the client's side starts receiving it"},
	ServerNetRx:      {"server_net_rx", "server", "#6a51a3", "receive processing starts → data ready on the client's socket"},
	BeyondHost:       {"beyond_host", "remote", "#e7ba52", "the client's side alone (its server on another host): the request's last segment handed to the device → receive processing of the reply's last segment starts; without those packet hooks, the client's send returns → the reply's data ready"},
}

// netSplit says whether c is a network gap (client_net, server_net) or
// one of its parts: the gap, the direction (0 the request, 1 the reply)
// and which part (0 sender stack, 1 device, 2 receiver stack; -1 the gap
// itself).
func netSplit(c Component) (gap Component, dir, part int, ok bool) {
	switch c {
	case ClientNet:
		return ClientNet, 0, -1, true
	case ClientNetTx, ClientNetDev, ClientNetRx:
		return ClientNet, 0, int(c - ClientNetTx), true
	case ServerNet:
		return ServerNet, 1, -1, true
	case ServerNetTx, ServerNetDev, ServerNetRx:
		return ServerNet, 1, int(c - ServerNetTx), true
	}
	return 0, 0, 0, false
}

// NetParts are the parts a network gap (client_net, server_net) splits
// into, sender stack first; none for any other component. server_net's
// include beyond_host, which stands for the parts beyond this host in a
// split of the client's side alone (RoundTrip.Span).
func NetParts(c Component) []Component {
	switch c {
	case ClientNet:
		return []Component{ClientNetTx, ClientNetDev, ClientNetRx}
	case ServerNet:
		return []Component{ServerNetTx, ServerNetDev, BeyondHost, ServerNetRx}
	}
	return nil
}

// IsNetName is IsNet by a component's name (false for a name Table does
// not hold).
func IsNetName(name string) bool {
	for c, info := range Table {
		if info.Name == name {
			return IsNet(Component(c))
		}
	}
	return false
}

// IsNet says whether c is network time: a direction's *_net gap or one of
// its parts.
func IsNet(c Component) bool {
	_, _, _, ok := netSplit(c)
	return ok
}

func (c Component) String() string { return Table[c].Name }

// Side is the side of the connection a component's time is spent on.
func (c Component) Side() string { return Table[c].Side }

var names = func() (n [NumComponents]string) {
	for c, info := range Table {
		n[c] = info.Name
	}
	return n
}()

// Names lists the component names in order (the requests.csv columns).
func Names() []string { return names[:] }

// ColorOf is a component's colour by its name, and a neutral grey for a
// name the table does not hold (a results.json from another version).
func ColorOf(name string) string {
	for _, info := range Table {
		if info.Name == name {
			return info.Color
		}
	}
	return "#bbbbbb"
}
