package session

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/volleyscope/volleyscope/internal/report"
)

// Level is one load level of a sweep: a connection count, and in open
// loop a total rate of round trips per second.
type Level struct {
	Clients int
	Rate    float64
}

// Name is the level's directory name under a sweep's --out.
func (l Level) Name(i int) string {
	if l.Rate > 0 {
		return fmt.Sprintf("%02d-rate-%.0f", i+1, l.Rate)
	}
	return fmt.Sprintf("%02d-clients-%d", i+1, l.Clients)
}

// Sweep runs each server once per level, level by level, each run to its
// own stopping target (capped by cfg.Load.Duration), and names each
// server's knee. With several servers they take turns at every level, in
// an order that alternates from level to level, so that a machine's
// drift hits them alike. No server means cfg.Server alone. With cfg.Out
// set, each run writes its files into a directory of its own there
// (Level.Name, then "-LABEL" with several servers). A run that fails is
// kept as a point with its error and the sweep goes on; a cancelled ctx
// ends it with what was run. onRun, if set, sees each run as it ends.
func Sweep(ctx context.Context, cfg Config, cb Callbacks, servers []Contender, levels []Level, onRun func(i int, l Level, c Contender, res *report.Results, err error)) (*report.Sweep, error) {
	label := func(c Contender) string { return c.Label }
	if len(servers) == 0 {
		servers = []Contender{{Server: cfg.Server}}
	}
	if len(servers) == 1 {
		label = func(Contender) string { return "" }
	}
	seen := map[string]bool{}
	for _, c := range servers {
		if seen[c.Label] {
			return nil, fmt.Errorf("two servers are labelled %q: name them, e.g. --server a=%s", c.Label, c.Server)
		}
		seen[c.Label] = true
	}
	var points []report.SweepPoint
	for i, l := range levels {
		order := make([]int, len(servers))
		for k := range order {
			order[k] = k
		}
		if i%2 == 1 {
			slices.Reverse(order)
		}
		level := make([]*report.SweepPoint, len(servers)) // in the servers' order
		for _, k := range order {
			sv := servers[k]
			c := cfg.withServer(sv.Server)
			c.Load.Clients, c.Load.Rate = l.Clients, l.Rate
			if cfg.Out != "" {
				dir := l.Name(i)
				if label(sv) != "" {
					dir += "-" + label(sv)
				}
				c.Out = filepath.Join(cfg.Out, dir)
			}
			res, err := Run(ctx, c, cb)
			if onRun != nil {
				onRun(i, l, sv, res, err)
			}
			if res != nil {
				p := report.SweepPointOf(l.Clients, l.Rate, res)
				p.Server = label(sv)
				level[k] = &p
			} else if err != nil {
				level[k] = &report.SweepPoint{Server: label(sv), Clients: l.Clients, Rate: l.Rate, Error: err.Error(), StopReason: "error"}
			}
			if ctx.Err() != nil {
				break
			}
		}
		for _, p := range level {
			if p != nil {
				points = append(points, *p)
			}
		}
		if ctx.Err() != nil {
			return report.NewSweep(points), ctx.Err()
		}
	}
	return report.NewSweep(points), nil
}
