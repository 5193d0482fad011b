package servers

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync"
)

// serveRESP is a minimal Redis: PING, GET and SET over RESP, one
// goroutine per connection, the values in one map under a lock. Requests
// are arrays of bulk strings (what clients send) or inline commands;
// pipelined requests are answered in order. Anything else gets an error
// reply, as redis-server gives. A connection whose first byte is 0 (the
// ping-pong exit message) asks it to exit.
func serveRESP(ctx context.Context, ln *net.TCPListener, o Options) error {
	st := &respStore{m: map[string][]byte{}}
	return serveConns(ctx, ln, "resp", func(c net.Conn) bool { return respConn(c, st, o) })
}

type respStore struct {
	mu sync.RWMutex
	m  map[string][]byte
}

// respConn serves one connection until it closes; exit is true when its
// first byte was 0.
func respConn(c net.Conn, st *respStore, o Options) (exit bool) {
	in := make([]byte, 0, 64<<10)
	out := make([]byte, 0, 64<<10)
	var args [][]byte
	first := true
	for {
		if len(in) == cap(in) {
			g := make([]byte, len(in), 2*cap(in))
			copy(g, in)
			in = g
		}
		n, err := c.Read(in[len(in):cap(in)])
		in = in[:len(in)+n]
		if n > 0 && first {
			first = false
			if in[0] == 0 {
				return true
			}
		}
		used := 0
		out = out[:0]
		for {
			var k int
			var perr string
			args, k, perr = respCommand(in[used:], args[:0])
			if perr != "" {
				out = append(out, "-ERR Protocol error: "...)
				out = append(out, perr...)
				out = append(out, "\r\n"...)
				c.Write(out)
				return false
			}
			if k == 0 {
				break
			}
			used += k
			if len(args) == 0 {
				continue
			}
			spin(o.Spin)
			out = st.do(args, out)
		}
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return false
			}
		}
		in = in[:copy(in, in[used:])]
		if err != nil {
			return false
		}
	}
}

// respCommand reads one request from b into args: it returns the bytes
// it took, 0 when b holds no whole request, or a protocol error.
func respCommand(b []byte, args [][]byte) ([][]byte, int, string) {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 {
		return args, 0, ""
	}
	if b[0] != '*' { // inline: words separated by blanks
		for _, w := range bytes.Fields(b[:i]) {
			args = append(args, w)
		}
		return args, i + 2, ""
	}
	n, err := strconv.Atoi(string(b[1:i]))
	if err != nil || n > 1024*1024 {
		return args, 0, "invalid multibulk length"
	}
	at := i + 2
	for k := 0; k < n; k++ {
		j := bytes.Index(b[at:], []byte("\r\n"))
		if j < 0 {
			return args, 0, ""
		}
		if b[at] != '$' {
			return args, 0, "expected '$', got '" + string(b[at]) + "'"
		}
		size, err := strconv.Atoi(string(b[at+1 : at+j]))
		if err != nil || size < 0 || size > 512<<20 {
			return args, 0, "invalid bulk length"
		}
		start := at + j + 2
		if len(b) < start+size+2 {
			return args, 0, ""
		}
		args = append(args, b[start:start+size])
		at = start + size + 2
	}
	return args, at, ""
}

// do runs one command, appending its reply to out.
func (st *respStore) do(args [][]byte, out []byte) []byte {
	cmd := args[0]
	switch {
	case bytes.EqualFold(cmd, []byte("PING")) && len(args) == 1:
		return append(out, "+PONG\r\n"...)
	case bytes.EqualFold(cmd, []byte("GET")) && len(args) == 2:
		st.mu.RLock()
		v, ok := st.m[string(args[1])]
		if !ok {
			st.mu.RUnlock()
			return append(out, "$-1\r\n"...)
		}
		out = append(out, '$')
		out = strconv.AppendInt(out, int64(len(v)), 10)
		out = append(out, "\r\n"...)
		out = append(out, v...)
		st.mu.RUnlock()
		return append(out, "\r\n"...)
	case bytes.EqualFold(cmd, []byte("SET")) && len(args) == 3:
		st.mu.Lock()
		if v, ok := st.m[string(args[1])]; ok && cap(v) >= len(args[2]) {
			st.m[string(args[1])] = append(v[:0], args[2]...) // reuse: no allocation for a key set before
		} else {
			st.m[string(args[1])] = bytes.Clone(args[2])
		}
		st.mu.Unlock()
		return append(out, "+OK\r\n"...)
	}
	out = append(out, "-ERR unknown command or wrong number of arguments for '"...)
	out = append(out, cmd...)
	return append(out, "'\r\n"...)
}
