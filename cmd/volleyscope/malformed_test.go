package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// cliEnv, when set, makes the test binary run as the volleyscope command
// (TestMain): the malformed-input test runs the real CLI, main() and its
// exit status included, without building a second binary.
const cliEnv = "VOLLEYSCOPE_TEST_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		os.Args = append([]string{"volleyscope"}, os.Args[1:]...)
		main()
		return
	}
	os.Exit(m.Run())
}

// malformed are command lines volleyscope cannot act on, each with what
// its message must name (the flag, or the argument). None of them may
// start a server: each is refused while the command line is read.
var malformed = []struct {
	args []string
	name string
}{
	{[]string{"frobnicate"}, `"frobnicate"`},
	{[]string{"help", "nosuch"}, `"nosuch"`},
	{[]string{"version", "extra"}, "version"},
	// The server.
	{[]string{"bench", "--server", "nosuch"}, "--server"},
	{[]string{"bench", "--server", "thread"}, `did you mean "threads"`},
	{[]string{"bench", "--server", "port=abc:"}, "--server"},
	{[]string{"bench", "--server", "port=0:./x"}, "--server"},
	{[]string{"bench", "--server", "port=6379:threads"}, "--server"},
	{[]string{"bench", "--server", "addr=nonsense"}, "--server"},
	{[]string{"bench", "--server", ""}, "--server"},
	{[]string{"bench", "--server", "'unterminated"}, "--server"},
	{[]string{"bench", "--server", "/etc/passwd"}, "--server"},
	{[]string{"bench", "--server", "/bin/true", "--server-spin", "1ms"}, "--server-spin"},
	{[]string{"bench", "--server-spin", "-1us"}, "--server-spin"},
	{[]string{"bench", "--addr", "nonsense"}, "--addr"},
	{[]string{"bench", "--addr", "127.0.0.1:99999"}, "--addr"},
	{[]string{"bench", "--addr", "127.0.0.1:0"}, "--addr"},
	{[]string{"bench", "--addr", ":9000"}, "--addr"},
	{[]string{"bench", "--addr", "127.0.0.1:1", "--server", "threads"}, "--addr"},
	{[]string{"bench", "--server-cpus", "-1"}, "--server-cpus"},
	{[]string{"bench", "--client-cpus", "99"}, "--client-cpus"},
	{[]string{"bench", "--client-cpus", "1-0"}, "--client-cpus"},
	{[]string{"bench", "--client-cpus", "x"}, "--client-cpus"},
	{[]string{"bench", "--client-cpus", "0,,"}, "--client-cpus"},
	{[]string{"bench", "--client-cpus", "0-99999999999"}, "--client-cpus"},
	// watch: the processes and the port, before anything is attached.
	{[]string{"watch", "extra"}, "watch"},
	{[]string{"watch"}, "--server-port"},
	{[]string{"watch", "--client-pid", "0"}, "--client-pid"},
	{[]string{"watch", "--server-port", "70000"}, "--server-port"},
	{[]string{"watch", "--server-port", "1", "--client-pid", "999999999"}, "--client-pid"},
	{[]string{"watch", "--server-port", "1", "--duration", "-1s"}, "--duration"},
	{[]string{"watch", "--server-port", "1", "--listen", "127.0.0.1:9"}, "--listen-token-file"},
	{[]string{"watch", "--server-port", "1", "--probe-mode", "x"}, "--probe-mode"},
	{[]string{"watch", "--server-port", "1", "--token", "t"}, "--token"},
	{[]string{"watch", "--client-pid", "1", "--agent", "10.0.0.2:7470"}, "--token"},
	{[]string{"watch", "--client-pid", "1", "--agent", "nonsense", "--token", "t"}, "--agent"},
	{[]string{"watch", "--agent", "10.0.0.2:7470", "--token", "t"}, "--client-pid"},
	{[]string{"watch", "--agent", "10.0.0.2:7470", "--token", "t", "--client-pid", "1", "--server-pid", "1"}, "--server-pid"},
	{[]string{"watch", "--agent", "10.0.0.2:7470", "--token", "t", "--client-pid", "1", "--server-port", "70000"}, "--server-port"},
	// The protocol and its settings.
	{[]string{"bench", "--proto", "http"}, "--proto"},
	{[]string{"bench", "--proto", "smtp"}, "--proto"},
	{[]string{"bench", "--mix", "9:1"}, "--mix"},
	{[]string{"bench", "--keys", "5"}, "--keys"},
	{[]string{"bench", "--http-path", "/x"}, "--http-path"},
	{[]string{"bench", "--header", "A: b"}, "--header"},
	{[]string{"bench", "--http-status", "404"}, "--http-status"},
	{[]string{"bench", "--addr", "127.0.0.1:1", "--proto", "http", "--http-status", "7xx"}, "--http-status"},
	{[]string{"bench", "--server", "resp", "--mix", "x:y"}, "--mix"},
	{[]string{"bench", "--proto", "line"}, "--request"},
	{[]string{"bench", "--request", "x"}, "--request"},
	{[]string{"bench", "--size", "100"}, "--size"},
	// The load.
	{[]string{"bench", "--size", "99999999999", "--proto", "echo"}, "--size"},
	{[]string{"bench", "--size", "-1", "--proto", "echo"}, "--size"},
	{[]string{"bench", "--clients", "99999999999"}, "--clients"},
	{[]string{"bench", "--clients", "1000000"}, "--clients"},
	{[]string{"bench", "--clients", "-3"}, "--clients"},
	{[]string{"bench", "--clients", "abc"}, "--clients"},
	{[]string{"bench", "--rate", "NaN"}, "--rate"},
	{[]string{"bench", "--rate", "-5"}, "--rate"},
	{[]string{"bench", "--rate", "Inf"}, "--rate"},
	{[]string{"bench", "--connect-rate", "NaN"}, "--connect-rate"},
	{[]string{"bench", "--client-model", "fibers"}, "--client-model"},
	{[]string{"bench", "--requests", "-1"}, "--requests"},
	// The stopping rule.
	{[]string{"bench", "--duration", "-1s"}, "--duration"},
	{[]string{"bench", "--duration", "0"}, "--duration"},
	{[]string{"bench", "--duration", "forever"}, "--duration"},
	{[]string{"bench", "--warmup", "-1s"}, "--warmup"},
	{[]string{"bench", "--timeout", "0"}, "--timeout"},
	{[]string{"bench", "--connect-timeout", "-1s"}, "--connect-timeout"},
	{[]string{"bench", "--ci", "2"}, "--ci"},
	{[]string{"bench", "--ci", "NaN"}, "--ci"},
	{[]string{"bench", "--p99-ci", "1"}, "--p99-ci"},
	{[]string{"bench", "--confidence", "1.5"}, "--confidence"},
	{[]string{"bench", "--confidence", "NaN"}, "--confidence"},
	{[]string{"bench", "--netem", "delay 1ms"}, "--netem"},
	{[]string{"bench", "extra"}, "extra"},
	{[]string{"run", "--probe-mode", "bogus"}, "--probe-mode"},
	// sweep.
	{[]string{"sweep", "--server", "threads", "--server", "threads"}, "--server"},
	{[]string{"sweep", "--server", "a=threads", "--server", "a=epoll-lt"}, "--server"},
	{[]string{"sweep", "--server", "nosuch"}, "--server"},
	{[]string{"sweep", "--server", "threads", "--server", ""}, "--server"},
	{[]string{"sweep", "--clients", "1,,4"}, "--clients"},
	{[]string{"sweep", "--clients", "4,4"}, "--clients"},
	{[]string{"sweep", "--clients", ","}, "--clients"},
	{[]string{"sweep", "--clients", "99999999999"}, "--clients"},
	{[]string{"sweep", "--clients", "8", "--rate", "0,100"}, "--rate"},
	{[]string{"sweep", "--clients", "1,2", "--rate", "100"}, "--rate"},
	// vs.
	{[]string{"vs", "threads", "nosuch"}, "nosuch"},
	{[]string{"vs", "threads", "threads"}, "labelled"},
	{[]string{"vs", "threads"}, "two servers"},
	{[]string{"vs", "threads", "epoll-lt", "--pairs", "2"}, "--pairs"},
	{[]string{"vs", "threads", "epoll-lt", "--margin", "2"}, "--margin"},
	{[]string{"vs", "threads", "epoll-lt", "--budget", "-1s"}, "--budget"},
	{[]string{"vs", "threads", "epoll-lt", "--proto", "http"}, "--proto"},
	{[]string{"vs", "threads", "epoll-lt", "--clients", "99999999999"}, "--clients"},
	// serve.
	{[]string{"serve", "threads"}, "-p PORT"},
	{[]string{"serve", "threads", "-p", "70000"}, "-p 70000"},
	{[]string{"serve", "nosuch", "-p", "9000"}, "nosuch"},
	{[]string{"serve", "threads", "-p", "9000", "--spin", "-1s"}, "--spin"},
	{[]string{"serve", "threads", "-p", "9000", "--cpus", "99"}, "--cpus"},
	// agent.
	{[]string{"agent", "--token", "t", "--server", "threads"}, "--listen"},
	{[]string{"agent", "--listen", "127.0.0.1", "--token", "t", "--server", "threads"}, "--listen"},
	{[]string{"agent", "--listen", ":7470", "--token", "t", "--server", "threads"}, "--listen"},
	{[]string{"agent", "--listen", "127.0.0.1:0", "--token", "t", "--server", "threads"}, "--listen"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--server", "threads"}, "--token"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", " ", "--server", "threads"}, "--token"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--token-file", "f", "--server", "threads"}, "--token-file"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token-file", "/no/such/token", "--server", "threads"}, "--token-file"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--cert", "c.pem", "--server", "threads"}, "--key"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--cert", "/no/c.pem", "--key", "/no/k.pem", "--ca", "/no/ca.pem", "--server", "threads"}, "--cert"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t"}, "--server"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--server", "nosuch"}, "--server"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--pid", "0"}, "--pid"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--pid", "x"}, "--pid"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--port", "70000"}, "--port"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--watch-port", "70000"}, "--watch-port"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--watch-port", "0"}, "--watch-port"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--watch-pid", "-3"}, "--watch-pid"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--server", "threads", "--server-cpus", "99"}, "--server-cpus"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--server", "threads", "--test-clock", "5s,20us"}, "--test-clock"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--server", "threads", "--test-clock", "x"}, "--test-clock"},
	{[]string{"agent", "extra", "--listen", "127.0.0.1:7470", "--token", "t", "--server", "threads"}, "extra"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--load-to", "nonsense"}, "--load-to"},
	{[]string{"agent", "--listen", "127.0.0.1:7470", "--token", "t", "--load-to", "10.0.0.1:0"}, "--load-to"},
	// load agents.
	{[]string{"bench", "--load-agent", "10.0.0.3:7470", "--server-host", "127.0.0.1"}, "--token"},
	{[]string{"bench", "--load-agent", "10.0.0.3", "--token", "t", "--server-host", "127.0.0.1"}, "--load-agent"},
	{[]string{"bench", "--load-agent", "10.0.0.3:7470", "--token", "t"}, "--server-host"},
	{[]string{"bench", "--load-agent", "10.0.0.3:7470", "--token", "t", "--addr", "localhost:9000"}, "--addr"},
	{[]string{"bench", "--load-agent", "10.0.0.3:7470", "--token", "t", "--netns"}, "--load-agent"},
	{[]string{"bench", "--server-host", "nohost"}, "--server-host"},
	{[]string{"bench", "--server-host", "127.0.0.1", "--addr", "127.0.0.1:9000"}, "--server-host"},
	{[]string{"bench", "--token", "t"}, "--token"},
	{[]string{"run", "--load-agent", "10.0.0.3:7470", "--token", "t", "--server-host", "127.0.0.1"}, "--load-agent"},
	{[]string{"sweep", "--load-agent", "10.0.0.3:7470", "--token", "t", "--server-host", "127.0.0.1", "--probe"}, "--load-agent"},
	// compare.
	{[]string{"compare", "a.json"}, "two or more"},
	{[]string{"compare", "no-such-a.json", "no-such-b.json"}, "no-such-a.json"},
	{[]string{"compare", "--confidence", "2", "a.json", "b.json"}, "--confidence"},
	{[]string{"compare", "../../testdata/results/results-probed.json", "../../testdata/results/results-probed.json"}, "same run"},
	{[]string{"compare", "../../testdata/results/results-probed.json", "../../testdata/results/results-bench-interrupted.json", "--",
		"../../testdata/results/results-probed.json", "../../testdata/results/results-bench-interrupted.json"}, "same run"},
}

// TestMalformedInputs runs the CLI over command lines it cannot act on:
// each must exit 2, name its flag or argument, and not panic.
func TestMalformedInputs(t *testing.T) {
	if testing.Short() && os.Getenv("CI") == "" {
		t.Log("runs the test binary as the CLI once per case")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range malformed {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, self, tc.args...)
			cmd.Env = append(os.Environ(), cliEnv+"=1")
			out, err := cmd.CombinedOutput()
			text := string(out)
			if strings.Contains(text, "panic:") || strings.Contains(text, "goroutine ") {
				t.Fatalf("panicked:\n%s", text)
			}
			if ctx.Err() != nil {
				t.Fatalf("still running after 20 s (did it start a server?):\n%s", text)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != statusUsage {
				t.Errorf("exit %v, want status %d:\n%s", err, statusUsage, text)
			}
			if !strings.Contains(text, tc.name) {
				t.Errorf("the message does not name %q:\n%s", tc.name, text)
			}
			if strings.ContainsRune(text, '\r') {
				t.Errorf("a raw carriage return in the message: %q", text)
			}
			if strings.Contains(text, "started: pid") {
				t.Errorf("a server was started:\n%s", text)
			}
		})
	}
}
