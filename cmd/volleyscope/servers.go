package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/volleyscope/volleyscope/internal/servers"
)

const serversHelp = `volleyscope servers

Lists the built-in reference servers: each one's I/O model, what it needs
from the kernel, and whether it runs on this one. Any of them can be
benchmarked with --server NAME, run alone with 'volleyscope serve NAME',
or set against another with 'volleyscope vs A B'.

examples:
  volleyscope servers
  volleyscope bench --server iouring`

func cmdServers(args []string) error {
	fs := newFlagSet("servers", serversHelp)
	if help, err := parseArgs(fs, args, 0, "no arguments"); help || err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tI/O MODEL\tNEEDS\tON THIS KERNEL")
	for _, s := range servers.All() {
		ok := "yes"
		if err := servers.Check(s.Name); err != nil {
			ok = "no: " + err.Error()
		}
		req := s.Requires
		if req == "" {
			req = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Model, req, ok)
	}
	return tw.Flush()
}
