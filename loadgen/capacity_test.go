package loadgen

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckCapacity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		o      Options
		option string // "" when the load fits
		flag   string // named in the message
	}{
		{"default", Options{Clients: 1}, "", ""},
		{"echo 1 KiB x 64", Options{Clients: 64, Proto: Echo, Size: 1024}, "", ""},
		{"huge size", Options{Clients: 1, Proto: Echo, Size: 99999999999}, "Size", "--size"},
		{"huge clients", Options{Clients: 99999999999, Proto: PingPong}, "Clients", "--clients"},
		{"clients beyond ports", Options{Clients: 1 << 20, Proto: PingPong}, "Clients", "--clients"},
		{"redis value beyond a reply", Options{Clients: 1, Proto: Redis, Size: maxReply}, "Size", "--size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCapacity(tc.o)
			if tc.option == "" {
				if err != nil {
					t.Fatalf("CheckCapacity: %v, want nil", err)
				}
				return
			}
			var ce *CapacityError
			if !errors.As(err, &ce) {
				t.Fatalf("CheckCapacity = %v, want a *CapacityError", err)
			}
			if ce.Option != tc.option || !strings.Contains(err.Error(), tc.flag) {
				t.Errorf("CheckCapacity = %q on %s, want %s named", err, ce.Option, tc.flag)
			}
		})
	}
}

func TestBytesText(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 30: "3.0 GiB"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", n, got, want)
		}
	}
}
