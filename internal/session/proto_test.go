package session

import (
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/loadgen"
)

func TestPickProto(t *testing.T) {
	for _, tc := range []struct {
		server string
		given  loadgen.Proto
		want   loadgen.Proto // after picking
		err    string        // in the error; "" for none
	}{
		{"http", "", loadgen.HTTP, ""},
		{"resp", "", loadgen.Redis, ""},
		{"threads", "", loadgen.PingPong, ""},
		{"", "", "", ""}, // not built in: loadgen's default
		{"", loadgen.Memcache, loadgen.Memcache, ""},
		{"threads", loadgen.Echo, loadgen.Echo, ""},
		{"http", loadgen.HTTP, loadgen.HTTP, ""},
		{"http", loadgen.Line, loadgen.Line, ""},
		{"threads", loadgen.HTTP, "", "built-in server threads speaks pingpong, not --proto http"},
		{"http", loadgen.PingPong, "", "built-in server http speaks http, not --proto pingpong"},
		{"resp", loadgen.Memcache, "", "none is built in"},
	} {
		o := loadgen.Options{Proto: tc.given}
		err := pickProto(&o, tc.server)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s with %q: err %v, want %q", tc.server, tc.given, err, tc.err)
			}
			continue
		}
		if err != nil || o.Proto != tc.want {
			t.Errorf("%s with %q: proto %q, %v; want %q", tc.server, tc.given, o.Proto, err, tc.want)
		}
	}
}
