package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"

	"github.com/volleyscope/volleyscope/internal/hostinfo"
	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/probe"
)

// ProtocolVersion is the version of the service's messages. Both sides
// check it in Hello: an agent and a controller of different versions
// refuse each other with both versions named. Raise it with any change
// to a message or a method (2: the Load method; 3: ServerInfo.Watched
// and EventsRequest.Watch, for a watch of a running server; 4: Events'
// trace switch, for a sampled watch).
const ProtocolVersion = 4

// HelloRequest opens a controller's conversation with an agent.
type HelloRequest struct {
	Protocol int    `json:"protocol"` // the controller's ProtocolVersion
	Version  string `json:"version"`  // the controller's volleyscope version (internal/version)
}

// Info is the agent's answer to Hello: who it is and what it serves.
type Info struct {
	Protocol int           `json:"protocol"` // the agent's ProtocolVersion
	Version  string        `json:"version"`  // the agent's volleyscope version
	Host     hostinfo.Host `json:"host"`     // the agent's machine (report.MetaOf reads it)
	IOUring  string        `json:"io_uring"` // what the agent's kernel allows the io_uring servers (servers.IOUringFeatures)
	Servers  []ServerInfo  `json:"servers"`  // the servers an Events session may name
}

// ServerInfo is one server the agent started or follows.
type ServerInfo struct {
	Name string `json:"name"` // what a start request names it by (its label)
	// Addr is HOST:PORT the load connects to. HOST is the agent's
	// --listen host: when that is unspecified (0.0.0.0, ::) connect to the
	// host the agent was dialled at.
	Addr string `json:"addr"`
	Port uint16 `json:"port"` // its listening port, as the agent's probe sees it
	PIDs []int  `json:"pids"` // its processes
	CPUs []int  `json:"cpus"` // where it is pinned; nil: not pinned
	// Watched: a running server that the agent's own command line told
	// it to watch (--watch-port, --watch-pid), for a controller's
	// 'watch --agent'. Only a watch follows it; a run's load is never
	// sent to it.
	Watched bool `json:"watched,omitempty"`
}

// pingReply carries the agent's clock.
type pingReply struct {
	AgentNs int64 `json:"agent_ns"`
}

// EventsRequest starts an Events session: the probe on one of the
// agent's servers.
type EventsRequest struct {
	Server string `json:"server"` // ServerInfo.Name; "" for the only one
	// Clients is the run's connection count, which sizes the probe's
	// rings; 0 sizes them for the sample's share of a load that would
	// have it (session's connSample, read backwards).
	Clients int `json:"clients"`
	// SampleOneIn follows the socket events of one connection in N
	// (probe.Config.SampleOneIn); 0 and 1: all.
	SampleOneIn uint32 `json:"sample_one_in"`
	Syscalls    bool   `json:"syscalls"`   // add the syscall hooks
	ProbeMode   string `json:"probe_mode"` // hook family (probe.Mode); "" auto
	// Watch follows a watched server (ServerInfo.Watched) as a watch
	// does: every connection, with the send returns that tell a
	// pipelining client. Only a watched server takes it, and it only
	// this.
	Watch bool `json:"watch,omitempty"`
	// Compress sends the event batches gzip-compressed (gRPC's gzip
	// compressor): fewer bytes on the wire for more of the agent's CPU.
	Compress bool `json:"compress"`
}

// clientMsg is one message of the controller's side of Events: the
// start request first, then marks and trace switches, then stop.
type clientMsg struct {
	Start *EventsRequest `json:"start,omitempty"`
	Mark  string         `json:"mark,omitempty"`
	// Trace switches the probe's hooks: traceOn or traceOff.
	Trace string `json:"trace,omitempty"`
	Stop  bool   `json:"stop,omitempty"`
}

// The values of clientMsg.Trace.
const (
	traceOn  = "on"
	traceOff = "off"
)

// TraceReply answers a trace switch once the agent's probe has made it:
// its hooks attached (On) or detached, at AgentNs on the agent's clock.
type TraceReply struct {
	On      bool   `json:"on"`
	AgentNs int64  `json:"agent_ns"`
	Err     string `json:"error,omitempty"` // why the switch failed
}

// Started is the agent's first answer in Events, once the probe is
// attached and following the server.
type Started struct {
	Server  ServerInfo `json:"server"`
	Summary string     `json:"summary"` // one line on what the probe attached
	Notices []string   `json:"notices"` // what the user should know before the load starts
}

// Batch is a run of events, each before Watermark's successor batches:
// once it is received, every event the agent's probe stamped before
// Watermark has been received. Times are on the agent's clock.
type Batch struct {
	Watermark int64
	Events    []probe.Event
}

// MarkReply answers a mark: the server processes' cost counters when the
// agent took them, on the agent's clock.
type MarkReply struct {
	Name    string          `json:"name"`
	AgentNs int64           `json:"agent_ns"`
	Cost    proccost.Sample `json:"cost"`
	Err     string          `json:"error,omitempty"` // why there is no sample (the server is gone)
}

