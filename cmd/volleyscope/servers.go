package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/volleyscope/volleyscope/internal/servers"
	"github.com/volleyscope/volleyscope/loadgen"
)

const serversHelp = `volleyscope servers

Lists the built-in reference servers: each one's I/O model, what it needs
from the kernel, and whether it runs on this one; then the protocols
(--proto): what a round trip of each sends, the port its servers listen on
by convention, and the built-in server that speaks it. Any of them can be
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
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "PROTOCOL\tA ROUND TRIP\tPORT\tBUILT-IN SERVER")
	for _, p := range loadgen.Protocols() {
		port, srv := "-", p.Builtin
		if p.DefaultPort > 0 {
			port = fmt.Sprint(p.DefaultPort)
		}
		switch {
		case p.Common:
			srv = "every other"
		case srv == "":
			srv = "none"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.Help, port, srv)
	}
	return tw.Flush()
}
