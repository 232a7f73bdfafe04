package gateway

import (
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
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
	Load func() (*Config, error)
	// WatchFile, if set, is polled every 2s and reloaded when it changes.
	WatchFile string
	// Ready, if set, is called with the client and admin addresses once listening.
	Ready func(addr, admin string)
}

// Run serves cfg until o.Stop yields, reloading on o.Reload, then shuts down
// gracefully: it stops accepting, lets in-flight requests finish up to
// cfg.ShutdownTimeout and closes idle connections.
func Run(cfg *Config, o RunOptions) error {
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
	log.Info().Dur("timeout", timeout).Msg("shutting down: no new connections, finishing in-flight requests")
	err = s.Shutdown(timeout)
	if serr := <-errc; err == nil {
		err = serr
	}
	if err == nil {
		log.Info().Msg("shutdown complete")
	}
	return err
}

// RunDemo starts two demo members on loopback (Node1 and Node2, clone ids Node1 and
// Node2) and the gateway in front of them on listen, prints how to try it to out, and
// serves until stop.
func RunDemo(listen, admin string, log zerolog.Logger, out io.Writer, stop <-chan struct{}) error {
	var members []*DemoMember
	for _, id := range []string{"Node1", "Node2"} {
		m, err := StartDemoMember(id, id, "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer m.Close()
		members = append(members, m)
	}
	cfg := DemoConfig(listen, admin, members...)
	cfg.Admin.Token = "demo" // a loopback demo: the token is printed below
	cfg.ShutdownTimeout = 5 * time.Second
	return Run(cfg, RunOptions{Log: log, Stop: stop, Ready: func(addr, adminAddr string) {
		fmt.Fprintf(out, "\nsessiongate demo: FBDevTargetGroup with Node1 at %s and Node2 at %s\n", members[0].Addr(), members[1].Addr())
		fmt.Fprintf(out, "open      http://%s/fb/\n", addr)
		fmt.Fprintf(out, "or try    curl -c /tmp/jar -b /tmp/jar http://%s/fb/   (repeat: same member, counter grows)\n", addr)
		if adminAddr != "" {
			fmt.Fprintf(out, "status    curl http://%s/api/groups\n", adminAddr)
			fmt.Fprintf(out, "drain     curl -X POST -H 'Authorization: Bearer demo' -d '{\"state\":\"drain\"}' http://%s/api/groups/FBDevTargetGroup/members/Node1/state\n", adminAddr)
		}
		fmt.Fprintf(out, "stop with Ctrl-C\n\n")
	}})
}
