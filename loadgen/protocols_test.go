package loadgen

import "testing"

// TestProtocolTable: every row is named once and described, parses, and
// says who speaks it; the built-in servers' protocols follow the rows.
func TestProtocolTable(t *testing.T) {
	seen := map[Proto]bool{}
	for _, p := range Protocols() {
		if p.Name == "" || p.Help == "" || seen[p.Name] {
			t.Errorf("row %+v: unnamed, undescribed or repeated", p)
		}
		seen[p.Name] = true
		if got, err := ParseProto(string(p.Name)); err != nil || got != p.Name {
			t.Errorf("ParseProto(%s) = %v, %v", p.Name, got, err)
		}
		if err := (&Options{Proto: p.Name, Line: LineOptions{Request: []byte("a"), Expect: []byte("b")}}).CheckProto(); err != nil {
			t.Errorf("CheckProto(%s): %v", p.Name, err)
		}
	}
	for _, tc := range []struct {
		builtin string
		speaks  Proto
		also    []Proto
		not     []Proto
	}{
		{"epoll-lt", PingPong, []Proto{Echo}, []Proto{HTTP, Redis, Memcache, Line}},
		{"http", HTTP, nil, []Proto{PingPong, Echo, Redis}},
		{"resp", Redis, nil, []Proto{PingPong, Echo, HTTP, Memcache}},
	} {
		if got := SpokenBy(tc.builtin); got != tc.speaks {
			t.Errorf("SpokenBy(%s) = %s, want %s", tc.builtin, got, tc.speaks)
		}
		for _, p := range append([]Proto{tc.speaks}, tc.also...) {
			if !Speaks(tc.builtin, p) {
				t.Errorf("Speaks(%s, %s) = false", tc.builtin, p)
			}
		}
		for _, p := range tc.not {
			if Speaks(tc.builtin, p) {
				t.Errorf("Speaks(%s, %s) = true", tc.builtin, p)
			}
		}
	}
}
