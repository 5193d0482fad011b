package probe

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPayloadCapture loads the payload capture on this kernel and
// watches this test's own process: a client connection's sends to a
// listener's port are captured with their first bytes and lengths, the
// receives on the server's socket with a capture of the receive side,
// and a send longer than the capture keeps its full length.
func TestPayloadCapture(t *testing.T) {
	requireRoot(t)
	type variant struct {
		recv bool
		skip int // candidates left out: 0 the syscalls' own tracepoints, 1 tp_btf, 2 raw_tp, 3 raw_syscalls tracepoints
	}
	for _, v := range []variant{{false, 0}, {true, 0}, {false, 1}, {true, 2}, {false, 3}} {
		recv := v.recv
		name := fmt.Sprintf("sends-%d", v.skip)
		if recv {
			name = fmt.Sprintf("receives-%d", v.skip)
		}
		t.Run(name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			port := uint16(ln.Addr().(*net.TCPAddr).Port)
			c, err := OpenPayload(PayloadConfig{Port: port, Recv: recv, skip: v.skip})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, h := range c.Hooks() {
				t.Logf("%s: %s", h.Event, h)
				if want := payloadHooks[0].cands[v.skip].fam; !strings.HasPrefix(h.Hook, string(want)) {
					t.Errorf("%s on %s, want the %s candidate", h.Event, h.Hook, want)
				}
			}
			if err := c.Watch(uint32(os.Getpid())); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var got []Payload
			done := make(chan error, 1)
			go func() {
				done <- c.Run(func(p *Payload) {
					mu.Lock()
					q := *p
					q.Data = bytes.Clone(p.Data)
					got = append(got, q)
					mu.Unlock()
				})
			}()
			go func() {
				s, err := ln.Accept()
				if err != nil {
					return
				}
				defer s.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := s.Read(buf); err != nil {
						return
					}
				}
			}()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			small := []byte("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n")
			large := bytes.Repeat([]byte("x"), 1000)
			if _, err := conn.Write(small); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // the server reads the two apart
			if _, err := conn.Write(large); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			want := []struct {
				total int64
				data  []byte
			}{{int64(len(small)), small}, {int64(len(large)), large[:PayloadCap]}}
			deadline := time.Now().Add(5 * time.Second)
			for {
				mu.Lock()
				n := len(got)
				mu.Unlock()
				if n >= len(want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			runs, ns, err := c.Runs()
			if err != nil || runs == 0 {
				t.Errorf("run statistics: %d runs, %d ns, %v", runs, ns, err)
			}
			c.Close()
			<-done
			if len(got) != len(want) {
				t.Fatalf("captured %d records, want %d: %+v", len(got), len(want), got)
			}
			for i, w := range want {
				g := got[i]
				if g.Total != w.total || !bytes.Equal(g.Data, w.data) || g.Recv != recv || g.SK == 0 || int(g.TGID) != os.Getpid() {
					t.Errorf("record %d: total %d recv %v sk %#x tgid %d data %q; want total %d recv %v data %q", i, g.Total, g.Recv, g.SK, g.TGID, g.Data, w.total, recv, w.data)
				}
				if (g.Lport == port) != recv {
					t.Errorf("record %d: ports %d→%d, server port %d", i, g.Lport, g.Rport, port)
				}
			}
		})
	}
}
