package gateway

import (
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
)

// RunOptions are what Run needs besides the configuration.
type RunOptions struct {
	Log zerolog.Logger
	// Stop ends serving: a graceful shutdown within the config's shutdown_timeout.
	Stop <-chan struct{}
	// Reload (SIGHUP) reloads the configuration through Load.
	Reload <-chan struct{}
	// Load reads the configuration file again (with the flags applied); nil when the
	// gateway does not run from a file.
	Load func() (*config.Config, error)
	// WatchFile, if set, is polled every 2s and reloaded when it changes.
	WatchFile string
	// Ready, if set, is called with the client and admin addresses once listening.
	Ready func(addr, admin string)
}

// Run serves cfg until o.Stop yields, reloading on o.Reload, then shuts down
// gracefully: it stops accepting, lets in-flight requests finish up to
// cfg.ShutdownTimeout and closes idle connections.
func Run(cfg *config.Config, o RunOptions) error {
	log := o.Log
	s, err := New(cfg, log)
	if err != nil {
		return err
	}
	s.SetLoader(o.Load)
	lns, err := s.Listen()
	if err != nil {
		s.Shutdown(time.Second) //nolint:errcheck // nothing is serving yet
		return err
	}
	adminLn, err := s.ListenAdmin()
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		s.Shutdown(time.Second) //nolint:errcheck // nothing is serving yet
		return err
	}
	adminAddr := ""
	if adminLn != nil {
		adminAddr = adminLn.Addr().String()
	}
	log.Info().Str("listen", lns[0].Addr().String()).Int("listeners", len(lns)).Str("admin", adminAddr).
		Int("groups", len(cfg.TargetGroups)).Msg("sessiongate serving")
	if o.Ready != nil {
		o.Ready(lns[0].Addr().String(), adminAddr)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(lns, adminLn) }()
	done := make(chan struct{})
	defer close(done)
	if o.WatchFile != "" {
		go s.watchFile(o.WatchFile, 2*time.Second, done)
	}
	for {
		select {
		case err := <-errc:
			s.Shutdown(time.Second) //nolint:errcheck // already failing
			return err
		case <-o.Reload:
			_ = s.ReloadFile() // logged and counted
			continue
		case <-o.Stop:
		}
		break
	}
	timeout := s.snap.Load().cfg.ShutdownTimeout
	log.Info().Float64("timeout_ms", ms(timeout)).Msg("shutting down: no new connections, finishing in-flight requests")
	err = s.Shutdown(timeout)
	if serr := <-errc; err == nil {
		err = serr
	}
	if err == nil {
		log.Info().Msg("shutdown complete")
	}
	return err
}
