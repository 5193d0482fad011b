package session

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/volleyscope/volleyscope/report"
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

// Sweep runs cfg once per level, in order, each run to its own stopping
// target (capped by cfg.Load.Duration), and names the knee. With cfg.Out
// set, each run writes its files into a directory of its own there
// (Level.Name). A run that fails is kept as a point with its error and the
// sweep goes on; a cancelled ctx ends it with what was run. onRun, if set,
// sees each run as it ends.
func Sweep(ctx context.Context, cfg Config, levels []Level, onRun func(i int, l Level, out *Outcome, err error)) (*report.Sweep, error) {
	var points []report.SweepPoint
	for i, l := range levels {
		c := cfg
		c.Load.Clients, c.Load.Rate = l.Clients, l.Rate
		if cfg.Out != "" {
			c.Out = filepath.Join(cfg.Out, l.Name(i))
		}
		out, err := Run(ctx, c)
		if onRun != nil {
			onRun(i, l, out, err)
		}
		if out != nil {
			points = append(points, report.SweepPointOf(l.Clients, l.Rate, out.Results))
		} else if err != nil {
			points = append(points, report.SweepPoint{Clients: l.Clients, Rate: l.Rate, Error: err.Error(), StopReason: "error"})
		}
		if ctx.Err() != nil {
			return report.NewSweep(points), ctx.Err()
		}
	}
	return report.NewSweep(points), nil
}
