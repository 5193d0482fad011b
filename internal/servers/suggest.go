package servers

import (
	"fmt"
	"strings"
)

// Names lists the built-in servers' names, in the registry's order.
func Names() []string {
	names := make([]string, len(registry))
	for i, s := range registry {
		names[i] = s.Name
	}
	return names
}

// Unknown says that name is not a built-in server: the names there are,
// and the nearest of them when one is close enough to be a typo.
func Unknown(name string) string {
	msg := fmt.Sprintf("unknown server %q (built-in servers: %s)", name, strings.Join(Names(), ", "))
	if s := Suggest(name); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return msg
}

// Suggest returns the built-in server whose name is nearest to name by
// edit distance, or "" when none is within a third of the name's length
// (at least 2 edits): further than that a suggestion is a guess.
func Suggest(name string) string {
	best, bestD := "", max(2, len(name)/3)+1
	for _, s := range registry {
		if d := editDistance(strings.ToLower(name), s.Name); d < bestD {
			best, bestD = s.Name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
