package main

import (
	"crypto/sha256"
	"errors"
	"os"

	"github.com/spf13/pflag"

	"github.com/volleyscope/volleyscope/internal/render"
	"github.com/volleyscope/volleyscope/internal/report"
)

const compareHelp = `volleyscope compare A.json B.json [C.json …]
volleyscope compare A1.json A2.json … -- B1.json B2.json …

Compares results.json files written by 'run', 'bench', 'sweep' or 'vs
--out', e.g. the same server on two kernels: record on each kernel, then
compare. First it warns about everything that makes the runs not like for
like: a run that stopped early, had errors or lost probe events; the probe
on in one and off in another; a different stop reason, kernel, CPU
vulnerability mitigation, CPU, server, load, pinning or confidence level.
Then the percentiles, throughput, the server's CPU per request, every
breakdown component and syscall side by side, with ratios to A.

A verdict needs the spread of whole runs, which one run cannot give: two
files (one run per side) get the differences only, with no verdict and
no significance. Give each side as a group of repeated runs, separated by
--, and each metric's ratio B/A (of the runs' geometric means) gets an
interval across the runs and a verdict (a difference, or equivalence
within ±5%). Each run is given once: a file given twice (or a copy of
it) is refused, since repeats of one run are not independent.

examples:
  volleyscope compare before/results.json after/results.json
  volleyscope compare k61/run1.json k61/run2.json k61/run3.json -- k618/run1.json k618/run2.json k618/run3.json

exit status: 0 compared (warnings included); 1 a run measured nothing to
compare; 2 bad command line, or a file that is not a results.json.`

func cmdCompare(args []string) error {
	fs := newFlagSet("compare", compareHelp)
	conf := fs.Float64("confidence", 0, "level of the intervals (0: the first run's)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return usagef("compare: %v (see 'volleyscope help compare')", err)
	}
	if *conf < 0 || *conf >= 1 {
		return usagef("compare: --confidence %g: want a level between 0 and 1, e.g. 0.99", *conf)
	}
	var groups [][]string
	if dash := fs.ArgsLenAtDash(); dash >= 0 {
		groups = [][]string{fs.Args()[:dash], fs.Args()[dash:]}
		if len(groups[0]) == 0 || len(groups[1]) == 0 {
			return usagef("compare: want runs on both sides of --, got %d and %d", len(groups[0]), len(groups[1]))
		}
	} else {
		for _, a := range fs.Args() {
			groups = append(groups, []string{a})
		}
		if len(groups) < 2 {
			return usagef("compare: want two or more results.json files, or two groups split by -- (see 'volleyscope help compare')")
		}
	}
	if err := distinctFiles(groups); err != nil {
		return err
	}
	named := make([][]report.Named, len(groups))
	for gi, g := range groups {
		for _, path := range g {
			r, err := report.ReadJSON(path)
			if err != nil {
				return usageError{err}
			}
			named[gi] = append(named[gi], report.Named{Name: path, R: r})
		}
	}
	return render.WriteComparison(os.Stdout, named, *conf)
}

// distinctFiles refuses a run given twice, by the same file, a link to it
// or a copy of it: repeats of one run are not independent runs, and
// would shrink an interval across runs to nothing.
func distinctFiles(groups [][]string) error {
	type seen struct {
		path string
		fi   os.FileInfo
		sum  [sha256.Size]byte
	}
	var all []seen
	for _, g := range groups {
		for _, path := range g {
			fi, err := os.Stat(path)
			if err != nil {
				continue // ReadJSON says why
			}
			b, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			cur := seen{path, fi, sha256.Sum256(b)}
			for _, p := range all {
				if os.SameFile(p.fi, fi) || p.sum == cur.sum {
					return usagef("compare: %s and %s are the same run: a comparison needs independent runs, each recorded on its own", p.path, path)
				}
			}
			all = append(all, cur)
		}
	}
	return nil
}
