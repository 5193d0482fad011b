package servers

import "testing"

func TestSuggest(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"thread", "threads"},
		{"epol-lt", "epoll-lt"},
		{"EPOLL-ET", "epoll-et"},
		{"iouringg", "iouring"},
		{"nosuch", ""},
		{"", ""},
		{"x", ""},
	} {
		if got := Suggest(tc.in); got != tc.want {
			t.Errorf("Suggest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if d := editDistance("kitten", "sitting"); d != 3 {
		t.Errorf("editDistance(kitten, sitting) = %d, want 3", d)
	}
}
