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
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "\n| component | from | to |\n")
	if !ok {
		t.Fatal("README.md has no '| component | from | to |' table")
	}
	var got []string
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cell := strings.TrimSpace(strings.Split(line, "|")[1])
		if strings.HasPrefix(cell, "---") {
			continue
		}
		got = append(got, strings.Trim(cell, "`"))
	}
	if !slices.Equal(got, Names()) {
		t.Errorf("README's component table lists %q,\nTable %q", got, Names())
	}
}

// TestTable: every row is filled, every name is unique, and Side and
// String read the table.
func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for c := range NumComponents {
		info := Table[c]
		if info.Name == "" || info.Color == "" || info.Meaning == "" || (info.Side != "client" && info.Side != "server") {
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
