package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/volleyscope/volleyscope/report"
	"github.com/volleyscope/volleyscope/stats"
)

const compareSynopsis = `volleyscope compare A.json B.json

Compares two results.json files (e.g. the same server on two kernels):
the ratio B/A of the mean latency with a confidence interval, and the
percentiles and breakdown components side by side.`

func cmdCompare(args []string) error {
	fs := newFlagSet("compare", compareSynopsis)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, errHelp(err)) {
			return nil
		}
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return fmt.Errorf("compare: want two results.json files")
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

var _ = stats.Interval{}
var _ = tabwriter.AlignRight
