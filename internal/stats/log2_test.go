package stats

import "testing"

func TestLog2(t *testing.T) {
	h := NewHistogram()
	for _, v := range []int64{1000, 1500, 2047, 2048, 3000, 100_000} {
		if err := h.RecordValue(v); err != nil {
			t.Fatal(err)
		}
	}
	b := Log2(h)
	if len(b) == 0 || b[0].LowNs != 512 || b[len(b)-1].HighNs != 131072 {
		t.Fatalf("buckets %+v, want 512 up to 131072", b)
	}
	var total int64
	got := map[int64]int64{}
	for _, x := range b {
		total += x.Count
		got[x.LowNs] = x.Count
		if x.HighNs != 2*max(x.LowNs, 1) && x.LowNs != 0 {
			t.Errorf("bucket %+v is not a power of two wide", x)
		}
	}
	if total != 6 {
		t.Errorf("%d values in the buckets, want 6", total)
	}
	// 1000 falls in [512, 1024); 1500 and 2047 in [1024, 2048); 2048 and
	// 3000 in [2048, 4096) (to HDR's precision at the edges).
	if got[512] != 1 || got[1024]+got[2048] != 4 || got[65536] != 1 {
		t.Errorf("counts %v", got)
	}
}
