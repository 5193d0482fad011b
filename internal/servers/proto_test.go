package servers

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/loadgen"
)

// TestProtoServers: the http and resp servers answer their protocol on
// keep-alive connections, exit on a connection whose first byte is 0,
// and stop on cancel.
func TestProtoServers(t *testing.T) {
	http1 := func(t *testing.T, r *running) {
		c := dial(t, r.addr)
		defer c.Close()
		br := bufio.NewReader(c)
		for i := 0; i < 5; i++ { // one connection: keep-alive
			fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "hello\n" || resp.ContentLength != 6 || resp.Close {
				t.Fatalf("request %d: status %d, body %q, length %d, close %v", i, resp.StatusCode, body, resp.ContentLength, resp.Close)
			}
		}
	}
	resp1 := func(t *testing.T, r *running) {
		c := dial(t, r.addr)
		defer c.Close()
		br := bufio.NewReader(c)
		for _, tc := range []struct{ req, want string }{
			{"*1\r\n$4\r\nPING\r\n", "+PONG\r\n"},
			{"PING\r\n", "+PONG\r\n"},
			{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "$-1\r\n"},
			{"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n", "+OK\r\n"},
			{"*2\r\n$3\r\nget\r\n$1\r\nk\r\n", "$5\r\nhello\r\n"},
			{"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nhi\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "+OK\r\n$2\r\nhi\r\n"}, // pipelined
			{"*1\r\n$4\r\nINCR\r\n", "-ERR unknown command or wrong number of arguments for 'INCR'\r\n"},
		} {
			// The request in two pieces: the server must wait for the rest.
			h := len(tc.req) / 2
			c.Write([]byte(tc.req[:h]))
			time.Sleep(time.Millisecond)
			c.Write([]byte(tc.req[h:]))
			got := make([]byte, len(tc.want))
			if _, err := io.ReadFull(br, got); err != nil || string(got) != tc.want {
				t.Fatalf("%q: got %q, %v; want %q", tc.req, got, err, tc.want)
			}
		}
	}
	for _, tc := range []struct {
		name, proto string
		talk        func(*testing.T, *running)
	}{{"http", "http", http1}, {"resp", "redis", resp1}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Lookup(tc.name)
			if err != nil || string(loadgen.SpokenBy(s.Name)) != tc.proto {
				t.Fatalf("Lookup(%s) = %v, speaks %q; want %q", tc.name, err, loadgen.SpokenBy(s.Name), tc.proto)
			}
			t.Run("talk", func(t *testing.T) { tc.talk(t, start(t, s, Options{})) })
			t.Run("0 makes it exit", func(t *testing.T) {
				r := start(t, s, Options{})
				tc.talk(t, r)
				c := dial(t, r.addr)
				c.Write([]byte{0, 0, 0, 0})
				c.Close()
				if err := r.ended(t, "the 0 message"); !errors.Is(err, ErrExitRequested) {
					t.Errorf("Serve returned %v, want ErrExitRequested", err)
				}
			})
			t.Run("cancel stops it", func(t *testing.T) {
				r := start(t, s, Options{})
				c := dial(t, r.addr) // an idle connection must not hold it up
				defer c.Close()
				r.cancel()
				if err := r.ended(t, "cancel"); err != nil {
					t.Errorf("Serve returned %v after cancel, want nil", err)
				}
			})
		})
	}
}
