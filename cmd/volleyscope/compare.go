package main

import (
	"os"

	"github.com/volleyscope/volleyscope/report"
)

const compareHelp = `volleyscope compare A.json B.json

Compares two results.json files written by 'run', 'bench' or 'vs --out'
(e.g. the same server on two kernels): the ratio B/A of the mean latency
with a confidence interval from the two runs' own intervals, and the
percentiles and breakdown components side by side. Before the numbers it
warns about everything that makes the runs not like for like: a run that
stopped early, had errors or lost probe events; the probe on in one and
off in the other; a different stop reason, kernel, CPU, server, load,
pinning or confidence level.

examples:
  volleyscope compare before/results.json after/results.json
  volleyscope compare vs-out/pair01-a.json vs-out/pair01-b.json

exit status: 0 compared (warnings included); 1 a run measured nothing to
compare; 2 bad command line, or a file that is not a results.json.`

func cmdCompare(args []string) error {
	fs := newFlagSet("compare", compareHelp)
	if help, err := parseArgs(fs, args, 2, "two results.json files"); help || err != nil {
		return err
	}
	var rs [2]*report.Results
	for i := range rs {
		r, err := report.ReadJSON(fs.Arg(i))
		if err != nil {
			return usageError{err}
		}
		rs[i] = r
	}
	return report.WriteComparison(os.Stdout, fs.Arg(0), rs[0], fs.Arg(1), rs[1])
}
