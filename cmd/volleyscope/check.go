package main

import (
	"errors"

	"github.com/volleyscope/volleyscope/internal/session"
)

// preflight checks cfg against each server spec the command will start
// (none: cfg.Server or cfg.Addr) with session.Check, before anything
// starts, so that a value the run cannot use exits 2 naming its flag
// rather than failing later with status 1.
func preflight(cfg session.Config, specs ...string) error {
	if len(specs) == 0 {
		return asUsage(session.Check(cfg))
	}
	for _, sp := range specs {
		c := cfg
		c.Server = sp
		if err := asUsage(session.Check(c)); err != nil {
			return err
		}
	}
	return nil
}

// asUsage makes a *session.FlagError a usage error (exit status 2).
func asUsage(err error) error {
	var fe *session.FlagError
	if errors.As(err, &fe) {
		return usageError{err}
	}
	return err
}
