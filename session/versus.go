package session

import (
	"context"
	"fmt"
	"time"

	"github.com/volleyscope/volleyscope/report"
)

// Versus runs servers a and b in interleaved rounds (a b a b …), each round
// to the confidence target of cfg.Load, and returns the verdict. The same
// clients, payload and pinning are used for both. Interleaving makes slow
// drift of a shared machine (thermal, noisy neighbours) hit both equally,
// and the pairs give an interval for the ratio that accounts for it.
func Versus(ctx context.Context, cfg Config, a, b string, pairs int) (*report.Verdict, error) {
	if cfg.Load.Duration == 0 {
		cfg.Load.Duration = 10 * time.Second
	}
	v := &report.Verdict{A: a, B: b, Clients: max(cfg.Load.Clients, 1), Proto: string(cfg.Load.Proto), Confidence: cfg.Load.Confidence}
	if v.Proto == "" {
		v.Proto = "pingpong"
	}
	if v.Confidence == 0 {
		v.Confidence = 0.99
	}
	// Fail fast on a server name that cannot run, before any round.
	for _, s := range []string{a, b} {
		if _, _, err := ServerArgv(cfg.Self, s, cfg.Echo, cfg.ServerSpin); err != nil {
			return nil, err
		}
	}
	sums := map[string]*report.ComponentVs{}
	var order []string
	for i := 0; i < pairs; i++ {
		for k, name := range []string{a, b} {
			c := cfg
			c.Server = name
			if c.Note != nil {
				c.Note(fmt.Sprintf("pair %d/%d: %s", i+1, pairs, name))
			}
			out, err := Run(ctx, c)
			if err != nil {
				v.Pairs = len(v.MeanB)
				if v.Pairs >= 2 {
					v.MeanA, v.P50A, v.P99A, v.RPSA = v.MeanA[:v.Pairs], v.P50A[:v.Pairs], v.P99A[:v.Pairs], v.RPSA[:v.Pairs]
					v.Decide()
				}
				return v, fmt.Errorf("pair %d, %s: %w", i+1, name, err)
			}
			r := out.Results
			if v.Meta.Kernel == "" {
				v.Meta = r.Meta
				v.Meta.Server = a + " vs " + b
			}
			if k == 0 {
				v.P50A = append(v.P50A, r.Latency.P50)
			} else {
				v.P50B = append(v.P50B, r.Latency.P50)
			}
			if k == 0 {
				v.MeanA, v.P99A, v.RPSA = append(v.MeanA, r.Latency.Mean), append(v.P99A, r.Latency.P99), append(v.RPSA, r.ThroughputRPS)
			} else {
				v.MeanB, v.P99B, v.RPSB = append(v.MeanB, r.Latency.Mean), append(v.P99B, r.Latency.P99), append(v.RPSB, r.ThroughputRPS)
			}
			for _, comp := range r.Breakdown {
				key := comp.Side + "/" + comp.Component
				cv := sums[key]
				if cv == nil {
					cv = &report.ComponentVs{Component: comp.Component, Side: comp.Side}
					sums[key] = cv
					order = append(order, key)
				}
				if k == 0 {
					cv.MeanNsA += comp.MeanNs / float64(pairs)
				} else {
					cv.MeanNsB += comp.MeanNs / float64(pairs)
				}
			}
		}
	}
	v.Pairs = pairs
	for _, key := range order {
		v.Breakdown = append(v.Breakdown, *sums[key])
	}
	v.Decide()
	return v, nil
}
