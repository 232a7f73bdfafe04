package gateway

import (
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// VersionInfo says which build of sessiongate is running: what `sessiongate version`
// prints and what the sessiongate_build_info metric is labelled with. Every field comes
// from the build information the Go toolchain stamps into the binary.
type VersionInfo struct {
	// Version is the main module's version: a tag, a pseudo-version, or "(devel)".
	Version string
	// Revision is the VCS commit the binary was built from (vcs.revision), "" when the
	// build had no VCS information (go run, go test, -buildvcs=false).
	Revision string
	// Modified says the work tree had uncommitted changes (vcs.modified).
	Modified bool
	// Time is the commit time of Revision, RFC 3339 in UTC (vcs.time), or "".
	Time string
	// GoVersion is the toolchain that built the binary, e.g. "go1.26.8".
	GoVersion string
}

// Version returns the build information of the running binary. It is read once; the
// result is the same for the life of the process.
func Version() VersionInfo { return buildVersion() }

var buildVersion = sync.OnceValue(func() VersionInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return VersionInfo{Version: "(devel)", GoVersion: runtime.Version()}
	}
	return versionOf(bi)
})

// versionOf extracts a VersionInfo from build information.
func versionOf(bi *debug.BuildInfo) VersionInfo {
	v := VersionInfo{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if v.Version == "" {
		v.Version = "(devel)" // test binaries have no main module version
	}
	if v.GoVersion == "" {
		v.GoVersion = runtime.Version()
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "vcs.time":
			v.Time = s.Value
		}
	}
	return v
}

// String is the one line `sessiongate version` prints:
//
//	sessiongate v1.2.0 revision 1e296c7... (modified) built 2026-12-01T21:52:00Z go1.26.8
//
// The revision, (modified) and built parts appear only when the build recorded them.
func (v VersionInfo) String() string {
	var b strings.Builder
	b.WriteString("sessiongate ")
	b.WriteString(v.Version)
	if v.Revision != "" {
		b.WriteString(" revision ")
		b.WriteString(v.Revision)
		if v.Modified {
			b.WriteString(" (modified)")
		}
	}
	if v.Time != "" {
		b.WriteString(" built ")
		b.WriteString(v.Time)
	}
	b.WriteString(" ")
	b.WriteString(v.GoVersion)
	return b.String()
}
