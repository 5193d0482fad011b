package session

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// watchPayloadSends is how many sends (or, server side, receives) of each
// connection the payload capture reads: enough to recognise the protocol
// and see a pipelining client's first batches, after which a connection
// costs only the capture's checks on its syscalls. A client that begins
// to pipeline later than this is left to timing (README, "Watch").
const watchPayloadSends = 64

// capturedSend is a capture's record, copied off the reader.
type capturedSend struct {
	ts    int64
	sk    uint64
	port  uint16 // the client's port: the connection's key in watchTrips
	total int64
	n     int
	data  [probe.PayloadCap]byte
}

// watchParser turns the payload capture's records into each connection's
// parse state (connParse), by the client's port as watchTrips keys its
// connections. capture runs on the capture's reader; the rest on the
// watch's goroutine.
type watchParser struct {
	serverSide bool

	mu   sync.Mutex
	in   []capturedSend
	work []capturedSend

	conns map[uint16]*connParse
}

func newWatchParser(serverSide bool) *watchParser {
	return &watchParser{serverSide: serverSide, conns: map[uint16]*connParse{}}
}

// capture keeps one record; it only copies.
func (p *watchParser) capture(r *probe.Payload) {
	port := r.Lport // a client's send: its own port
	if p.serverSide {
		port = r.Rport // the server's receive: the client's port is the remote one
	}
	p.mu.Lock()
	p.in = append(p.in, capturedSend{ts: r.TS, sk: r.SK, port: port, total: r.Total})
	s := &p.in[len(p.in)-1]
	s.n = copy(s.data[:], r.Data)
	p.mu.Unlock()
}

// take parses the records captured so far, in time order.
func (p *watchParser) take() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.in, p.work = p.work[:0], p.in
	p.mu.Unlock()
	slices.SortStableFunc(p.work, func(a, b capturedSend) int { return cmp.Compare(a.ts, b.ts) })
	for i := range p.work {
		s := &p.work[i]
		c := p.conns[s.port]
		if c == nil || c.sk != s.sk { // a new connection, or a port reused by one
			c = &connParse{sk: s.sk}
			p.conns[s.port] = c
		}
		c.last = s.ts
		c.send(s.data[:s.n], s.total)
	}
}

// conn is the parse state of the connection on a client port; nil if
// nothing of it was captured (or without a capture).
func (p *watchParser) conn(port uint16) *connParse {
	if p == nil {
		return nil
	}
	return p.conns[port]
}

// prune forgets the connections that watchTrips no longer follows and
// that were last captured before then: their counts are already taken.
func (p *watchParser) prune(live func(uint16) bool, before int64) {
	if p == nil {
		return
	}
	for port, c := range p.conns {
		if c.last < before && !live(port) {
			delete(p.conns, port)
		}
	}
}

// parseCounts is what the parsers said of the watch's connections,
// taken at each connection's first reported exchange. It keeps counts
// and a few ports, so that it stays small under connection churn.
type parseCounts struct {
	byProto   map[loadgen.Proto]*portCount // connections parsed, by protocol
	timed     portCount                    // connections left to timing
	gaveUp    int                          // of the parsed: gave up (HTTP chunked), timed since
	pipelined int                          // of the parsed: found pipelined
	mostInOne int                          // the most requests seen in one send
}

// portCount is a count of connections and the first client ports.
type portCount struct {
	n     int
	ports []uint16 // the first watchPortsShown
}

// watchPortsShown bounds the client ports a summary line names.
const watchPortsShown = 6

func (pc *portCount) add(port uint16) {
	pc.n++
	if len(pc.ports) < watchPortsShown {
		pc.ports = append(pc.ports, port)
	}
}

func (pc *portCount) String() string {
	s := make([]string, 0, len(pc.ports)+1)
	for _, p := range pc.ports {
		s = append(s, fmt.Sprint(p))
	}
	if pc.n > len(pc.ports) {
		s = append(s, fmt.Sprintf("… %d more", pc.n-len(pc.ports)))
	}
	return strings.Join(s, ", ")
}

// classify counts connection c once, as parsed or timed.
func (k *parseCounts) classify(port uint16, c *connParse) {
	if c == nil || c.proto == "" {
		k.timed.add(port)
		return
	}
	if k.byProto == nil {
		k.byProto = map[loadgen.Proto]*portCount{}
	}
	pc := k.byProto[c.proto]
	if pc == nil {
		pc = &portCount{}
		k.byProto[c.proto] = pc
	}
	pc.add(port)
	if c.gaveUp {
		k.gaveUp++
	}
}

