package session

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/serverproc"
	"github.com/volleyscope/volleyscope/loadgen"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
		err  string // substring of the error; "" for none
	}{
		{in: "threads", want: Spec{Label: "threads", Builtin: "threads"}},
		{in: "fast=epoll-lt", want: Spec{Label: "fast", Builtin: "epoll-lt"}},
		{in: "addr=127.0.0.1:6379", want: Spec{Label: "127.0.0.1:6379", Addr: "127.0.0.1:6379"}},
		{in: "r=addr=[::1]:80", want: Spec{Label: "r", Addr: "[::1]:80"}},
		{in: "/bin/sh", want: Spec{Label: "sh", Argv: []string{"/bin/sh"}}},
		{in: `/bin/sh -c 'exec x --port {port}' "a b" c\ d`, want: Spec{Label: "sh", Argv: []string{"/bin/sh", "-c", "exec x --port {port}", "a b", "c d"}}},
		{in: "u=port=6379:/bin/sh -c x", want: Spec{Label: "u", Argv: []string{"/bin/sh", "-c", "x"}, FixedPort: 6379}},
		{in: "port=6379:threads", err: "give it without port="}, // a fixed port is for commands
		{in: "port=0:/bin/sh", err: "want port=PORT:COMMAND"},
		{in: "port=6379", err: "want port=PORT:COMMAND"},
		{in: "addr=localhost", err: "want addr=HOST:PORT"},
		{in: "addr=h:99999", err: "not in 1-65535"},
		{in: "fast=", err: "nothing after"},
		{in: "", err: "empty server spec"},
		{in: "no-such-server-anywhere", err: "not a built-in server"},
		{in: "thread", err: `did you mean "threads"?`},
		{in: "/etc/passwd", err: "not an executable"},
		{in: `/bin/sh -c 'x`, err: "unterminated"},
	} {
		got, err := ParseSpec(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSpec(%q) error %v, want one with %q", tc.in, err, tc.err)
			}
		case err != nil:
			t.Errorf("ParseSpec(%q): %v", tc.in, err)
		case got.Label != tc.want.Label || got.Builtin != tc.want.Builtin || got.Addr != tc.want.Addr ||
			got.FixedPort != tc.want.FixedPort || !slices.Equal(got.Argv, tc.want.Argv):
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestVersusServerSpecs runs vs on each kind of server spec that is not
// a built-in name: two command templates, two commands that listen on
// the same fixed port (so they must never run side by side), and two
// servers already running at their addresses.
func TestVersusServerSpecs(t *testing.T) {
	port, err := freeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	fixed := fmt.Sprintf("port=%d:%s serve threads -p %d", port, selfBin, port)
	var addrs [2]string
	for i, name := range []string{"threads", "epoll-lt"} {
		srv, err := serverproc.Start(context.Background(), serverproc.Options{Argv: []string{selfBin, "serve", name}})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Stop()
		addrs[i] = "addr=" + srv.Addr
	}
	for _, tc := range []struct{ name, a, b string }{
		{"template", "t1=" + selfBin + " serve threads -p {port}", "t2=" + selfBin + " serve epoll-lt -p {port}"},
		{"fixed_port", "f1=" + fixed, "f2=" + fixed},
		{"addr", "a1=" + addrs[0], "a2=" + addrs[1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseContender(tc.a)
			if err != nil {
				t.Fatal(err)
			}
			b, err := ParseContender(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			var seen []string
			cfg := Config{Self: selfBin, Load: loadgen.Options{Clients: 1, Requests: 2000, Warmup: -1, CI: -1, P99CI: -1, Duration: 20 * time.Second, Timeout: stallTimeout}}
			v, err := Versus(context.Background(), cfg, Callbacks{}, a, b, Plan{Pairs: 2}, func(r Round) error {
				if r.Results != nil {
					seen = append(seen, r.Label+" "+r.Results.Meta.Server)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("vs %s %s: %v", tc.a, tc.b, err)
			}
			if v.Pairs != 2 || len(v.MeanA) != 2 || len(v.MeanB) != 2 {
				t.Errorf("verdict of %d pairs (%d, %d means), want 2", v.Pairs, len(v.MeanA), len(v.MeanB))
			}
			if len(seen) != 4 || !strings.HasPrefix(seen[0], a.Label+" ") || !strings.HasPrefix(seen[1], b.Label+" ") {
				t.Errorf("rounds %q, want %s and %s interleaved", seen, a.Label, b.Label)
			}
			t.Logf("rounds: %q", seen)
		})
	}
}

func freeTCPPort() (int, error) {
	srv, err := serverproc.Start(context.Background(), serverproc.Options{Argv: []string{selfBin, "serve", "threads"}})
	if err != nil {
		return 0, err
	}
	defer srv.Stop()
	return srv.Port, nil
}
