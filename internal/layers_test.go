// Package internal_test holds the layering of volleyscope's packages to
// what the README's package map promises.
package internal_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/volleyscope/volleyscope/"

// pkg is what 'go list -json' says of one package, as far as these tests
// read it.
type pkg struct {
	ImportPath                         string
	Deps                               []string
	Imports, TestImports, XTestImports []string
}

// list runs 'go list -json' over the module's packages.
func list(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Deps,Imports,TestImports,XTestImports", "../...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var ps []pkg
	for d := json.NewDecoder(strings.NewReader(string(out))); ; {
		var p pkg
		if err := d.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// TestLayers: the results model (internal/report) depends on no renderer
// (internal/render) nor on the output directory (internal/outdir), and
// nothing outside cmd/ imports the wiring package (internal/session),
// tests included.
func TestLayers(t *testing.T) {
	ps := list(t)
	if len(ps) < 10 {
		t.Fatalf("go list found %d packages: the module has more", len(ps))
	}
	for _, p := range ps {
		rel := strings.TrimPrefix(p.ImportPath, module)
		if rel == "internal/report" {
			for _, d := range p.Deps {
				if d == module+"internal/render" || d == module+"internal/outdir" {
					t.Errorf("the model internal/report depends on %s", strings.TrimPrefix(d, module))
				}
			}
		}
		if strings.HasPrefix(rel, "cmd/") || rel == "internal/session" {
			continue
		}
		for _, imps := range [][]string{p.Imports, p.TestImports, p.XTestImports} {
			for _, i := range imps {
				if i == module+"internal/session" {
					t.Errorf("%s imports internal/session, the wiring only cmd/ may use", rel)
				}
			}
		}
	}
}
