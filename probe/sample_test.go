package probe

import "testing"

// TestSampled checks the connection sample's spread over ephemeral
// ports as Linux hands them to connect (even ones first, in sequence from
// a random start): about one in n of them is followed, for every n.
func TestSampled(t *testing.T) {
	for _, n := range []uint32{0, 1, 2, 8, 64} {
		in, all := 0, 0
		for p := 32768; p < 61000; p += 2 {
			all++
			if Sampled(uint16(p), n) {
				in++
			}
		}
		want := float64(all) / float64(max(n, 1))
		if got := float64(in); got < 0.8*want || got > 1.2*want {
			t.Errorf("one in %d: %d of %d ports sampled, want about %.0f", n, in, all, want)
		}
	}
}

func TestSampleConfig(t *testing.T) {
	for _, tc := range []struct {
		n  uint32
		ok bool
	}{{0, true}, {1, true}, {8, true}, {3, false}, {1 << 17, false}} {
		_, err := Config{Ports: []uint16{1}, Ring: RingPerCPU, SampleOneIn: tc.n}.withDefaults()
		if (err == nil) != tc.ok {
			t.Errorf("SampleOneIn %d: err %v, want ok %v", tc.n, err, tc.ok)
		}
	}
}
