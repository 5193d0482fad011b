package session

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/stats"
	"github.com/volleyscope/volleyscope/loadgen"
)

// DefaultRoundDuration caps each round of Versus when cfg.Load.Duration is
// zero: rounds usually stop earlier, at the confidence target.
const DefaultRoundDuration = 10 * time.Second

// ErrNothingMeasured is wrapped by Versus's error when a round ended
// without an error but with no measured round trip (a run too short for
// its warm-up, for instance): no verdict is drawn from such a round.
var ErrNothingMeasured = errors.New("no round trips measured")

// Defaults of a sequential Versus (Plan's zero values).
const (
	DefaultBudget   = 3 * time.Minute
	DefaultMaxPairs = 40
	DefaultMargin   = 0.05
)

// Plan says how many pairs Versus runs. The zero value is sequential:
// pairs continue until the p50 verdict is conclusive (a difference, or
// an equivalence within Margin), looking at stats.LookAt's pair counts at
// the levels of stats.LookConfidence, or until Budget or MaxPairs is
// spent.
type Plan struct {
	Pairs    int           // a fixed number of pairs (at least 2), one look at the end; 0: sequential
	Budget   time.Duration // sequential: no pair starts after this much wall time; default DefaultBudget
	MaxPairs int           // sequential: at most this many pairs; default DefaultMaxPairs
	Margin   float64       // ±fraction within which A and B are equivalent; default DefaultMargin
}

// Contender is one side of Versus.
type Contender struct {
	Label  string // short name in tables and sentences
	Server string // a server spec (SpecSyntax), without its label
}

// ParseContender reads a 'vs' argument, a server spec (SpecSyntax): its
// NAME= label, or else the built-in name, the command's base name or the
// address. It only reads the text; Versus checks that the server can run.
func ParseContender(arg string) (Contender, error) {
	if label, server, ok := strings.Cut(arg, "="); ok && isLabel(label) && label != "addr" && label != "port" {
		if strings.TrimSpace(server) == "" {
			return Contender{}, fmt.Errorf("server %q: no server after %q", arg, label+"=")
		}
		return Contender{Label: label, Server: server}, nil
	}
	if strings.TrimSpace(arg) == "" {
		return Contender{}, errors.New("empty server spec: " + SpecSyntax)
	}
	label := arg
	if a, ok := strings.CutPrefix(arg, "addr="); ok {
		label = a
	} else {
		if _, cmd, ok := strings.Cut(arg, ":"); ok && strings.HasPrefix(arg, "port=") {
			label = cmd
		}
		if w, err := splitWords(label); err == nil {
			label = filepath.Base(w[0])
		}
	}
	return Contender{Label: label, Server: arg}, nil
}

// Round is one measured round of Versus, handed to its callback as soon as
// it ends.
type Round struct {
	Pair int    // 1-based
	Side string // "a" or "b"
	Contender
	Results *report.Results // what the round measured; nil when nothing was
	Err     error           // why the round failed; nil for a complete round
}

