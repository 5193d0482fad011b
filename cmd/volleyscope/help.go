package main

import (
	"errors"

	"github.com/spf13/pflag"
)

// errHelp returns pflag.ErrHelp when err is the request for --help, so
// callers can exit 0 after the usage was printed.
func errHelp(err error) error {
	if errors.Is(err, pflag.ErrHelp) {
		return pflag.ErrHelp
	}
	return errors.New("not help")
}
