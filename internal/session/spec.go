package session

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/volleyscope/volleyscope/internal/serverproc"
	"github.com/volleyscope/volleyscope/internal/servers"
	"github.com/volleyscope/volleyscope/loadgen"
)

// SpecSyntax says what a server spec may be, for help texts and errors.
const SpecSyntax = `a server is one of: a built-in name ('volleyscope servers'); a path taking -p PORT; ` +
	`a command line with {port} where the port goes ('./srv --port {port}'); ` +
	`port=PORT:COMMAND for a command that listens on PORT by itself; addr=HOST:PORT for a server already running. ` +
	`NAME=SPEC labels any of them`

// Spec is a parsed server spec: exactly one of Builtin, Argv or Addr is
// set.
type Spec struct {
	Label   string   // short name for tables: NAME= if given, else the built-in name, the command's base name or the address
	Builtin string   // a built-in server
	Argv    []string // a command: "{port}" replaced, or "-p PORT" appended, unless FixedPort
	// FixedPort is the port a command listens on by itself (port=PORT:…):
	// it is started and stopped around each run, never beside another.
	FixedPort int
	Addr      string // a server already running, HOST:PORT
}

// ParseSpec reads a server spec (SpecSyntax). A command is split into
// words as a shell would split plain words and quotes, but runs without
// a shell; its program is looked up in PATH when it has no '/'.
func ParseSpec(s string) (Spec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Spec{}, errors.New("empty server spec: " + SpecSyntax)
	}
	if k, v, ok := strings.Cut(s, "="); ok && isLabel(k) && k != "addr" && k != "port" {
		if strings.TrimSpace(v) == "" {
			return Spec{}, fmt.Errorf("server %q: nothing after %q: %s", s, k+"=", SpecSyntax)
		}
		sp, err := ParseSpec(v)
		sp.Label = k
		return sp, err
	}
	if a, ok := strings.CutPrefix(s, "addr="); ok {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return Spec{}, fmt.Errorf("server %q: want addr=HOST:PORT, e.g. addr=127.0.0.1:6379", s)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return Spec{}, fmt.Errorf("server %q: port %q is not in 1-65535", s, port)
		}
		return Spec{Label: a, Addr: a}, nil
	}
	fixed := 0
	if rest, ok := strings.CutPrefix(s, "port="); ok {
		ps, cmd, found := strings.Cut(rest, ":")
		p, err := strconv.Atoi(ps)
		if !found || err != nil || p < 1 || p > 65535 || strings.TrimSpace(cmd) == "" {
			return Spec{}, fmt.Errorf("server %q: want port=PORT:COMMAND with PORT in 1-65535, e.g. 'port=6379:./echo_server'", s)
		}
		fixed, s = p, strings.TrimSpace(cmd)
	}
	if _, err := servers.Lookup(s); err == nil {
		if fixed != 0 {
			return Spec{}, fmt.Errorf("server %q: %s is a built-in server, which listens where the run tells it: give it without port=", "port="+rest(s, fixed), s)
		}
		return Spec{Label: s, Builtin: s}, nil
	}
	argv, err := splitWords(s)
	if err != nil {
		return Spec{}, fmt.Errorf("server %q: %w", s, err)
	}
	prog, err := executable(argv[0])
	if err != nil {
		return Spec{}, err
	}
	argv[0] = prog
	return Spec{Label: filepath.Base(prog), Argv: argv, FixedPort: fixed}, nil
}

// rest rebuilds a port= spec for a message.
func rest(cmd string, port int) string { return strconv.Itoa(port) + ":" + cmd }

// isLabel reports whether k can be a NAME= label: a short word, not a
// path or a command.
func isLabel(k string) bool {
	return k != "" && !strings.ContainsAny(k, "/ \t'\"{}:")
}

// executable resolves a command's program to an absolute path.
func executable(name string) (string, error) {
	p := name
	if !strings.ContainsRune(name, '/') {
		lp, err := exec.LookPath(name)
		if err != nil {
			hint := ""
			if s := servers.Suggest(name); s != "" {
				hint = fmt.Sprintf("; did you mean %q?", s)
			}
			return "", fmt.Errorf("server %q: not a built-in server (%s) nor a program in PATH%s (%s)", name, strings.Join(servers.Names(), ", "), hint, SpecSyntax)
		}
		p = lp
	}
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("server %s: %w", p, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("server %s: not an executable file", p)
	}
	return filepath.Abs(p)
}

// splitWords splits a command line into words: blanks separate words,
// single quotes keep everything, double quotes keep everything but a
// backslash before " or \, and a backslash outside quotes keeps the next
// character.
func splitWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
			continue
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated ' quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				w.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, errors.New(`unterminated " quote`)
			}
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
		default:
			w.WriteByte(c)
		}
		inWord = true
	}
	if inWord {
		words = append(words, w.String())
	}
	if len(words) == 0 {
		return nil, errors.New("no command")
	}
	return words, nil
}

// serverOptions is how to start sp (not an Addr): self, if set, is the
// volleyscope binary that runs built-in servers; proto (echo) and spin
// configure a built-in one. A server of the user's that is driven with
// another protocol than ping-pong is not sent ping-pong's exit message
// when it is stopped.
func serverOptions(self string, sp Spec, proto loadgen.Proto, spin time.Duration) (serverproc.Options, error) {
	if sp.Builtin == "" {
		if spin > 0 {
			return serverproc.Options{}, fmt.Errorf("--server-spin works with the built-in servers only, not %s", sp.Label)
		}
		return serverproc.Options{Argv: sp.Argv, FixedPort: sp.FixedPort > 0, Port: sp.FixedPort,
			NoExitMessage: proto != "" && proto != loadgen.PingPong}, nil
	}
	echo := proto == loadgen.Echo
	if err := servers.Check(sp.Builtin); err != nil {
		return serverproc.Options{}, err
	}
	var extra []string
	if echo {
		extra = append(extra, "--echo")
	}
	if spin > 0 {
		extra = append(extra, "--spin", spin.String())
	}
	if self != "" {
		return serverproc.Options{Argv: append([]string{self, "serve", sp.Builtin}, extra...)}, nil
	}
	argv, err := serverproc.SelfArgv(sp.Builtin, extra...)
	return serverproc.Options{Argv: argv}, err
}
