package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// usageError is a command line volleyscope cannot act on: a bad flag, a
// bad value, the wrong number of arguments. It exits with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// newFlagSet makes a subcommand's flag set. help is the command's text:
// its usage line, a paragraph, examples; --help prints it on stdout with
// the flags, if the command has any.
func newFlagSet(name, help string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(os.Stdout) // pflag prints only the --help text; errors are returned
	fs.Usage = func() {
		fmt.Fprintf(os.Stdout, "usage: %s\n", strings.TrimRight(help, "\n"))
		if fs.HasAvailableFlags() {
			fmt.Fprintf(os.Stdout, "\nflags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseArgs parses a subcommand's flags and checks it got exactly nargs
// positional arguments (want says what they are). help is true after
// --help, which has already printed the usage: the caller returns nil.
// Errors are usageErrors.
func parseArgs(fs *pflag.FlagSet, args []string, nargs int, want string) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return true, nil
		}
		return false, usagef("%s: %v (see 'volleyscope help %s')", fs.Name(), err, fs.Name())
	}
	if fs.NArg() != nargs {
		got := "none"
		if fs.NArg() > 0 {
			got = fmt.Sprintf("%q", fs.Args())
		}
		return false, usagef("%s: want %s, got %s (see 'volleyscope help %s')", fs.Name(), want, got, fs.Name())
	}
	return false, nil
}

// watchExitText is exitText for watch, for which Ctrl-C is how a watch
// without --duration ends, not an interruption.
const watchExitText = `
exit status: 0 done (its duration, Ctrl-C, or a watched process's exit);
1 error (what was measured is still printed and written); 2 bad command
line; 3 the probe lost events (results written, breakdown incomplete).`

// exitText is the exit-status paragraph of the commands that measure.
const exitText = `
exit status: 0 done; 1 error (what was measured is still printed and
written); 2 bad command line; 3 the probe lost events (results written,
breakdown incomplete); 130 interrupted (results so far written).`
