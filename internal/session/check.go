package session

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/volleyscope/volleyscope/loadgen"
)

// FlagError is a configuration refused before anything starts. Flag is
// the command-line flag to change, e.g. "--server"; the message starts
// with it unless Err names it first.
type FlagError struct {
	Flag string
	Err  error
}

func (e *FlagError) Error() string {
	if msg := e.Err.Error(); strings.HasPrefix(msg, e.Flag+" ") || strings.HasPrefix(msg, e.Flag+":") {
		return msg
	}
	return e.Flag + ": " + e.Err.Error()
}
func (e *FlagError) Unwrap() error { return e.Err }

func flagErr(flag string, err error) error { return &FlagError{Flag: flag, Err: err} }

// Check refuses, before anything starts, what Run would refuse only once
// it had started something, or not at all: a server spec that does not
// parse, a malformed --addr, a protocol the built-in server does not
// speak, --server-spin with a server that is not built in, and a load
// this machine cannot carry (loadgen.CheckCapacity). Every error is a
// *FlagError. cfg.Load.Proto "" means the server's own protocol, as in
// Run.
func Check(cfg Config) error {
	if cfg.Server == "" {
		cfg.Server = DefaultServer
	}
	var spec Spec
	if cfg.Addr != "" {
		if err := CheckAddr(cfg.Addr); err != nil {
			return flagErr("--addr", err)
		}
	} else {
		var err error
		if spec, err = ParseSpec(cfg.Server); err != nil {
			return flagErr("--server", err)
		}
	}
	load := cfg.Load
	if err := pickProto(&load, spec.Builtin); err != nil {
		return flagErr("--proto", err)
	}
	if cfg.ServerSpin > 0 && spec.Builtin == "" {
		what := "a running server"
		if spec.Argv != nil {
			what = spec.Label + ", a program of yours"
		}
		return flagErr("--server-spin", fmt.Errorf("spins inside the built-in servers only, not in %s: drop it, or add the delay to your server", what))
	}
	if err := loadgen.CheckCapacity(load); err != nil {
		var ce *loadgen.CapacityError
		flag := "--clients"
		if errors.As(err, &ce) && ce.Option == "Size" {
			flag = "--size"
		}
		return &FlagError{Flag: flag, Err: err}
	}
	return nil
}

// ServerProto is the protocol a run with the server spec speaks when
// --proto is not given (pickProto): a built-in server's own, else
// ping-pong. A spec that does not parse speaks ping-pong here; Check
// says what is wrong with it.
func ServerProto(server string) loadgen.Proto {
	if server == "" {
		server = DefaultServer
	}
	sp, err := ParseSpec(server)
	if err != nil {
		return loadgen.PingPong
	}
	return loadgen.SpokenBy(sp.Builtin)
}

// CheckAddr checks a running server's address: HOST:PORT with a port in
// 1-65535 (the host is resolved when the run connects).
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT, e.g. 127.0.0.1:9000", addr)
	}
	if host == "" {
		return fmt.Errorf("%q: no host: want HOST:PORT, e.g. 127.0.0.1:%s", addr, port)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port %q is not in 1-65535", addr, port)
	}
	return nil
}