// Versus runs a and b in interleaved rounds (a b a b …), each round to the
// confidence target of cfg.Load (capped by cfg.Load.Duration, or
// DefaultRoundDuration when that is zero), and returns the verdict. The
// same clients, payload and pinning are used for both. Interleaving makes
// slow drift of a shared machine (thermal, noisy neighbours) hit both
// equally, and the pairs give an interval for the ratio that accounts for
// it.
//
// onRound, if not nil, is called after every round, failed ones included;
// an error from it stops the rounds. A round that fails, or measures
// nothing (ErrNothingMeasured), stops the rounds too: Versus then returns
// the verdict of the complete pairs before it if there are at least two
// (Verdict.Pairs < Verdict.PairsWanted), or a nil verdict, with the
// round's error. Cancelling ctx stops the same way, with ctx's error.
func Versus(ctx context.Context, cfg Config, cb Callbacks, a, b Contender, plan Plan, onRound func(Round) error) (*report.Verdict, error) {
	if a.Label == b.Label {
		return nil, fmt.Errorf("both servers are labelled %q: name them, e.g. 'a=%s b=%s'", a.Label, a.Server, b.Server)
	}
	if plan.Pairs == 1 || plan.Pairs < 0 {
		return nil, fmt.Errorf("vs: %d pairs: at least 2 are needed for an interval", plan.Pairs)
	}
	if plan.Budget <= 0 {
		plan.Budget = DefaultBudget
	}
	if plan.MaxPairs <= 0 {
		plan.MaxPairs = DefaultMaxPairs
	}
	if plan.Margin <= 0 {
		plan.Margin = DefaultMargin
	}
	pairs := plan.Pairs
	if pairs == 0 {
		pairs = plan.MaxPairs
	}
	if cfg.Load.Duration == 0 {
		cfg.Load.Duration = DefaultRoundDuration
	}
	// Both rounds speak one protocol: the one given, else the one the
	// built-in servers speak (refused when the two differ), else ping-pong.
	proto := cfg.Load.Proto
	for _, c := range []Contender{a, b} {
		sp, err := ParseSpec(c.Server)
		if err != nil {
			return nil, err
		}
		load := cfg.Load
		if err := pickProto(&load, sp.Builtin); err != nil {
			return nil, err
		}
		if load.Proto != "" && proto != "" && load.Proto != proto {
			return nil, fmt.Errorf("%s speaks %s and the other server %s: a verdict compares servers under one load; give --proto, or pick servers that speak the same protocol", c.Label, load.Proto, proto)
		}
		if proto == "" {
			proto = load.Proto
		}
	}
	if proto == "" {
		proto = loadgen.PingPong
	}
	cfg.Load.Proto = proto
	if cfg.Load.Confidence == 0 {
		cfg.Load.Confidence = loadgen.DefaultConfidence
	}
	v := &report.Verdict{
		A: a.Label, B: b.Label, ServerA: a.Server, ServerB: b.Server,
		Clients: max(cfg.Load.Clients, 1), Proto: string(cfg.Load.Proto), Confidence: cfg.Load.Confidence, PairsWanted: plan.Pairs,
		Margin: plan.Margin,
	}
	began := time.Now()
	defer func() { v.Elapsed = time.Since(began).Seconds() }()
	// Fail fast on a server that cannot run, before any round.
	for _, c := range []Contender{a, b} {
		sp, err := ParseSpec(c.Server)
		if err == nil && sp.Addr == "" && cfg.Agent == "" { // an agent's servers are its own to start
			_, err = serverOptions(cfg.Self, sp, cfg.Load.Proto, cfg.ServerSpin)
		}
		if err != nil {
			return nil, err
		}
	}
	var comps [2][][]report.Component // per side, per round
	look := 0                         // looks taken so far (sequential)
	for i := 1; i <= pairs; i++ {
		if plan.Pairs == 0 && i > 1 && time.Since(began) > plan.Budget {
			v.StopReason = "budget"
			break
		}
		for k, c := range []Contender{a, b} {
			rc := cfg.withServer(c.Server)
			cb.note(fmt.Sprintf("pair %d/%d: %s", i, pairs, c.Label))
			res, err := Run(ctx, rc, cb)
			if err == nil && ctx.Err() != nil {
				err = ctx.Err()
			}
			if err == nil && (res == nil || res.Latency.Count == 0) {
				err = fmt.Errorf("%w (the round ended before its warm-up did: lengthen --duration, shorten --warmup, or raise --requests)", ErrNothingMeasured)
			}
			round := Round{Pair: i, Side: string("ab"[k]), Contender: c, Results: res, Err: err}
			if onRound != nil {
				if cerr := onRound(round); cerr != nil {
					err = errors.Join(err, cerr)
				}
			}
			if err != nil {
				v.StopReason = "error"
				if plan.Pairs == 0 {
					v.LookConfidence = lastLook(v, look)
				}
				return finish(v, comps, fmt.Errorf("pair %d, %s (%s): %w", i, c.Label, c.Server, err))
			}
			r := res
			if v.Meta.Kernel == "" {
				v.Meta = r.Meta
				v.Meta.Server = a.Label + " vs " + b.Label
			}
			comps[k] = append(comps[k], r.Breakdown)
			if k == 0 {
				v.ClientSaturatedA = append(v.ClientSaturatedA, report.ClientLimited(r))
			} else {
				v.ClientSaturatedB = append(v.ClientSaturatedB, report.ClientLimited(r))
			}
			var cost proccost.Cost // zero when unknown: no cost ratio then
			if r.ServerCost != nil {
				cost = *r.ServerCost
			}
			if k == 0 {
				v.CostA = append(v.CostA, cost)
			} else {
				v.CostB = append(v.CostB, cost)
			}
			if k == 0 {
				v.MeanA, v.P50A, v.P99A, v.RPSA = append(v.MeanA, r.Latency.Mean), append(v.P50A, r.Latency.P50), append(v.P99A, r.Latency.P99), append(v.RPSA, r.ThroughputRPS)
			} else {
				v.MeanB, v.P50B, v.P99B, v.RPSB = append(v.MeanB, r.Latency.Mean), append(v.P50B, r.Latency.P50), append(v.P99B, r.Latency.P99), append(v.RPSB, r.ThroughputRPS)
			}
		}
		if plan.Pairs == 0 {
			if j, ok := stats.LookAt(i); ok {
				look = j
				if d, err := decideAt(v, i, stats.LookConfidence(v.Confidence, j)); err == nil && d.Conclusive {
					v.StopReason = "conclusive"
					break
				}
			}
		}
	}
	if v.StopReason == "" {
		v.StopReason = "pairs"
		if plan.Pairs == 0 {
			v.StopReason = "max_pairs"
		}
	}
	if plan.Pairs == 0 {
		v.LookConfidence = lastLook(v, look)
	}
	return finish(v, comps, nil)
}

