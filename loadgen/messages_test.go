package loadgen

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMessages: the error texts say what happened, in the user's terms.
func TestMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want []string
		not  []string
	}{
		{"late but right", &ReplyError{Conn: 0, Request: 5, Reason: timeoutReason(2 * time.Second), Want: []byte{5, 0xd0, 0x2c, 5}, Got: []byte{5, 0xd0, 0x2c, 5}, Late: 2040 * time.Millisecond, Timeout: 2 * time.Second},
			[]string{"late: complete after 2.0 s, the timeout is 2 s"}, []string{"expected", "received"}},
		{"text from a binary protocol", &ReplyError{Reason: "wrong reply", Want: []byte{1, 2, 3, 4}, Got: []byte("SSH-")},
			[]string{`"SSH-"`, "--proto"}, []string{"0x5353482d"}},
		{"binary stays hex", &ReplyError{Reason: "wrong reply", Want: []byte{1, 2, 3, 4}, Got: []byte{1, 2, 3, 5}},
			[]string{"0x01020305"}, []string{"--proto"}},
		{"interrupted set-up", &SetupError{Addr: "127.0.0.1:1", Stats: SetupStats{Attempts: 1, Connections: 1}, First: fmt.Errorf("set-up interrupted: %w", context.Canceled)},
			[]string{"set-up interrupted", "1 connection(s) set up"}, []string{"0 of 1", "failed: ;"}},
		{"interrupted with connections in flight", &SetupError{Addr: "127.0.0.1:1", Stats: SetupStats{Attempts: 1, Failures: []Failure{{"context canceled", 1}}}, First: fmt.Errorf("set-up interrupted: %w", context.Canceled)},
			[]string{"set-up interrupted: context canceled (0 connection(s) set up before it)"}, []string{"failed"}},
		{"silent server", fmt.Errorf("%w within 10s", errNoPrimingReply),
			[]string{"connected, but no reply to the priming request within 10s"}, nil},
	} {
		got := tc.err.Error()
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tc.name, got, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(got, n) {
				t.Errorf("%s: %q has %q", tc.name, got, n)
			}
		}
	}
}
