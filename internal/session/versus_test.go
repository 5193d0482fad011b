package session

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/internal/report"
)

func TestParseContender(t *testing.T) {
	for _, tc := range []struct {
		arg, label, server string
		err                bool
	}{
		{"goroutine", "goroutine", "goroutine", false},
		{"/opt/v1/server", "server", "/opt/v1/server", false},
		{"./myserver", "myserver", "./myserver", false},
		{"fast=/path/a", "fast", "/path/a", false},
		{"old=iouring", "old", "iouring", false},
		{"/odd/dir=x/server", "server", "/odd/dir=x/server", false}, // '=' inside a path is not a label
		{"fast=", "", "", true},
		{"", "", "", true},
	} {
		c, err := ParseContender(tc.arg)
		if (err != nil) != tc.err {
			t.Errorf("ParseContender(%q) error %v, want error: %v", tc.arg, err, tc.err)
			continue
		}
		if !tc.err && (c.Label != tc.label || c.Server != tc.server) {
			t.Errorf("ParseContender(%q) = %+v, want label %q server %q", tc.arg, c, tc.label, tc.server)
		}
	}
}

// rounds makes a verdict with na rounds of A and nb of B, each with a
// breakdown of one component whose mean is the round's number.
func rounds(na, nb int) (*report.Verdict, [2][][]report.Component) {
	v := &report.Verdict{A: "a", B: "b", Confidence: 0.99, PairsWanted: 5}
	var comps [2][][]report.Component
	for i := range na {
		x := float64(100 + i)
		v.MeanA, v.P50A, v.P99A, v.RPSA = append(v.MeanA, x), append(v.P50A, x), append(v.P99A, 2*x), append(v.RPSA, 1e4)
		comps[0] = append(comps[0], []report.Component{{Component: "server_user", Side: "server", MeanNs: float64(i + 1)}})
	}
	for i := range nb {
		x := float64(90 + i)
		v.MeanB, v.P50B, v.P99B, v.RPSB = append(v.MeanB, x), append(v.P50B, x), append(v.P99B, 2*x), append(v.RPSB, 1.1e4)
		comps[1] = append(comps[1], []report.Component{{Component: "server_user", Side: "server", MeanNs: float64(10 * (i + 1))}})
	}
	return v, comps
}

// TestFinish: a verdict only from two or more complete pairs; an A round
// whose B never ran is dropped; the error that stopped the rounds is kept.
func TestFinish(t *testing.T) {
	stop := errors.New("pair 4, b: server exited")
	for _, tc := range []struct {
		name    string
		na, nb  int
		runErr  error
		verdict bool
		pairs   int
	}{
		{"complete", 5, 5, nil, true, 5},
		{"stopped after three pairs and an A", 4, 3, stop, true, 3},
		{"stopped in the second pair", 2, 1, stop, false, 0},
		{"nothing", 0, 0, stop, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, comps := rounds(tc.na, tc.nb)
			got, err := finish(v, comps, tc.runErr)
			if tc.runErr != nil && !errors.Is(err, tc.runErr) {
				t.Errorf("error %v, want %v", err, tc.runErr)
			}
			if tc.runErr == nil && err != nil {
				t.Errorf("error %v", err)
			}
			if (got != nil) != tc.verdict {
				t.Fatalf("verdict %v, want one: %v", got, tc.verdict)
			}
			if got == nil {
				return
			}
			if got.Pairs != tc.pairs || len(got.MeanA) != tc.pairs || len(got.MeanB) != tc.pairs {
				t.Errorf("pairs %d (A %d, B %d rounds), want %d", got.Pairs, len(got.MeanA), len(got.MeanB), tc.pairs)
			}
			if got.Summary == "" {
				t.Error("no verdict sentence")
			}
			// The breakdown averages the complete pairs only: A 1..n, B 10..10n.
			n := float64(tc.pairs)
			if len(got.Breakdown) != 1 || got.Breakdown[0].MeanNsA != (n+1)/2 || got.Breakdown[0].MeanNsB != 10*(n+1)/2 {
				t.Errorf("breakdown %+v, want A %v B %v", got.Breakdown, (n+1)/2, 10*(n+1)/2)
			}
		})
	}
}

// TestVersusOneProtocol: without --proto each built-in server speaks its
// own protocol, so two servers of different protocols are refused before
// any round starts; the same two under a protocol both accept are not
// refused for it.
func TestVersusOneProtocol(t *testing.T) {
	a, _ := ParseContender("threads")
	b, _ := ParseContender("http")
	_, err := Versus(context.Background(), Config{}, Callbacks{}, a, b, Plan{Pairs: 5}, nil)
	if err == nil || !strings.Contains(err.Error(), "speaks") {
		t.Fatalf("threads vs http: err %v, want a refusal naming the protocols", err)
	}
}
