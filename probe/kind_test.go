package probe

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// TestKindsMatchHeader holds the Kind constants to bpf/volley.h's enum
// event_kind, which they copy: the same kinds, by name and value, and a
// String for each that is the C name's suffix in lower case.
func TestKindsMatchHeader(t *testing.T) {
	h, err := os.ReadFile("../bpf/volley.h")
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(h), "enum event_kind {")
	body, _, ok2 := strings.Cut(body, "};")
	if !ok || !ok2 {
		t.Fatal("bpf/volley.h has no 'enum event_kind { … };'")
	}
	c := map[string]uint64{} // KIND_SOCK_SEND → 2
	for _, m := range regexp.MustCompile(`(?m)^\s*(KIND_\w+)\s*=\s*(\d+)\s*,`).FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseUint(m[2], 10, 16)
		c[m[1]] = v
	}
	if len(c) == 0 {
		t.Fatal("no KIND_* = N entries in enum event_kind")
	}

	f, err := parser.ParseFile(token.NewFileSet(), "event.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	goKinds := map[string]uint64{} // KIND_SOCK_SEND (from KindSockSend) → 2
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Kind" || len(vs.Values) != 1 {
				continue
			}
			lit, ok := vs.Values[0].(*ast.BasicLit)
			if !ok {
				t.Fatalf("%s: want a literal value, as the header has", vs.Names[0].Name)
			}
			v, _ := strconv.ParseUint(lit.Value, 0, 16)
			goKinds[upperSnake(vs.Names[0].Name)] = v
		}
	}
	for name, v := range c {
		gv, ok := goKinds[name]
		switch {
		case !ok:
			t.Errorf("%s = %d has no Go constant", name, v)
		case gv != v:
			t.Errorf("%s is %d in the header, %d in Go", name, v, gv)
		}
		if want := strings.ToLower(strings.TrimPrefix(name, "KIND_")); Kind(v).String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", v, Kind(v).String(), want)
		}
	}
	for name := range goKinds {
		if _, ok := c[name]; !ok {
			t.Errorf("Go constant for %s is not in the header", name)
		}
	}
}

// upperSnake turns KindSockSend into KIND_SOCK_SEND.
func upperSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) && i > 0 {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}
