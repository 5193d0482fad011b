package main

import (
	"net"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/volleyscope/volleyscope/internal/agent"
	"github.com/volleyscope/volleyscope/internal/session"
)

// credFlags are how a controller and an agent trust each other: a token
// both are given, and optionally mutual TLS. The agent and every command
// that talks to one take the same flags.
type credFlags struct {
	token, tokenFile string
	cert, key, ca    string
}

func (f *credFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.token, "token", "", "the shared secret the agent and its controller are both given (or --token-file; anyone who has it can drive the agent)")
	fs.StringVar(&f.tokenFile, "token-file", "", "read the token from this file's first line (keeps it out of ps)")
	fs.StringVar(&f.cert, "cert", "", "mutual TLS: this side's certificate (PEM), with --key and --ca")
	fs.StringVar(&f.key, "key", "", "mutual TLS: this side's private key (PEM)")
	fs.StringVar(&f.ca, "ca", "", "mutual TLS: the CA certificate (PEM) that signed the other side's certificate")
}

// creds checks the flags and reads what they name. server is true for
// the agent's side.
func (f *credFlags) creds(server bool) (agent.Credentials, error) {
	var c agent.Credentials
	switch {
	case f.token != "" && f.tokenFile != "":
		return c, usagef("--token and --token-file exclude each other: give the token one way")
	case f.tokenFile != "":
		tok, err := agent.ReadToken(f.tokenFile)
		if err != nil {
			return c, usagef("%v", err)
		}
		c.Token = tok
	case strings.TrimSpace(f.token) != "":
		c.Token = strings.TrimSpace(f.token) // a blank token is none
	default:
		return c, usagef("--token or --token-file is required: an agent admits nobody without the token both sides are given")
	}
	if f.cert != "" || f.key != "" || f.ca != "" {
		tc, err := agent.TLSConfig(f.cert, f.key, f.ca, server)
		if err != nil {
			return c, usagef("%v", err)
		}
		c.TLS = tc
	}
	return c, nil
}

// agentFlags are the flags for agents on other hosts: a server behind
// an agent (run, vs, sweep --agent) and load agents that run the clients
// (bench, sweep --load-agent), with the credentials both are dialled
// with.
type agentFlags struct {
	addr       string
	server     string
	loadAgents []string
	cred       credFlags
}

// registerLoad adds --load-agent (the credentials are register's, or
// cred.register's where --agent is not taken).
func (f *agentFlags) registerLoad(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.loadAgents, "load-agent", nil, "run the client connections on the load agent at HOST:PORT ('volleyscope agent --load-to'; repeatable, with --token): the connections are split evenly among the agents, none run here, and their round trips are merged here; no breakdown")
}

func (f *agentFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.addr, "agent", "", "the server is on another host, behind 'volleyscope agent' at HOST:PORT: the agent runs the probe there, and the breakdown spans both hosts (with --token)")
	fs.StringVar(&f.server, "agent-server", "", "which of the agent's servers to load (default: its only one)")
	f.cred.register(fs)
}

// apply checks the flags and sets them in cfg. With namesServers (sweep)
// --server names the agent's servers to take turns.
func (f *agentFlags) apply(fs *pflag.FlagSet, cfg *session.Config, namesServers bool) error {
	if len(f.loadAgents) > 0 {
		if f.addr != "" {
			return usagef("--agent and --load-agent: a server behind an agent with its clients on load agents is not supported yet; use one")
		}
		if fs.Changed("agent-server") {
			return usagef("--agent-server names a server behind --agent, not a load agent's")
		}
		c, err := f.cred.creds(false)
		if err != nil {
			return err
		}
		cfg.LoadAgents, cfg.AgentCred = f.loadAgents, c
		return nil
	}
	if f.addr == "" {
		for _, n := range []string{"agent-server", "token", "token-file", "cert", "key", "ca"} {
			if fs.Changed(n) {
				return usagef("--%s is for agents: add --agent HOST:PORT (a server behind an agent) or --load-agent HOST:PORT", n)
			}
		}
		return nil
	}
	host, port, err := net.SplitHostPort(f.addr)
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
		return usagef("--agent %q: want HOST:PORT, the agent's --listen address", f.addr)
	}
	for _, n := range []string{"server", "addr", "server-cpus", "server-spin", "netns", "netem"} {
		if fs.Changed(n) && !(n == "server" && namesServers) {
			return usagef("--%s is for a server on this host; with --agent the agent's command line says which server runs and where (name one with --agent-server)", n)
		}
	}
	c, err := f.cred.creds(false)
	if err != nil {
		return err
	}
	cfg.Agent, cfg.AgentServer, cfg.AgentCred = f.addr, f.server, c
	cfg.ServerCPUs = nil
	return nil
}