// text is the summary's line on how the connections' boundaries were
// found. why, if set, says why nothing was parsed.
func (k *parseCounts) text(why string) string {
	if why != "" {
		return fmt.Sprintf("watch: %d connections timed (request boundaries by timing alone): %s", k.timed.n, why)
	}
	protos := make([]string, 0, len(k.byProto))
	for p := range k.byProto {
		protos = append(protos, string(p))
	}
	sort.Strings(protos)
	var parsed []string
	n := 0
	for _, p := range protos {
		pc := k.byProto[loadgen.Proto(p)]
		n += pc.n
		parsed = append(parsed, fmt.Sprintf("%d %s (client ports %s)", pc.n, p, pc))
	}
	s := fmt.Sprintf("watch: request boundaries of %d connections parsed from their payload", n)
	if n > 0 {
		s += ": " + strings.Join(parsed, ", ")
	}
	if k.pipelined > 0 {
		s += fmt.Sprintf("; %d of them pipelined (as many as %d requests seen in one send's first %d bytes), not split", k.pipelined, k.mostInOne, probe.PayloadCap)
	}
	if k.gaveUp > 0 {
		s += fmt.Sprintf("; %d gave the parser up (a body without a length: chunked) and are timed from then on", k.gaveUp)
	}
	s += fmt.Sprintf("; %d timed (protocol not recognised, or first seen mid-request)", k.timed.n)
	if k.timed.n > 0 {
		s += " (client ports " + k.timed.String() + ")"
	}
	return s
}

// payloadSource is the watch's probe with the payload capture beside it:
// its watermark waits for the capture's reader too, so that a send's
// parse is known before the round trips around it are derived, and the
// capture's cost is measured over the same first stretch as the probe's.
type payloadSource struct {
	*localProbe
	cap    *probe.PayloadCapture
	done   chan error
	stop   sync.Once
	runs   uint64 // the capture programs' runs and run time while statistics were on
	bpfNs  uint64
	hooks  string
	follow []int
}

// localProbe names the embedded probe apart from the probeSource method
// that probeOf looks for.
type localProbe = probeSource

func (s *payloadSource) probeSource() *probeSource { return s.localProbe }

// withPayload puts the payload capture beside the watch's probe ps, for
// trips: the clients' sends, or without clients the servers' receives.
// Without it (it did not load) every connection is timed, and why says
// so; src is then ps alone.
func withPayload(ps *probeSource, port uint16, clients, servers []int, trips *watchTrips) (src EventSource, pl *payloadSource, why string) {
	parser := newWatchParser(trips.serverSide)
	pids := clients
	if trips.serverSide {
		pids = servers
	}
	if len(pids) == 0 {
		return ps, nil, "no watched process on this host whose payload could be read"
	}
	pl, err := openPayload(ps, port, pids, parser)
	if err != nil {
		return ps, nil, fmt.Sprintf("the payload capture did not load (%v)", err)
	}
	trips.parser = parser
	return pl, pl, ""
}

// openPayload starts the payload capture for a watch of port, following
// pids (the clients', or without clients the server's), into parser.
func openPayload(ps *probeSource, port uint16, pids []int, parser *watchParser) (*payloadSource, error) {
	c, err := probe.OpenPayload(probe.PayloadConfig{Port: port, Recv: parser.serverSide, MaxCaptures: watchPayloadSends})
	if err != nil {
		return nil, err
	}
	for _, pid := range pids {
		if err := c.Watch(uint32(pid)); err != nil {
			c.Close()
			return nil, err
		}
	}
	s := &payloadSource{localProbe: ps, cap: c, done: make(chan error, 1), follow: pids}
	var hs []string
	for _, h := range c.Hooks() {
		hs = append(hs, h.String())
	}
	what := "sends"
	if parser.serverSide {
		what = "receives"
	}
	s.hooks = fmt.Sprintf("payload capture on %s: the first %d bytes of each connection's first %d %s", strings.Join(hs, " and "), probe.PayloadCap, watchPayloadSends, what)
	go func() { s.done <- c.Run(parser.capture) }()
	return s, nil
}

// Watermark: the probe's, held back until the capture's reader has
// drained its ring past it.
func (s *payloadSource) Watermark() int64 {
	return min(s.localProbe.Watermark(), s.cap.Watermark()-readerSlack.Nanoseconds())
}

// WarmupOver ends the capture's run statistics with the probe's.
func (s *payloadSource) WarmupOver() {
	s.localProbe.WarmupOver()
	s.stop.Do(func() {
		s.runs, s.bpfNs, _ = s.cap.Runs()
		s.cap.StopStats()
	})
}

func (s *payloadSource) Close() (SourceReport, error) {
	s.WarmupOver()
	lost := s.cap.Lost()
	err := s.cap.Close()
	if e := <-s.done; err == nil {
		err = e
	}
	rep, e := s.localProbe.Close()
	if lost > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("payload capture: %d records lost (its ring was full): those sends were not parsed", lost))
	}
	if err != nil {
		return rep, fmt.Errorf("close payload capture: %w", err)
	}
	return rep, e
}

// payloadCost is the capture's share of the cost line: its programs' CPU
// per round trip, over the round trips the probe's own cost is measured
// on.
func (s *payloadSource) payloadCost(trips int64) string {
	if s == nil || trips <= 0 || s.runs == 0 {
		return ""
	}
	return fmt.Sprintf("; the payload capture's programs %v per round trip", time.Duration(s.bpfNs/uint64(trips)))
}
