package loadgen

import (
	"fmt"
	"strings"
)

// ProtoInfo is one row of the protocol table: everything volleyscope
// says of a protocol outside its framer.
type ProtoInfo struct {
	Name Proto
	Help string // what a round trip sends and expects, in one line
	// DefaultPort is the port its servers listen on by convention; 0:
	// none.
	DefaultPort int
	// Builtin is the built-in server that speaks it ('volleyscope serve
	// NAME'); "" for none of its own.
	Builtin string
	// Common: every built-in server that no row names speaks it
	// (ping-pong, and echo in its echo mode).
	Common bool
	// Binary: its bytes are binary, shown in hex in a ReplyError; a text
	// protocol's are quoted.
	Binary bool
	// Size is what Options.Size sets for it; "": it does not use Size.
	Size string
	// usesSize says whether o sends Size bytes (results.json's
	// meta.size_bytes); nil: whenever Size is not "".
	usesSize func(o Options) bool
	// newFramer makes the framer of a protocol whose replies are framed
	// by their own content; nil for the fixed-length exchanges
	// (ping-pong, echo, line), which exchange codes itself.
	newFramer func(o *Options, x *exchange) framer
	// workload is Options.Workload for it; nil: "".
	workload func(o Options) string
}

// protocols is the protocol table, in the order help texts give it.
var protocols = []ProtoInfo{
	{Name: PingPong, Help: "a 4-byte integer, answered with integer+1", Common: true, Binary: true},
	{Name: Echo, Help: "Size bytes, answered with the same bytes", Common: true, Binary: true, Size: "the payload"},
	{Name: HTTP, Help: "an HTTP/1.1 keep-alive GET, answered with a response of an accepted status", DefaultPort: 80, Builtin: "http",
		newFramer: func(o *Options, _ *exchange) framer { return newHTTPFramer(o) }, workload: httpWorkload},
	{Name: Redis, Help: "RESP: PING, or a GET/SET mix", DefaultPort: 6379, Builtin: "resp", Size: "the value of a GET/SET mix",
		usesSize:  func(o Options) bool { return o.Mix != (Mix{}) },
		newFramer: func(o *Options, x *exchange) framer { return newRESPFramer(o, x) }, workload: respWorkload},
	{Name: Memcache, Help: "memcached's text protocol: a get/set mix", DefaultPort: 11211, Size: "the value",
		newFramer: func(o *Options, x *exchange) framer { return newMemcacheFramer(o, x) }, workload: memcacheWorkload},
	{Name: Line, Help: "a fixed request, answered with a fixed reply", workload: lineWorkload},
}

// Protocols lists the protocol table, in the order help texts give it.
func Protocols() []ProtoInfo { return protocols }

// LookupProto finds a protocol's row.
func LookupProto(p Proto) (ProtoInfo, bool) {
	for _, info := range protocols {
		if info.Name == p {
			return info, true
		}
	}
	return ProtoInfo{}, false
}

// ProtoNames lists the protocols' names as a person reads them: "a, b
// or c".
func ProtoNames() string { return protoNames(func(ProtoInfo) bool { return true }) }

// protoNames lists the names of the protocols that pass keep, as
// ProtoNames does.
func protoNames(keep func(ProtoInfo) bool) string {
	var names []string
	for _, info := range protocols {
		if keep(info) {
			names = append(names, string(info.Name))
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// textProto says whether p is a text protocol, whose bytes a ReplyError
// quotes.
func textProto(p Proto) bool {
	info, ok := LookupProto(p)
	return ok && !info.Binary
}

// ParseProto checks a protocol name given on the command line.
func ParseProto(s string) (Proto, error) {
	if _, ok := LookupProto(Proto(s)); !ok {
		return "", fmt.Errorf("unknown protocol %q: want %s", s, ProtoNames())
	}
	return Proto(s), nil
}

// SpokenBy is the protocol a built-in server speaks when none is asked
// for: the one whose row names it, else the first common one (ping-pong).
func SpokenBy(builtin string) Proto {
	for _, info := range protocols {
		if builtin != "" && info.Builtin == builtin {
			return info.Name
		}
	}
	for _, info := range protocols {
		if info.Common {
			return info.Name
		}
	}
	return ""
}

// Speaks says whether the built-in server named builtin speaks p: p's
// row names it, or p is common and no row names it.
func Speaks(builtin string, p Proto) bool {
	info, ok := LookupProto(p)
	if !ok {
		return false
	}
	if info.Builtin != "" {
		return info.Builtin == builtin
	}
	return info.Common && SpokenBy(builtin) == SpokenBy("")
}

// SendsSize says whether o's requests or replies carry Size bytes.
func (o Options) SendsSize() bool {
	info, ok := LookupProto(o.Proto)
	if !ok || info.Size == "" {
		return false
	}
	return info.usesSize == nil || info.usesSize(o)
}

// Workload describes, in one line, what each request of o asks beyond
// the protocol's name and the connection count: the HTTP request and the
// statuses accepted, the GET/SET mix with its key space and value size,
// or the line exchange. It is empty for ping-pong and echo, whose
// request is the protocol itself (and Size). Results carry it, so that a
// comparison of two runs says when they asked different things.
func (o Options) Workload() string {
	if info, ok := LookupProto(o.Proto); ok && info.workload != nil {
		return info.workload(o)
	}
	return ""
}