// Final is the agent's account of an Events session, its last message.
type Final struct {
	Lost       uint64             `json:"lost"`          // events dropped before they were read
	ReaderCPU  int64              `json:"reader_cpu_ns"` // CPU time of the agent's ring reader
	ReaderLate int64              `json:"reader_late_ns"`
	Probe      *report.ProbeParts `json:"probe"`
	Warnings   []string           `json:"warnings"`
	Err        string             `json:"error,omitempty"` // the probe's error, if it stopped on one
	// Set by this package: the agent process's CPU time from the probe's
	// attachment to the stop (reader, encoding, compression and gRPC; not
	// the probe's loading), and what it sent.
	AgentCPU int64  `json:"agent_cpu_ns"`
	Events   uint64 `json:"events"`
	Batches  uint64 `json:"batches"`
	Bytes    uint64 `json:"bytes"` // on the wire: after compression, with gRPC's message headers
}

// Message is one message of the agent's side of Events, as
// EventStream.Recv returns it: exactly one field is set.
type Message struct {
	Batch *Batch
	Mark  *MarkReply
	Trace *TraceReply
	Final *Final
}

// Server message kinds: the first byte of each message the agent sends
// in Events.
const (
	kindStarted = 'S'
	kindBatch   = 'B'
	kindMark    = 'M'
	kindTrace   = 'T'
	kindFinal   = 'F'
)

// A batch on the wire: kindBatch, the watermark int64, the count uint32,
// then count × probe.EventSize bytes in probe.Encode's layout, all
// little-endian.
const batchHeader = 1 + 8 + 4

// ErrBadBatch is returned for an event batch that does not decode.
var ErrBadBatch = errors.New("corrupt event batch")

// DecodeBatch decodes a batch's bytes (after the kind byte: watermark,
// count, events) into dst, reusing its room, and returns the events and
// the watermark.
func DecodeBatch(b []byte, dst []probe.Event) ([]probe.Event, int64, error) {
	if len(b) < batchHeader-1 {
		return dst[:0], 0, fmt.Errorf("%w: %d bytes, shorter than its header", ErrBadBatch, len(b))
	}
	wm := int64(binary.LittleEndian.Uint64(b))
	n := binary.LittleEndian.Uint32(b[8:])
	b = b[12:]
	if uint64(len(b)) != uint64(n)*uint64(probe.EventSize) {
		return dst[:0], 0, fmt.Errorf("%w: %d events announced, %d bytes of %d-byte events follow (truncated?)", ErrBadBatch, n, len(b), probe.EventSize)
	}
	if cap(dst) < int(n) {
		dst = make([]probe.Event, n)
	}
	dst = dst[:n]
	for i := range dst {
		if err := probe.Decode(b[i*probe.EventSize:(i+1)*probe.EventSize], &dst[i]); err != nil {
			return dst[:0], 0, fmt.Errorf("%w: %w", ErrBadBatch, err)
		}
	}
	return dst, wm, nil
}

// outMsg is a server message other than a batch: its kind byte, then
// JSON.
type outMsg struct {
	kind byte
	v    any
}

// outBatch is a batch already laid out on the wire (batcher).
type outBatch []byte

// inMsg is a server message as the client decodes it; the batch's
// events are reused from one message to the next.
type inMsg struct {
	kind    byte
	batch   Batch
	started Started
	mark    MarkReply
	trace   TraceReply
	final   Final
}

func (m *inMsg) unmarshal(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: an empty message", ErrBadBatch)
	}
	m.kind = b[0]
	var err error
	switch b[0] {
	case kindBatch:
		m.batch.Events, m.batch.Watermark, err = DecodeBatch(b[1:], m.batch.Events)
		return err
	case kindStarted:
		m.started = Started{}
		return json.Unmarshal(b[1:], &m.started)
	case kindMark:
		m.mark = MarkReply{}
		return json.Unmarshal(b[1:], &m.mark)
	case kindTrace:
		m.trace = TraceReply{}
		return json.Unmarshal(b[1:], &m.trace)
	case kindFinal:
		m.final = Final{}
		return json.Unmarshal(b[1:], &m.final)
	}
	return fmt.Errorf("unknown message kind %q from the agent", b[0])
}

// codecName is the content-subtype our messages travel under
// ("application/grpc+vsagent").
const codecName = "vsagent"

// codec encodes the service's messages: batches in the probe's record
// layout, the rest as JSON (with a kind byte first in Events' server
// messages).
type codec struct{}

func (codec) Name() string { return codecName }

func (codec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case outBatch:
		return m, nil
	case *outMsg:
		j, err := json.Marshal(m.v)
		if err != nil {
			return nil, err
		}
		return append([]byte{m.kind}, j...), nil
	}
	return json.Marshal(v)
}

func (codec) Unmarshal(data []byte, v any) error {
	if m, ok := v.(*inMsg); ok {
		return m.unmarshal(data)
	}
	return json.Unmarshal(data, v)
}

func init() { encoding.RegisterCodec(codec{}) }
