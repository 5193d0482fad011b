package main

import (
	"testing"
)

// The flag-value parsers of the command line must refuse what they
// cannot read, never panic. 'make test' runs the seed corpus; 'go test
// -fuzz FuzzX' explores further.

func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"", "0", "0,1", "0-1", "1-0", "x", "0,,", "-1", "0-99999999999", "1 , 2-3", "9223372036854775807", "0--1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cpus, err := parseCPUList(s, 4)
		for _, c := range cpus {
			if err == nil && (c < 0 || c >= 4) {
				t.Fatalf("parseCPUList(%q) = %v: CPU %d out of range", s, cpus, c)
			}
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{"2xx", "7xx", "404", "200-399", "399-200", "", "-", "x", "1xx-5xx"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := parseStatus(s)
		if err == nil && (lo < 100 || hi > 599 || lo > hi) {
			t.Fatalf("parseStatus(%q) = %d-%d", s, lo, hi)
		}
	})
}

func FuzzSweepLevels(f *testing.F) {
	for _, s := range [][2]string{{"1,4,16", ""}, {"1,,4", ""}, {"4,1", ""}, {"4,4", ""}, {"8", "1000,2000"}, {"8", "NaN"}, {"8", "-1,Inf"}, {"99999999999", ""}, {",", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, clients, rates string) {
		levels, _, err := sweepLevels(clients, rates)
		if err != nil {
			return
		}
		if len(levels) == 0 {
			t.Fatalf("sweepLevels(%q, %q): no levels and no error", clients, rates)
		}
		for i := 1; i < len(levels); i++ {
			a, b := levels[i-1], levels[i]
			if a.Clients > b.Clients || (a.Clients == b.Clients && a.Rate >= b.Rate) {
				t.Fatalf("sweepLevels(%q, %q) = %v: not strictly ascending", clients, rates, levels)
			}
		}
	})
}

// FuzzRunFlags parses run's command line with fuzzed values of the flags
// that take free text: config and the preflight checks must refuse or
// accept, never panic. Nothing is started: parseRun only reads.
func FuzzRunFlags(f *testing.F) {
	for _, tc := range malformed {
		if tc.args[0] == "bench" && len(tc.args) == 3 {
			f.Add(tc.args[1], tc.args[2])
		}
	}
	f.Fuzz(func(t *testing.T, flag, value string) {
		_, _, _, _ = parseRun([]string{flag, value}, false)
	})
}
