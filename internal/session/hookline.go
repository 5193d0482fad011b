package session

import (
	"fmt"
	"strings"

	"github.com/volleyscope/volleyscope/probe"
)

// hookLines describes the probe's hooks twice: short, one line for every
// run and every vs round (the mode, the ring, how many hooks attached and
// the families they came from, and the events without one, by name);
// long, every event's hook, for --verbose. results.json keeps the long
// form in meta.hooks.
func hookLines(mode, ring string, hooks []probe.Hook) (short, long string) {
	attached := 0
	var off, missing []string
	families := map[string]int{}
	var order []string
	var all []string
	for _, h := range hooks {
		switch h.State {
		case probe.HookAttached:
			attached++
			fam, _, _ := strings.Cut(h.Hook, "/")
			if families[fam] == 0 {
				order = append(order, fam)
			}
			families[fam]++
			all = append(all, h.Event+"="+h.Hook)
		case probe.HookOff:
			off = append(off, h.Event)
		case probe.HookMissing:
			missing = append(missing, h.Event)
		}
	}
	var fams []string
	for _, f := range order {
		fams = append(fams, fmt.Sprintf("%d %s", families[f], f))
	}
	short = fmt.Sprintf("mode %s, records on %s; %d of %d hooks attached", mode, ring, attached, attached+len(missing))
	if len(fams) > 0 {
		short += " (" + strings.Join(fams, ", ") + ")"
	}
	if len(missing) > 0 {
		short += "; missing: " + strings.Join(missing, ", ")
	}
	if len(off) > 0 {
		short += fmt.Sprintf("; %d off by choice", len(off))
	}
	long = fmt.Sprintf("mode %s, records on %s; %s", mode, ring, strings.Join(all, " "))
	if len(off) > 0 {
		long += "; off: " + strings.Join(off, ", ")
	}
	if len(missing) > 0 {
		long += "; missing: " + strings.Join(missing, ", ")
	}
	return short, long
}
