package session

import (
	"fmt"

	"github.com/volleyscope/volleyscope/internal/servers"
	"github.com/volleyscope/volleyscope/loadgen"
)

// pickProto settles the load's protocol against builtin, the built-in
// server the run starts ("" for any other server): with no protocol
// given the server's own is taken (ping-pong for the ping-pong servers),
// and a protocol the server does not speak is refused before anything
// starts. Any protocol goes with a server that is not built in.
func pickProto(load *loadgen.Options, builtin string) error {
	if builtin == "" {
		return nil
	}
	if _, err := servers.Lookup(builtin); err != nil {
		return err
	}
	speaks := loadgen.SpokenBy(builtin)
	switch {
	case load.Proto == "":
		load.Proto = speaks
		return nil
	case loadgen.Speaks(builtin, load.Proto):
		return nil
	case load.Proto == loadgen.Line:
		return nil // the user's own fixed exchange, for any server
	}
	var want string
	for _, s := range servers.All() {
		if loadgen.Speaks(s.Name, load.Proto) {
			if want != "" {
				want += ", "
			}
			want += s.Name
		}
	}
	if want == "" {
		want = "none is built in: start one with --server COMMAND or give --addr"
	} else {
		want = "built-in servers that do: " + want
	}
	return fmt.Errorf("built-in server %s speaks %s, not --proto %s: drop --proto to use %s, or pick a server that speaks %s (%s)",
		builtin, speaks, load.Proto, speaks, load.Proto, want)
}
