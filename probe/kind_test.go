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
	c, g := headerKinds(t), goKinds(t)
	if len(c) == 0 {
		t.Fatal("no KIND_* = N in bpf/volley.h's enum event_kind")
	}
	for name, v := range c {
		if gv, ok := g[name]; !ok || gv != v {
			t.Errorf("%s is %d in the header; its Go constant: %d (present: %v)", name, v, gv, ok)
		}
		if want := strings.ToLower(strings.TrimPrefix(name, "KIND_")); Kind(v).String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", v, Kind(v).String(), want)
		}
	}
	for name := range g {
		if _, ok := c[name]; !ok {
			t.Errorf("Go constant for %s is not in the header", name)
		}
	}
}

// headerKinds reads bpf/volley.h's enum event_kind: KIND_SOCK_SEND → 2.
func headerKinds(t *testing.T) map[string]uint64 {
	h, err := os.ReadFile("../bpf/volley.h")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(h), "enum event_kind {")
	body, _, _ = strings.Cut(body, "};")
	kinds := map[string]uint64{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(KIND_\w+)\s*=\s*(\d+)\s*,`).FindAllStringSubmatch(body, -1) {
		kinds[m[1]], _ = strconv.ParseUint(m[2], 10, 16)
	}
	return kinds
}

// goKinds reads event.go's Kind constants, named as the header names
// them: KindSockSend → KIND_SOCK_SEND.
func goKinds(t *testing.T) map[string]uint64 {
	f, err := parser.ParseFile(token.NewFileSet(), "event.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]uint64{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		if id, isIdent := vs.Type.(*ast.Ident); !isIdent || id.Name != "Kind" || len(vs.Values) != 1 {
			return false
		}
		lit, ok := vs.Values[0].(*ast.BasicLit)
		if !ok {
			t.Errorf("%s: want a literal value, as the header has", vs.Names[0].Name)
			return false
		}
		kinds[upperSnake(vs.Names[0].Name)], _ = strconv.ParseUint(lit.Value, 0, 16)
		return false
	})
	return kinds
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
