// Command sessiongate is the session-affinity HTTP gateway. See docs/configuration.md for
// the configuration reference.
//
//	sessiongate -config FILE [flags]   serve
//	sessiongate validate -config FILE  check a configuration file and exit
//	sessiongate demo                   two demo members and the gateway in front
//	sessiongate bench [flags]          load benchmark: direct, gateway, peers
//	sessiongate version                the build: version, VCS revision, Go version
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sessiongate/sessiongate/bench"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/gateway"
)

const usage = `sessiongate: a layer-7 HTTP gateway that keeps every session on its member.

Usage:
  sessiongate -config FILE [flags]    serve the configuration
  sessiongate validate -config FILE   check a configuration file; non-zero exit when invalid
  sessiongate demo [-listen ADDR]     two WebSphere-like members on loopback, the gateway in front
  sessiongate bench [flags]           load benchmark: direct, gateway and peers (bench -h)
  sessiongate version                 print the version, VCS revision and Go version (also -version)

Flags (each overrides the config file field named in parentheses):
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "bench" {
		return runBench(args[1:])
	}
	if len(args) > 0 && args[0] == "version" {
		fmt.Println(gateway.Version())
		return 0
	}
	cmd := "serve"
	if len(args) > 0 && (args[0] == "validate" || args[0] == "demo" || args[0] == "serve") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("sessiongate", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	var f Flags
	f.Register(fs)
	version := fs.Bool("version", false, "print the version, VCS revision and Go version, and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *version {
		fmt.Println(gateway.Version())
		return 0
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
		d := config.Default() // listens on 127.0.0.1:8080, admin on 127.0.0.1:9090
		d.Log.Format = "console"
		f.Apply(&d)
		log, err := gateway.NewLogger(d.Log, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if err := runDemo(d.Listen, d.Admin.Listen, log, os.Stdout, signals()); err != nil {
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

// signalContext is a context cancelled at the first SIGINT or SIGTERM (a second one
// exits at once, as with signals).
func signalContext() (context.Context, context.CancelFunc) {
	stop := signals()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
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

const benchUsage = `Usage: sessiongate bench [flags]

Starts members on loopback and measures, in one run, requests sent straight to one
member, through sessiongate and through each peer; every response is checked for
stickiness. Prints a table, JSON with -json, or Markdown with -markdown. With -memory, measures instead the
heap and RSS per learned session of the session cache. With -tls, sessiongate and the
peers terminate TLS 1.3 with one certificate made for the run, and each is measured
with keep-alive HTTPS, with one new TLS handshake per request, and with HTTP/2 streams
on a few connections (-h2-conns, -h2-streams), against the best peer. With -dataplane
epoll the gateway runs on its epoll data path instead (the row "sessiongate (epoll)"),
and with -dataplane both on fasthttp's and epoll's in the same interleaved rounds (the
rows "sessiongate" and "sessiongate (epoll)"); the TLS bench is fasthttp's only.

