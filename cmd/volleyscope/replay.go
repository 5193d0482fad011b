package main

import (
	"context"
	"os"
	"time"

	"github.com/volleyscope/volleyscope/internal/session"
)

const replayHelp = `volleyscope replay FILE [flags]

Joins and reports a recording made with 'run --record FILE' offline: the
recorded kernel events split the recorded round trips as the run did,
through the same join and summary, and --out writes the same files.
The host facts of the machine that recorded it are not in the file.

examples:
  volleyscope run --record /tmp/run.rec.gz && volleyscope replay /tmp/run.rec.gz
  volleyscope replay /tmp/run.rec.gz --out /tmp/again --json
`

func cmdReplay(ctx context.Context, args []string) error {
	fs := newFlagSet("replay", replayHelp)
	lf := &loadFlags{}
	fs.StringVar(&lf.out, "out", "", "write results.json, requests.csv, latency.hlog, report.html and trace.json into this directory")
	fs.BoolVar(&lf.json, "json", false, "results.json on stdout instead of the summary")
	if help, err := parseArgs(fs, args, 1, "one recording file"); help || err != nil {
		return err
	}
	path := fs.Arg(0)
	if _, err := os.Stat(path); err != nil {
		return usagef("replay: %v", err)
	}
	started := time.Now()
	res, err := session.Replay(ctx, path, session.Config{Out: lf.out}, session.Callbacks{})
	if res == nil {
		return err
	}
	return emit(res, lf, err, started)
}
