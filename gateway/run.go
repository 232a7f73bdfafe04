package gateway

import (
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
)

// Run serves cfg until stop yields a value, then shuts down gracefully within
// shutdownTimeout. ready, if not nil, is called with the client and admin addresses
// once listening.
func Run(cfg *Config, log zerolog.Logger, shutdownTimeout time.Duration, stop <-chan struct{}, ready func(addr, admin string)) error {
	s, err := New(cfg, log)
	if err != nil {
		return err
	}
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
	if ready != nil {
		ready(lns[0].Addr().String(), adminAddr)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(lns, adminLn) }()
	select {
	case err := <-errc:
		s.Shutdown(shutdownTimeout) //nolint:errcheck // already failing
		return err
	case <-stop:
	}
	log.Info().Dur("timeout", shutdownTimeout).Msg("shutting down")
	err = s.Shutdown(shutdownTimeout)
	if serr := <-errc; err == nil {
		err = serr
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
	return Run(cfg, log, 5*time.Second, stop, func(addr, adminAddr string) {
		fmt.Fprintf(out, "\nsessiongate demo: FBDevTargetGroup with Node1 at %s and Node2 at %s\n", members[0].Addr(), members[1].Addr())
		fmt.Fprintf(out, "open      http://%s/fb/\n", addr)
		fmt.Fprintf(out, "or try    curl -c /tmp/jar -b /tmp/jar http://%s/fb/   (repeat: same member, counter grows)\n", addr)
		if adminAddr != "" {
			fmt.Fprintf(out, "status    curl http://%s/api/groups\n", adminAddr)
			fmt.Fprintf(out, "drain     curl -X POST -H 'Authorization: Bearer demo' -d '{\"state\":\"drain\"}' http://%s/api/groups/FBDevTargetGroup/members/Node1/state\n", adminAddr)
		}
		fmt.Fprintf(out, "stop with Ctrl-C\n\n")
	})
}
