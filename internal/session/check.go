package session

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
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
	if err := checkLoadAgents(cfg, spec); err != nil {
		return err
	}
	if len(cfg.LoadAgents) > 0 {
		return nil // the clients' capacity is the agents' hosts'
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

// checkLoadAgents checks a run on load agents (Config.LoadAgents) and
// --server-host.
func checkLoadAgents(cfg Config, spec Spec) error {
	if h := cfg.ServerHost; h != "" {
		switch {
		case cfg.Addr != "":
			return flagErr("--server-host", errors.New("sets where a started server listens; with --addr the server is running already"))
		case spec.Builtin == "":
			return flagErr("--server-host", fmt.Errorf("sets where a built-in server listens; %s is not one: make it listen where you want and give that address with --addr", spec.Label))
		case cfg.NetNS:
			return flagErr("--server-host", errors.New("--netns puts the server on its own veth address: drop one"))
		}
		if _, err := netip.ParseAddr(h); err != nil {
			return flagErr("--server-host", fmt.Errorf("%q: want an IP address of this host, e.g. 10.0.0.1", h))
		}
	}
	if len(cfg.LoadAgents) == 0 {
		return nil
	}
	for _, a := range cfg.LoadAgents {
		if err := CheckAddr(a); err != nil {
			return flagErr("--load-agent", err)
		}
	}
	switch {
	case cfg.Probe:
		return flagErr("--load-agent", errors.New("the breakdown follows the client threads on this host, and with load agents there are none: use 'volleyscope bench --load-agent' (latency, throughput and the server's cost), or run without --load-agent"))
	case cfg.Record != "":
		return flagErr("--load-agent", errors.New("--record saves this host's client records and events, and with load agents there are none here"))
	case cfg.NetNS:
		return flagErr("--load-agent", errors.New("--netns puts the server in a namespace that only this host reaches: start it with --server-host on an address the agents reach, or give --addr"))
	}
	if cfg.Addr != "" {
		if _, err := netip.ParseAddrPort(cfg.Addr); err != nil {
			return flagErr("--addr", fmt.Errorf("%q: with --load-agent give a literal IP:PORT, which the agents connect to as given (an agent resolves no names)", cfg.Addr))
		}
	} else if cfg.ServerHost == "" {
		return flagErr("--load-agent", errors.New("a started server listens on 127.0.0.1, which the agents' hosts cannot reach: add --server-host with an address of this host that they reach"))
	}
	return nil
}
