package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCredFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  s3cret \nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, tc := range []struct {
		token, file string
		want        string
		bad         bool
	}{
		{token: "abc", want: "abc"},
		{token: "  ", bad: true},
		{file: file, want: "s3cret"},
		{file: empty, bad: true},
		{bad: true},
		{token: "a", file: file, bad: true},
	} {
		f := credFlags{token: tc.token, tokenFile: tc.file}
		c, err := f.creds(true)
		if (err != nil) != tc.bad || c.Token != tc.want {
			t.Errorf("token %q, file %q: %q, %v", tc.token, tc.file, c.Token, err)
		}
		if err != nil && exitStatus(err) != statusUsage {
			t.Errorf("token %q, file %q: exit %d, want %d", tc.token, tc.file, exitStatus(err), statusUsage)
		}
	}
}
