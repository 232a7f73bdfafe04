// Command sessiongate is the session-affinity HTTP gateway. See the README for the
// configuration reference.
//
//	sessiongate -config FILE [flags]   serve
//	sessiongate validate -config FILE  check a configuration file and exit
//	sessiongate demo                   two demo members and the gateway in front
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sessiongate/sessiongate/gateway"
)

const usage = `sessiongate: a layer-7 HTTP gateway that keeps every session on its member.

Usage:
  sessiongate -config FILE [flags]    serve the configuration
  sessiongate validate -config FILE   check a configuration file; non-zero exit when invalid
  sessiongate demo [-listen ADDR]     two WebSphere-like members on loopback, the gateway in front

Flags (each overrides the config file field named in parentheses):
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cmd := "serve"
	if len(args) > 0 && (args[0] == "validate" || args[0] == "demo" || args[0] == "serve") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("sessiongate", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	var f gateway.Flags
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch cmd {
	case "validate":
		cfg, err := f.Load()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("%s: ok (%d target groups)\n", f.Config, len(cfg.TargetGroups))
		return 0
	case "demo":
		d := gateway.DefaultConfig() // listens on 127.0.0.1:8080, admin on 127.0.0.1:9090
		d.Log.Format = "console"
		f.Apply(&d)
		log, err := gateway.NewLogger(d.Log, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if err := gateway.RunDemo(d.Listen, d.Admin.Listen, log, os.Stdout, signals()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	cfg, err := f.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log, err := gateway.NewLogger(cfg.Log, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	opts := gateway.RunOptions{Log: log, Stop: signals(), Reload: hangups(), Load: f.Load}
	if f.Watch {
		opts.WatchFile = f.Config
	}
	if err := gateway.Run(cfg, opts); err != nil {
		log.Error().Err(err).Msg("sessiongate stopped")
		return 1
	}
	return 0
}

// hangups returns a channel that yields at each SIGHUP (reload).
func hangups() <-chan struct{} {
	c := make(chan struct{}, 1)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	go func() {
		for range sig {
			select {
			case c <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()
	return c
}

// signals returns a channel closed at the first SIGINT or SIGTERM; a second one exits
// the process at once.
func signals() <-chan struct{} {
	stop := make(chan struct{})
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		close(stop)
		<-sig
		fmt.Fprintln(os.Stderr, "sessiongate: second signal, exiting now")
		os.Exit(1)
	}()
	return stop
}
