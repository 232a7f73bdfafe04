package main

import (
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/gateway"
	"github.com/sessiongate/sessiongate/internal/demo"
)

// runDemo starts two demo members on loopback (Node1 and Node2, clone ids Node1 and
// Node2) and the gateway in front of them on listen, prints how to try it to out, and
// serves until stop.
func runDemo(listen, admin string, log zerolog.Logger, out io.Writer, stop <-chan struct{}) error {
	var members []*demo.Member
	for _, id := range []string{"Node1", "Node2"} {
		m, err := demo.Start(demo.Options{ID: id, HealthPath: "/fb/healthcheck"})
		if err != nil {
			return err
		}
		defer m.Close()
		members = append(members, m)
	}
	static, err := demo.Start(demo.Options{ID: "static"}) // serves /favicon.ico
	if err != nil {
		return err
	}
	defer static.Close()
	cfg := demo.Config(listen, admin, members...)
	cfg.TargetGroups = append(cfg.TargetGroups, config.NewGroup("demo-static", "/favicon.ico", config.NewMember("static", static.Addr())))
	cfg.Admin.Token = "demo" // a loopback demo: the token is printed below
	cfg.ShutdownTimeout = 5 * time.Second
	return gateway.Run(cfg, gateway.RunOptions{Log: log, Stop: stop, Ready: func(addr, adminAddr string) {
		fmt.Fprintf(out, "\nsessiongate demo: FBDevTargetGroup with Node1 at %s and Node2 at %s\n", members[0].Addr(), members[1].Addr())
		fmt.Fprintf(out, "open      http://%s/fb/\n", addr)
		fmt.Fprintf(out, "or try    curl -c /tmp/jar -b /tmp/jar http://%s/fb/   (repeat: same member, counter grows)\n", addr)
		if adminAddr != "" {
			fmt.Fprintf(out, "status    http://%s/status   (or curl http://%s/api/groups)\n", adminAddr, adminAddr)
			fmt.Fprintf(out, "drain     curl -X POST -H 'Authorization: Bearer demo' -d '{\"state\":\"drain\"}' http://%s/api/groups/FBDevTargetGroup/members/Node1/state\n", adminAddr)
		}
		fmt.Fprintf(out, "stop with Ctrl-C\n\n")
	}})
}