`

// runBench is `sessiongate bench`: flags in, bench.Run, the report out. The exit code
// is 1 when the run fails or any phase but nginx's has errors or sticky violations, and
// 3 when the only failure is a sessiongate/direct ratio below -min-ratio.
// writeReport prints a bench report to stdout, as JSON, as Markdown or as a table.
func writeReport(r *bench.Report, asJSON, asMarkdown bool) {
	switch {
	case asJSON:
		r.WriteJSON(os.Stdout) //nolint:errcheck // stdout
	case asMarkdown:
		r.WriteMarkdown(os.Stdout) //nolint:errcheck // stdout
	default:
		r.WriteTable(os.Stdout) //nolint:errcheck // stdout
	}
}

func runBench(args []string) int {
	fs := flag.NewFlagSet("sessiongate bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	var o bench.Options
	fs.IntVar(&o.Sessions, "sessions", 10000, "session population per phase")
	fs.IntVar(&o.Conns, "conns", 32, "keep-alive connections (one worker each)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time per phase (with -requests: whichever comes first)")
	fs.Int64Var(&o.Requests, "requests", 0, "measured requests per phase (0 = bounded by -duration only)")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "warm-up per phase, not measured (0 = none)")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop at this many requests/s in total (0 = closed loop)")
	mix := fs.String("mix", bench.DefaultMix.String(), "shares of session key formats")
	fs.IntVar(&o.Members, "members", 2, "members in the group")
	fs.StringVar(&o.Mode, "mode", bench.ModeInProcess, "gateway in-process or child (re-exec of this binary)")
	fs.IntVar(&o.Rounds, "rounds", 1, "measure the phases this many times, interleaved, and merge each path's rounds")
	fs.BoolVar(&o.ReusePort, "reuseport", false, "run the gateway with reuseport: true (one SO_REUSEPORT listener per CPU)")
	fs.StringVar(&o.Dataplane, "dataplane", config.DataplaneFasthttp, "the gateway's data path (listeners[].dataplane): fasthttp, epoll (the row \"sessiongate (epoll)\"), or both (both rows in the same rounds); not with -tls")
	fs.StringVar(&o.Taskset, "taskset", "", "pin child processes to these CPUs (taskset -c LIST)")
	fs.BoolVar(&o.TLS, "tls", false, "TLS 1.3 on sessiongate and the peers: keep-alive HTTPS, new handshakes per second and HTTP/2, no direct phase")
	fs.IntVar(&o.H2Conns, "h2-conns", 4, "with -tls: connections of the h2 load")
	fs.IntVar(&o.H2Streams, "h2-streams", 16, "with -tls: concurrent streams on each connection of the h2 load (1-100)")
	peers := fs.String("peers", "", "comma-separated peers measured too: haproxy, nginx, fasthttp (the naive fasthttp proxy)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	asMarkdown := fs.Bool("markdown", false, "print the report as a Markdown table (not with -memory)")
	minRatio := fs.Float64("min-ratio", 0, "fail (exit 1) when sessiongate/direct req/s is below this (the CI gate); 0 = not checked")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write the CPU profile of the sessiongate phase to this file (in-process)")
	target := fs.String("target", "", "measure an existing deployment at this URL instead (sessions from its Set-Cookie; see -member-header)")
	memberHeader := fs.String("member-header", "", "with -target: the response header naming the member, for the stickiness check")
	cookie := fs.String("cookie", "JSESSIONID", "with -target: the session cookie's name")
	keyless := fs.Float64("keyless", 0, "with -target: share of requests sent without a cookie (0-1)")
	memory := fs.Bool("memory", false, "measure only the session cache's memory per learned session (see -memory-sizes)")
	memorySizes := fs.String("memory-sizes", "100000,1000000", "comma-separated session counts of -memory")
	instances := fs.Int("instances", 0, "prove N gateway processes on one config route alike: each request to a random instance, a member killed halfway (see -instance-modes)")
	instanceModes := fs.String("instance-modes", "", "with -instances: comma-separated modes: route, cookie, hash, learned-redis, learned-local (default: route, cookie, hash, and learned-redis with -redis)")
	redisAddr := fs.String("redis", "", "with -instances: the Redis address of the learned-redis mode")
	serveNaive := fs.String("serve-naive", "", "serve the naive fasthttp peer on this address (the child process of -peers fasthttp)")
	naiveMembers := fs.String("naive-members", "", "with -serve-naive: comma-separated member addresses")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *serveNaive != "" {
		if err := bench.ServeNaive(*serveNaive, *naiveMembers); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	if *asMarkdown && (*asJSON || *memory) {
		fmt.Fprintln(os.Stderr, "sessiongate bench: -markdown does not combine with -json or -memory")
		return 2
	}
	if o.TLS && (*memory || *target != "" || *minRatio > 0) {
		fmt.Fprintln(os.Stderr, "sessiongate bench: -tls does not combine with -memory, -target (give it an https URL) or -min-ratio (no direct phase)")
		return 2
	}
	if o.Dataplane != config.DataplaneFasthttp && o.Dataplane != config.DataplaneEpoll && o.Dataplane != bench.DataplaneBoth {
		fmt.Fprintf(os.Stderr, "sessiongate bench: -dataplane %q: want %s, %s or %s\n", o.Dataplane, config.DataplaneFasthttp, config.DataplaneEpoll, bench.DataplaneBoth)
		return 2
	}
	if o.TLS && o.Dataplane != config.DataplaneFasthttp {
		fmt.Fprintf(os.Stderr, "sessiongate bench: -tls does not combine with -dataplane %s: the epoll data path serves plain listeners only, so the TLS bench is fasthttp's (leave -dataplane out)\n", o.Dataplane)
		return 2
	}
	if o.H2Conns < 1 || o.H2Streams < 1 {
		fmt.Fprintln(os.Stderr, "sessiongate bench: -h2-conns and -h2-streams must be at least 1")
		return 2
	}
	if *memory {
		return runMemory(*memorySizes, *asJSON)
	}
	if *instances > 0 {
		return runInstances(*instances, *instanceModes, *redisAddr, fs.Lookup("sessions").Value.String() == "10000", o.Sessions, *asJSON)
	}
	var phaseLog io.Writer
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice == 0 {
		phaseLog = os.Stderr // not a terminal: one line per phase instead of a live line
	}
	if *target != "" {
		ctx, cancel := signalContext()
		defer cancel()
		t := bench.TargetOptions{URL: *target, Sessions: o.Sessions, Keyless: *keyless, Conns: o.Conns,
			Duration: o.Duration, Warmup: o.Warmup, Cookie: *cookie, MemberHeader: *memberHeader, PhaseLog: phaseLog}
		if fs.Lookup("sessions").Value.String() == "10000" {
			t.Sessions = 1000
		}
		ph, err := bench.RunTarget(ctx, t)
		if ph != nil {
			writeReport(&bench.Report{Sessions: t.Sessions, Conns: t.Conns, Duration: t.Duration, Warmup: t.Warmup, Mode: "target " + *target, Phases: []bench.Phase{*ph}}, *asJSON, *asMarkdown)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if ph.ErrorCount > 0 || ph.StickyViolations > 0 {
			return 1
		}
		return 0
	}
	durationSet, warmupSet := false, false
	fs.Visit(func(f *flag.Flag) {
		durationSet = durationSet || f.Name == "duration"
		warmupSet = warmupSet || f.Name == "warmup"
	})
	if o.Requests > 0 && !durationSet {
		o.Duration = 0
	}
	if warmupSet && o.Warmup == 0 {
		o.Warmup = -1
	}
	var err error
	if o.Mix, err = bench.ParseMix(*mix); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for p := range strings.SplitSeq(*peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.Peers = append(o.Peers, p)
		}
	}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		o.Progress = os.Stderr
	}
	o.PhaseLog = phaseLog
	ctx, cancel := signalContext()
	defer cancel()
	r, err := bench.Run(ctx, o)
	if r != nil {
		writeReport(r, *asJSON, *asMarkdown)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if fails := r.Gate(*minRatio); len(fails) > 0 {
		for _, f := range fails {
			fmt.Fprintln(os.Stderr, "bench gate:", f)
		}
		if len(r.Gate(0)) == 0 {
			return 3 // only the ratio: a noisy neighbour can cause it, a retry may pass
		}
		return 1
	}
	return 0
}

// runInstances is `sessiongate bench -instances N`: bench.RunInstances, the table (or
// JSON) out. The exit code is 1 when a mode other than the learned-local control has a
// failed request or a violation.
func runInstances(n int, modes, redis string, defaultSessions bool, sessions int, asJSON bool) int {
	o := bench.InstancesOptions{Instances: n, Redis: redis}
	if !defaultSessions {
		o.Sessions = sessions
	}
	exe, err := os.Executable()
	if err == nil {
		o.Executable = exe
	}
	for m := range strings.SplitSeq(modes, ",") {
		if m = strings.TrimSpace(m); m != "" {
			o.Modes = append(o.Modes, m)
		}
	}
	ctx, cancel := signalContext()
	defer cancel()
	rs, err := bench.RunInstances(ctx, o)
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rs) //nolint:errcheck // stdout
	} else {
		bench.WriteInstances(os.Stdout, rs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, r := range rs {
		if r.Mode != bench.InstancesLearnedLocal && (r.Failed > 0 || r.Violations > 0) {
			return 1
		}
	}
	return 0
}

// runMemory is `sessiongate bench -memory`: bench.Memory at the sizes given, the
// report out. The exit code is 2 for a bad size list and 1 when the run fails.
func runMemory(sizeList string, asJSON bool) int {
	var sizes []int
	for f := range strings.SplitSeq(sizeList, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "sessiongate bench: memory-sizes %q: want positive integers\n", sizeList)
			return 2
		}
		sizes = append(sizes, n)
	}
	ctx, cancel := signalContext()
	defer cancel()
	r, err := bench.Memory(ctx, sizes)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if asJSON {
		r.WriteJSON(os.Stdout) //nolint:errcheck // stdout
	} else {
		r.WriteTable(os.Stdout) //nolint:errcheck // stdout
	}
	return 0
}
