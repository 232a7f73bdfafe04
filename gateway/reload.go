package gateway

import (
	"errors"
	"os"
	"reflect"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/valyala/fasthttp"
)

// errNoConfigFile answers a reload request of a gateway that was not started from a
// file (the demo, tests).
var errNoConfigFile = errors.New("gateway: reload: no configuration file to reload")

// Reload validates cfg completely and, if it is valid, swaps it in atomically: the new
// snapshot keeps the runtime state (health, drain, counters) of every member id it
// shares with the old one, their connection pools when the member address and client
// settings are unchanged, and every learned session. An invalid cfg changes nothing:
// the running snapshot stays and the error (naming the field) is logged and returned.
// Requests in flight finish on the snapshot they started with.
func (s *Server) Reload(cfg *config.Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	err := cfg.Validate()
	var snap *snapshot
	if err == nil {
		snap, err = s.build(cfg)
	}
	if err == nil {
		// Certificates and TLS settings: all load, or the running ones stay.
		err = s.reloadTLS(cfg)
	}
	if err != nil {
		s.reloadFailed(err)
		return err
	}
	old := s.snap.Load()
	for _, w := range restartOnly(old.cfg, cfg) {
		s.log.Warn().Str("field", w).Msg("config reload: this field takes effect at the next restart")
	}
	applyAdminStates(cfg, snap.table, old.cfg)
	// States first (a new member with start: unhealthy is down before any request can
	// see it), then the snapshot.
	s.health.Update(snap.targets)
	s.snap.Store(snap)
	if lvl, err := zerolog.ParseLevel(cfg.Log.Level); err == nil {
		s.level.set(lvl)
	}
	// Pools of members that left (or changed address) get no new requests; close their
	// idle connections. Requests still running on them finish.
	kept := map[*fasthttp.HostClient]bool{}
	for _, c := range snap.clients {
		kept[c] = true
	}
	for _, c := range old.clients {
		if !kept[c] {
			c.CloseIdleConnections()
		}
	}
	s.reloadOK(cfg)
	s.log.Info().Int("groups", len(cfg.TargetGroups)).Int("members", len(snap.table.Members)).
		Msg("config reloaded")
	return nil
}

// ReloadFile loads the file the gateway was started from (with the flags applied
// again) and reloads it.
func (s *Server) ReloadFile() error {
	if s.loader == nil {
		return errNoConfigFile
	}
	cfg, err := s.loader()
	if err != nil {
		s.reloadMu.Lock()
		s.reloadFailed(err)
		s.reloadMu.Unlock()
		return err
	}
	return s.Reload(cfg)
}

// SetLoader sets how ReloadFile reads the configuration (file and flags).
func (s *Server) SetLoader(load func() (*config.Config, error)) { s.loader = load }

func (s *Server) reloadFailed(err error) {
	s.reloads.failed.Add(1)
	s.log.Error().Err(err).Msg("config reload rejected: the running configuration stays")
}

func (s *Server) reloadOK(cfg *config.Config) {
	s.reloads.ok.Add(1)
	s.reloads.hash.Store(configHash(cfg))
}

// restartOnly lists the fields that changed between a and b but apply only at start:
// the listeners, the client-facing server limits, the learned-session cache size and the
// shared store (its connections and goroutines are made once, in New).
func restartOnly(a, b *config.Config) []string {
	var out []string
	if a.Listen != b.Listen {
		out = append(out, "listen")
	}
	if !sameListeners(a.ClientListeners(), b.ClientListeners()) {
		out = append(out, "listeners")
	}
	if a.ReusePort != b.ReusePort {
		out = append(out, "reuseport")
	}
	if a.Admin.Listen != b.Admin.Listen {
		out = append(out, "admin.listen")
	}
	if a.Admin.Token != b.Admin.Token || a.Admin.TokenFile != b.Admin.TokenFile {
		out = append(out, "admin.token")
	}
	// The tunnel settings are read when they apply: a reload changes them.
	sa, sb := a.Server, b.Server
	sa.TunnelIdleTimeout, sb.TunnelIdleTimeout = 0, 0
	sa.CloseTunnelsOnDown, sb.CloseTunnelsOnDown = false, false
	if sa != sb {
		out = append(out, "server")
	}
	if a.Session.Learned != b.Session.Learned {
		out = append(out, "session.learned")
	}
	if !reflect.DeepEqual(a.Session.Shared, b.Session.Shared) {
		out = append(out, "session.shared")
	}
	if a.Session.BoundWindow != b.Session.BoundWindow {
		out = append(out, "session.bound_window")
	}
	return out
}

// watchFile reloads when the file's modification time or size changes, polling every
// interval, until stop.
func (s *Server) watchFile(path string, interval time.Duration, stop <-chan struct{}) {
	stat := func() (time.Time, int64) {
		fi, err := os.Stat(path)
		if err != nil {
			return time.Time{}, -1
		}
		return fi.ModTime(), fi.Size()
	}
	mt, sz := stat()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if m, z := stat(); z >= 0 && (!m.Equal(mt) || z != sz) {
			mt, sz = m, z
			s.log.Info().Str("file", path).Msg("config file changed: reloading")
			_ = s.ReloadFile() // logged and counted by Reload
		}
	}
}

// SetLogLevel sets the level of every logger of the Server at run time.
func (s *Server) SetLogLevel(l zerolog.Level) { s.level.set(l) }

// LogLevel is the Server's current log level.
func (s *Server) LogLevel() zerolog.Level { return s.level.get() }

// sameListeners reports whether two listener sets open the same sockets the same way;
// their TLS certificates and settings may differ (they apply on reload).
func sameListeners(a, b []config.Listener) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Address != y.Address || (x.TLS == nil) != (y.TLS == nil) || x.HTTP2 != y.HTTP2 ||
			x.ProxyProtocol != y.ProxyProtocol || x.RedirectHTTPS != y.RedirectHTTPS {
			return false
		}
	}
	return true
}
