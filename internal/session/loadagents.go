package session

import (
	"context"
	"errors"
	"time"

	"github.com/volleyscope/volleyscope/internal/agent"
	"github.com/volleyscope/volleyscope/loadgen"
)

// agentLoad runs the load on load agents (Config.LoadAgents): every
// connection on one of them, their round trips merged on this host.
// Sink and ClientsReady are never called: the round trips stay on the
// agents' hosts, and only their slots come here, so requests.csv has no
// rows and there is no breakdown.
type agentLoad struct {
	opts   loadgen.Options
	agents []string
	cred   agent.Credentials
}

// dialWait bounds dialling the load agents.
const dialWait = 10 * time.Second

func (l agentLoad) run(ctx context.Context, hooks loadgen.Hooks) (*loadgen.Summary, error) {
	dctx, cancel := context.WithTimeout(ctx, dialWait)
	defer cancel()
	var clients []*agent.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, a := range l.agents {
		c, err := agent.Dial(dctx, a, l.cred)
		if err != nil {
			return nil, flagErr("--load-agent", err)
		}
		clients = append(clients, c)
	}
	sum, err := agent.RunLoad(ctx, clients, l.opts, hooks)
	if sum == nil && err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	return sum, err
}
