package gateway

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/rs/zerolog"
)

func TestVersionOf(t *testing.T) {
	vcs := []debug.BuildSetting{
		{Key: "-trimpath", Value: "true"},
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "1e296c7d0a6f3e1b2c4d5e6f708192a3b4c5d6e7"},
		{Key: "vcs.time", Value: "2026-12-01T21:52:00Z"},
	}
	modified := append(vcs[:len(vcs):len(vcs)], debug.BuildSetting{Key: "vcs.modified", Value: "true"})
	clean := append(vcs[:len(vcs):len(vcs)], debug.BuildSetting{Key: "vcs.modified", Value: "false"})
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want VersionInfo
		line string
	}{
		{
			name: "modified work tree",
			bi:   debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: modified},
			want: VersionInfo{Version: "(devel)", Revision: "1e296c7d0a6f3e1b2c4d5e6f708192a3b4c5d6e7", Modified: true, Time: "2026-12-01T21:52:00Z", GoVersion: "go1.26.8"},
			line: "sessiongate (devel) revision 1e296c7d0a6f3e1b2c4d5e6f708192a3b4c5d6e7 (modified) built 2026-12-01T21:52:00Z go1.26.8",
		},
		{
			name: "tagged clean build",
			bi:   debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}, Settings: clean},
			want: VersionInfo{Version: "v1.2.0", Revision: "1e296c7d0a6f3e1b2c4d5e6f708192a3b4c5d6e7", Time: "2026-12-01T21:52:00Z", GoVersion: "go1.26.8"},
			line: "sessiongate v1.2.0 revision 1e296c7d0a6f3e1b2c4d5e6f708192a3b4c5d6e7 built 2026-12-01T21:52:00Z go1.26.8",
		},
		{
			name: "no VCS information",
			bi:   debug.BuildInfo{GoVersion: "go1.26.8"},
			want: VersionInfo{Version: "(devel)", GoVersion: "go1.26.8"},
			line: "sessiongate (devel) go1.26.8",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := versionOf(&tt.bi)
			if got != tt.want {
				t.Fatalf("versionOf() = %+v, want %+v", got, tt.want)
			}
			if s := got.String(); s != tt.line {
				t.Fatalf("String() = %q, want %q", s, tt.line)
			}
		})
	}
}

// TestVersion reads the test binary's own build information: no VCS stamp, but the
// toolchain that built it.
func TestVersion(t *testing.T) {
	v := Version()
	if v.GoVersion != runtime.Version() {
		t.Errorf("Version().GoVersion = %q, want %q", v.GoVersion, runtime.Version())
	}
	if v.Version == "" {
		t.Errorf("Version().Version = \"\", want a version or (devel)")
	}
	if again := Version(); again != v {
		t.Errorf("Version() = %+v, then %+v", v, again)
	}
}

func TestMetricsBuildInfo(t *testing.T) {
	_, _, admin := startAdminGateway(t, "", zerolog.Nop())
	m := scrapeMetrics(t, admin)
	v := Version()
	if typ := m.types["sessiongate_build_info"]; typ != "gauge" {
		t.Errorf("sessiongate_build_info TYPE = %q, want gauge", typ)
	}
	m.want(t, `sessiongate_build_info{version="`+v.Version+`",revision="`+v.Revision+`",goversion="`+v.GoVersion+`"}`, 1)
	if n := m.sum("sessiongate_build_info"); n != 1 {
		t.Errorf("sessiongate_build_info samples sum to %v, want one sample of 1", n)
	}
}
