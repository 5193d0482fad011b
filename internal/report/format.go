package report

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Dur renders nanoseconds with a unit a person reads at a glance.
func Dur(ns float64) string {
	a := math.Abs(ns)
	switch {
	case math.IsNaN(ns) || math.IsInf(ns, 0):
		return "n/a"
	case a < 1e3:
		return fmt.Sprintf("%.0f ns", ns)
	case a < 1e4:
		return fmt.Sprintf("%.2f µs", ns/1e3)
	case a < 1e6:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	case a < 1e9:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	}
	return fmt.Sprintf("%.2f s", ns/1e9)
}

// SortedKeys returns m's keys in order, so that what is printed from a map
// reads the same from run to run.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// CPUList writes a CPU list as the flags take it, "any" when empty.
func CPUList(c []int) string {
	if len(c) == 0 {
		return "any"
	}
	s := make([]string, len(c))
	for i, v := range c {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ",")
}
