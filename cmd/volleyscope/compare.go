package main

import (
	"os"

	"github.com/volleyscope/volleyscope/report"
)

const compareSynopsis = `volleyscope compare A.json B.json

Compares two results.json files (e.g. the same server on two kernels):
the ratio B/A of the mean latency with a confidence interval, and the
percentiles and breakdown components side by side.`

func cmdCompare(args []string) error {
	fs := newFlagSet("compare", compareSynopsis)
	if help, err := parseArgs(fs, args, 2, "two results.json files"); help || err != nil {
		return err
	}
	a, err := report.ReadJSON(fs.Arg(0))
	if err != nil {
		return err
	}
	b, err := report.ReadJSON(fs.Arg(1))
	if err != nil {
		return err
	}
	return report.WriteComparison(os.Stdout, fs.Arg(0), a, fs.Arg(1), b)
}
