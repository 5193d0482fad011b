package session

import "testing"

// FuzzParseSpec: a server spec either parses into exactly one kind of
// server or is refused; it never panics.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"threads", "thread", "nosuch", "", " ", "port=abc:", "port=0:x", "port=6379:threads", "port=6379:", "addr=nonsense",
		"addr=127.0.0.1:99999", "addr=:1", "a=threads", "a=", "=threads", "/bin/true", "'/bin/sh' -c 'x", `"unterminated`, `\`, "./srv --port {port}", "a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			return
		}
		kinds := 0
		if sp.Builtin != "" {
			kinds++
		}
		if sp.Argv != nil {
			kinds++
		}
		if sp.Addr != "" {
			kinds++
		}
		if kinds != 1 {
			t.Fatalf("ParseSpec(%q) = %+v: want exactly one of Builtin, Argv, Addr", s, sp)
		}
	})
}

func FuzzParseContender(f *testing.F) {
	for _, s := range []string{"threads", "a=threads", "a=", "port=1:x", "addr=1.2.3.4:5", "", "'", "x y z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseContender(s)
		if err == nil && c.Label == "" && c.Server == "" {
			t.Fatalf("ParseContender(%q): empty contender and no error", s)
		}
	})
}

func FuzzCheckAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9000", "nonsense", "127.0.0.1:99999", ":9000", "[::1]:80", "[::1]", "a:b:c", "host:-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { _ = CheckAddr(s) })
}
