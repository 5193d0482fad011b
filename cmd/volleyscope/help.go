package main

import (
	"errors"
	"fmt"

	"github.com/spf13/pflag"
)

// parseArgs parses a subcommand's flags and checks it got exactly nargs
// positional arguments (want says what they are). help is true after
// --help, which has already printed the usage: the caller returns nil.
func parseArgs(fs *pflag.FlagSet, args []string, nargs int, want string) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return true, nil
		}
		return false, err
	}
	if fs.NArg() != nargs {
		fs.Usage()
		return false, fmt.Errorf("%s: want %s", fs.Name(), want)
	}
	return false, nil
}
