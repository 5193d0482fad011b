package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/volleyscope/volleyscope/servers"
)

func cmdServers(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("servers: takes no arguments")
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
