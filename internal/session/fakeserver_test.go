package session

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
)

// fakeServer speaks one protocol well for its first good requests
// (counted over every connection), then badly as mode says: "wrong" (a
// reply that is well framed but wrong), "short" (half a reply, then
// close) or "late" (the right reply after late).
type fakeServer struct {
	proto loadgen.Proto
	mode  string
	good  int64
	late  time.Duration
	line  loadgen.LineOptions
	n     atomic.Int64
	mu    sync.Mutex
	conns []net.Conn
}

func startFake(t *testing.T, f *fakeServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			go f.serve(c)
		}
	}()
	return ln.Addr().String()
}

func (f *fakeServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		good, err := f.request(r)
		if err != nil {
			return
		}
		if f.n.Add(1) <= f.good {
			c.Write(good)
			continue
		}
		switch f.mode {
		case "wrong":
			c.Write(f.wrong(good))
		case "short":
			c.Write(good[:len(good)/2])
			return
		case "late":
			time.Sleep(f.late)
			c.Write(good)
		}
	}
}

// request reads one request and returns the right reply to it.
func (f *fakeServer) request(r *bufio.Reader) ([]byte, error) {
	switch f.proto {
	case loadgen.HTTP:
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return nil, err
			}
			if l == "\r\n" {
				break
			}
		}
		if f.n.Load()%2 == 0 {
			return []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), nil
		}
		return []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"), nil
	case loadgen.Redis:
		l, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		n, _ := strconv.Atoi(strings.TrimSpace(l[1:]))
		var cmd []byte
		for i := 0; i < n; i++ {
			l, err := r.ReadString('\n')
			if err != nil {
				return nil, err
			}
			size, _ := strconv.Atoi(strings.TrimSpace(l[1:]))
			arg := make([]byte, size+2)
			if _, err := io.ReadFull(r, arg); err != nil {
				return nil, err
			}
			if i == 0 {
				cmd = arg[:size]
			}
		}
		switch string(cmd) {
		case "GET":
			return []byte("$-1\r\n"), nil // every key missing
		case "SET":
			return []byte("+OK\r\n"), nil
		}
		return []byte("+PONG\r\n"), nil
	case loadgen.Memcache:
		l, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		w := strings.Fields(l)
		if w[0] == "get" {
			return []byte("END\r\n"), nil
		}
		size, _ := strconv.Atoi(w[4])
		if _, err := io.CopyN(io.Discard, r, int64(size+2)); err != nil {
			return nil, err
		}
		return []byte("STORED\r\n"), nil
	default: // line
		b := make([]byte, len(f.line.Request))
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return f.line.Expect, nil
	}
}

// wrong is a well-framed wrong answer instead of good.
func (f *fakeServer) wrong(good []byte) []byte {
	switch f.proto {
	case loadgen.HTTP:
		return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
	case loadgen.Redis:
		return []byte("-ERR fake failure\r\n")
	case loadgen.Memcache:
		return []byte("SERVER_ERROR fake failure\r\n")
	}
	b := bytes.Clone(good)
	b[0] ^= 0x20
	return b
}

// TestFaultyProtoServers: for every protocol a wrong, a short and a late
// reply each stop the run with an error naming the connection, the
// request and the bytes received, with both client models, and what was
// measured before is kept and written.
func TestFaultyProtoServers(t *testing.T) {
	const good, clients = 400, 2
	const timeout = 300 * time.Millisecond
	line := loadgen.LineOptions{Request: []byte("HELLO\r\n"), Expect: []byte("WORLD\r\n")}
	protos := []struct {
		proto     loadgen.Proto
		wrongSays string
	}{
		{loadgen.HTTP, `status 503 Service Unavailable, want 2xx`},
		{loadgen.Redis, `error reply "ERR fake failure"`},
		{loadgen.Memcache, `error reply "SERVER_ERROR fake failure"`},
		{loadgen.Line, `expected "WORLD\r\n", received "wORLD\r\n"`},
	}
	for _, p := range protos {
		for _, mode := range []string{"wrong", "short", "late"} {
			for _, model := range []loadgen.ClientModel{loadgen.ClientThreads, loadgen.ClientEpoll} {
				t.Run(fmt.Sprintf("%s/%s/%s", p.proto, mode, model), func(t *testing.T) {
					f := &fakeServer{proto: p.proto, mode: mode, good: good, late: 3 * timeout, line: line}
					addr := startFake(t, f)
					dir := t.TempDir()
					out, err := Run(context.Background(), Config{Addr: addr, Out: dir, Load: loadgen.Options{
						Proto: p.proto, Clients: clients, Warmup: -1, Duration: 20 * time.Second, CI: -1, P99CI: -1,
						Timeout: timeout, ClientModel: model, Line: line, Mix: loadgen.Mix{Get: 1, Set: 1},
					}}, Callbacks{})
					var re *loadgen.ReplyError
					if err == nil || !errors.As(err, &re) {
						t.Fatalf("err = %v, want a reply error", err)
					}
					msg := err.Error()
					t.Log(msg)
					want := map[string]string{"wrong": "wrong reply", "short": "short reply (connection closed)", "late": "timeout (no complete reply within 300ms)"}[mode]
					for _, w := range []string{"connection ", "request ", want} {
						if !strings.Contains(msg, w) {
							t.Errorf("err = %s, want it to say %q", msg, w)
						}
					}
					switch mode {
					case "wrong":
						if !strings.Contains(msg, p.wrongSays) {
							t.Errorf("err = %s, want it to say %q", msg, p.wrongSays)
						}
					case "short":
						if len(re.Got) == 0 || !strings.Contains(msg, fmt.Sprintf("(%d bytes)", len(re.Got))) {
							t.Errorf("err = %s: want the half reply's bytes shown", msg)
						}
					}
					if out == nil {
						t.Fatal("no results kept")
					}
					// Each connection's set-up includes one priming exchange
					// that the server answers but the run does not record.
					if total := out.Latency.Count + out.Run.Outside; total != good-clients {
						t.Errorf("kept %d round trips, want the %d good ones less %d priming exchanges", total, good, clients)
					}
					r, err := report.ReadJSON(filepath.Join(dir, "results.json"))
					if err != nil {
						t.Fatal(err)
					}
					if r.Latency.Count == 0 || r.Run.StopReason != "error" || len(r.Errors) == 0 {
						t.Errorf("results.json: count %d, stop %q, errors %v", r.Latency.Count, r.Run.StopReason, r.Errors)
					}
				})
			}
		}
	}
}
