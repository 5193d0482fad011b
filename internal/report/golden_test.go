package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// readTestResults reads one of the results.json files that the tests of
// report and render share.
func readTestResults(t *testing.T, name string) *Results {
	t.Helper()
	r, err := ReadJSON(filepath.Join("../../testdata/results", name))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testVerdict is the rounds of an A/B comparison, not yet decided.
func testVerdict(t *testing.T) *Verdict {
	t.Helper()
	b, err := os.ReadFile("../../testdata/results/verdict-rounds.json")
	if err != nil {
		t.Fatal(err)
	}
	var v Verdict
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

// TestDecideRefuses: no verdict from fewer than two pairs or from a round
// that measured nothing, whose ratios would be NaN or [0, 0].
func TestDecideRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(v *Verdict)
	}{
		{"one pair", func(v *Verdict) { v.Pairs = 1 }},
		{"no pairs", func(v *Verdict) { v.Pairs = 0 }},
		{"zero mean", func(v *Verdict) { v.MeanB[3] = 0 }},
		{"zero throughput", func(v *Verdict) { v.RPSA[0] = 0 }},
		{"short slice", func(v *Verdict) { v.P99B = v.P99B[:4] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := testVerdict(t)
			tc.edit(v)
			if err := v.Decide(); !errors.Is(err, ErrNoVerdict) {
				t.Fatalf("Decide() = %v, want ErrNoVerdict", err)
			}
			if v.Summary != "" {
				t.Errorf("Summary = %q after a refusal", v.Summary)
			}
		})
	}
}

// TestDifferences: every difference in meta and run status is named.
func TestDifferences(t *testing.T) {
	a := readTestResults(t, "results-probed.json")
	if d := Differences("A", a, "B", a); len(d) != 0 {
		t.Errorf("a run differs from itself: %q", d)
	}
	b := readTestResults(t, "results-bench-interrupted.json")
	d := Differences("A", a, "B", b)
	for _, want := range []string{
		"B stopped early (interrupted): its numbers cover what was measured before",
		"B ended with 1 error(s), the first: interrupted",
		"probe differs: A on, B off",
		"stop reason differs: A target, B interrupted",
		"kernel differs: A 6.18.44, B 6.1.0-56-cloud-amd64",
		"CPU model differs: A AMD EPYC, B Intel Xeon",
		"CPU count differs: A 2, B 4",
		"server differs: A goroutine, B iouring",
		"different load: A 1 connection(s), closed loop, B 4 connection(s), closed loop",
		"proto differs: A pingpong, B echo",
		"payload size (bytes) differs: A 0, B 512",
		"client CPUs differs: A 1, B 1,2,3",
	} {
		found := false
		for _, s := range d {
			found = found || s == want
		}
		if !found {
			t.Errorf("Differences lacks %q; got:\n%q", want, d)
		}
	}
}

func TestReadJSONRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body string
		notResults bool
	}{
		{"other object", `{"foo":1}`, true},
		{"array", `[1,2]`, true},
		{"not json", `latency 5`, true},
		{"no run section", `{"meta":{},"latency_ns":{}}`, true},
		{"newer schema", `{"schema":99,"meta":{},"latency_ns":{},"run":{}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "x.json")
			if err := os.WriteFile(path, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadJSON(path)
			if err == nil {
				t.Fatal("ReadJSON accepted it")
			}
			if errors.Is(err, ErrNotResults) != tc.notResults {
				t.Errorf("ReadJSON = %v; ErrNotResults expected: %v", err, tc.notResults)
			}
		})
	}
	// A file WriteJSON wrote reads back, with its schema.
	var buf bytes.Buffer
	if err := WriteJSON(&buf, &Results{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ok.json")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Schema != ResultsSchema {
		t.Errorf("schema %d, want %d", r.Schema, ResultsSchema)
	}
}
