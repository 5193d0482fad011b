package loadgen

import "testing"

// The protocol-setting parsers refuse what they cannot read, never panic.

func FuzzUnescape(f *testing.F) {
	for _, s := range []string{`PING\r\n`, `\q`, `\x`, `\xZZ`, `\x4`, `\`, `\0`, `\\`, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { _, _ = Unescape(s) })
}

func FuzzParseMix(f *testing.F) {
	for _, s := range []string{"9:1", "0:0", "x:y", ":", "1", "-1:2", "99999999999999999999:1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMix(s)
		if err == nil && (m.Get < 0 || m.Set < 0) {
			t.Fatalf("ParseMix(%q) = %v: negative", s, m)
		}
	})
}

func FuzzParseProto(f *testing.F) {
	for _, s := range []string{"pingpong", "echo", "http", "smtp", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { _, _ = ParseProto(s) })
}
