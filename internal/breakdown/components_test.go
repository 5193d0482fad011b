package breakdown

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestREADMEComponents holds the README's component table to Table: the
// same names in the same order.
func TestREADMEComponents(t *testing.T) {
	if got := tableNames(t); !slices.Equal(got, Names()) {
		t.Errorf("README.md's component table lists %q,\nTable %q", got, Names())
	}
}

// tableNames is the first column of the README's component table, in
// order.
func tableNames(t *testing.T) (names []string) {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(readme), "\n| component | from | to |\n")
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			break
		}
		if name := strings.Trim(strings.TrimSpace(cells[1]), "`"); !strings.HasPrefix(name, "---") {
			names = append(names, name)
		}
	}
	return names
}

// TestTable: every row is filled, every name is unique, and Side and
// String read the table.
func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for c := range NumComponents {
		info := Table[c]
		if info.Name == "" || info.Color == "" || info.Meaning == "" || (info.Side != "client" && info.Side != "server" && info.Side != "remote") {
			t.Errorf("component %d: row %+v is not filled", c, info)
		}
		if seen[info.Name] {
			t.Errorf("component %q appears twice", info.Name)
		}
		seen[info.Name] = true
		if c.String() != info.Name || c.Side() != info.Side || ColorOf(info.Name) != info.Color {
			t.Errorf("component %d: String, Side or ColorOf disagree with its row", c)
		}
	}
}