// lastLook is the level of a sequential Versus's final verdict, after
// looks so far: that look's level if the complete pairs are a look's
// count (it was taken), else the next look's.
func lastLook(v *report.Verdict, looks int) float64 {
	if _, ok := stats.LookAt(min(len(v.MeanA), len(v.MeanB))); !ok {
		looks++
	}
	return stats.LookConfidence(v.Confidence, looks)
}

// decideAt is v's verdict from its first n pairs at level, v unchanged.
func decideAt(v *report.Verdict, n int, level float64) (*report.Verdict, error) {
	d := *v
	d.Pairs, d.LookConfidence, d.Metrics = n, level, nil
	err := d.Decide()
	return &d, err
}

// finish keeps v's complete pairs, averages their breakdowns and decides.
// With fewer than two complete pairs there is no verdict: it returns nil
// and runErr, or the reason there is none.
func finish(v *report.Verdict, comps [2][][]report.Component, runErr error) (*report.Verdict, error) {
	n := min(len(v.MeanA), len(v.MeanB))
	v.Pairs = n
	v.MeanA, v.P50A, v.P99A, v.RPSA = v.MeanA[:n], v.P50A[:n], v.P99A[:n], v.RPSA[:n]
	v.MeanB, v.P50B, v.P99B, v.RPSB = v.MeanB[:n], v.P50B[:n], v.P99B[:n], v.RPSB[:n]
	v.CostA, v.CostB = v.CostA[:min(n, len(v.CostA))], v.CostB[:min(n, len(v.CostB))]
	v.Breakdown = averageBreakdowns(comps[0][:n], comps[1][:n])
	v.ClientSaturatedA, v.ClientSaturatedB = v.ClientSaturatedA[:min(n, len(v.ClientSaturatedA))], v.ClientSaturatedB[:min(n, len(v.ClientSaturatedB))]
	v.Caveat = v.SaturationCaveat(n)
	if err := v.Decide(); err != nil {
		if runErr != nil {
			return nil, runErr
		}
		return nil, err
	}
	return v, runErr
}

// grow extends xs with zeros to n values.
func grow(xs []float64, n int) []float64 {
	for len(xs) < n {
		xs = append(xs, 0)
	}
	return xs
}

// averageBreakdowns averages each component's mean over the rounds of
// each side, in the order the components first appear.
func averageBreakdowns(a, b [][]report.Component) []report.ComponentVs {
	idx := map[string]int{}
	var out []report.ComponentVs
	for side, rounds := range [][][]report.Component{a, b} {
		for r, round := range rounds {
			for _, c := range round {
				key := c.Side + "/" + c.Component
				i, ok := idx[key]
				if !ok {
					i = len(out)
					idx[key] = i
					out = append(out, report.ComponentVs{Component: c.Component, Side: c.Side})
				}
				if side == 0 {
					out[i].MeanNsA += c.MeanNs / float64(len(a))
				} else {
					out[i].MeanNsB += c.MeanNs / float64(len(b))
				}
				out[i].PairNsA = grow(out[i].PairNsA, len(a))
				out[i].PairNsB = grow(out[i].PairNsB, len(b))
				if side == 0 {
					out[i].PairNsA[r] = c.MeanNs
				} else {
					out[i].PairNsB[r] = c.MeanNs
				}
			}
		}
	}
	return out
}
