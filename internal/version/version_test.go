package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		main     string
		settings map[string]string
		want     string
	}{
		{"(devel)", nil, "devel"},
		{"", nil, "devel"},
		{"v1.2.0", nil, "v1.2.0"},
		{"(devel)", map[string]string{"vcs.revision": "5cba669f0e1d2a3b4c5d", "vcs.modified": "false"}, "devel 5cba669f0e1d"},
		{"(devel)", map[string]string{"vcs.revision": "5cba669f0e1d2a3b4c5d", "vcs.modified": "true"}, "devel 5cba669f0e1d+dirty"},
		{"v0.0.0-20261206212916-78ae19b872fb", map[string]string{"vcs.revision": "78ae19b872fb0123", "vcs.modified": "false"}, "v0.0.0-20261206212916-78ae19b872fb"},
		{"v0.0.0-20261206212916-78ae19b872fb+dirty", map[string]string{"vcs.revision": "78ae19b872fb0123", "vcs.modified": "true"}, "v0.0.0-20261206212916-78ae19b872fb+dirty"},
	} {
		bi := &debug.BuildInfo{Main: debug.Module{Version: tc.main}}
		for k, v := range tc.settings {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: k, Value: v})
		}
		if got := fromBuildInfo(bi); got != tc.want {
			t.Errorf("fromBuildInfo(%q, %v) = %q, want %q", tc.main, tc.settings, got, tc.want)
		}
	}
	if String() == "" {
		t.Error("String() is empty")
	}
}
