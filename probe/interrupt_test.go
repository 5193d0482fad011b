package probe

import "testing"

func TestInterruptString(t *testing.T) {
	for _, tc := range []struct {
		i    Interrupt
		want string
	}{
		{0, ""},
		{irqSoft | 3, "softirq NET_RX"},
		{irqSoft | 9, "softirq RCU"},
		{irqSoft | 42, "softirq 42"},
		{irqHard | 41, "irq 41"},
	} {
		if got := tc.i.String(); got != tc.want {
			t.Errorf("Interrupt(%#x) = %q, want %q", uint64(tc.i), got, tc.want)
		}
	}
}
