package bench

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sessiongate/sessiongate/config"
)

// Modes of running the gateway.
const (
	ModeInProcess = "in-process" // gateway.Server in the bench process (default)
	ModeChild     = "child"      // `<executable> serve -config FILE` as a child process
)

// DataplaneBoth is the Options.Dataplane that measures the gateway on both data paths,
// fasthttp's and epoll's, in the same interleaved rounds.
const DataplaneBoth = "both"

// PhaseEpoll is the name of the phase of the gateway on the epoll data path; the one on
// fasthttp's keeps the name "sessiongate".
const PhaseEpoll = "sessiongate (epoll)"

// dataplanes are the data paths o measures the gateway on, in the order of a round.
func (o *Options) dataplanes() []string {
	switch o.Dataplane {
	case DataplaneBoth:
		return []string{config.DataplaneFasthttp, config.DataplaneEpoll}
	case config.DataplaneEpoll:
		return []string{config.DataplaneEpoll}
	}
	return []string{config.DataplaneFasthttp}
}

// gatewayPhase is the name of the gateway's phase on the data path dataplane.
func gatewayPhase(dataplane string) string {
	if dataplane == config.DataplaneEpoll {
		return PhaseEpoll
	}
	return "sessiongate"
}

// Options configure a Run. Zero values take the documented defaults.
type Options struct {
	// Sessions is the session population per phase. Default 10000.
	Sessions int
	// Conns is the number of keep-alive connections, one worker each. Default 32.
	Conns int
	// Duration bounds each measured phase. Default 10s when Requests is 0 too.
	Duration time.Duration
	// Requests bounds each measured phase by count; with Duration, whichever comes first.
	Requests int64
	// Warmup runs before each measured phase and is not counted. Default 1s; negative = none.
	Warmup time.Duration
	// Rate is the total request rate of an open loop, in requests per second; latency
	// is then measured from each request's intended send time, so a stall shows as
	// latency instead of as fewer requests (coordinated omission). 0 = closed loop.
	Rate float64
	// Mix is the share of each session key format. Default DefaultMix.
	Mix Mix
	// Members is the number of members in the group. Default 2.
	Members int
	// Mode is ModeInProcess (default) or ModeChild.
	Mode string
	// Executable is the sessiongate binary of ModeChild. Default os.Args[0].
	Executable string
	// Taskset, if set, pins child processes (gateway, peers) to these CPUs with
	// `taskset -c`, when taskset is installed.
	Taskset string
	// Peers are other proxies measured in the same layout: "haproxy", "nginx", and
	// "fasthttp" (PeerFasthttp, run like the gateway: in-process or as a child). A peer
	// whose binary is not on PATH is skipped with a note in the report.
	Peers []string
	// CPUProfile, if set, is where the CPU profile of the gateway phase is written
	// (in-process mode only).
	CPUProfile string
	// Rounds repeats the sequence of phases (direct, gateway, peers) this many times and
	// merges each path's rounds, so that a shared machine's slow minutes fall on every
	// path alike. Default 1.
	Rounds int
	// ReusePort runs the gateway with `reuseport: true`: one SO_REUSEPORT listener per
	// CPU instead of one listener served by fasthttp's worker pool.
	ReusePort bool
	// Dataplane is the gateway's data path (config.Listener.Dataplane):
	// config.DataplaneFasthttp (default), the phase "sessiongate";
	// config.DataplaneEpoll, the phase "sessiongate (epoll)" (PhaseEpoll) instead; or
	// DataplaneBoth, both phases in each round, fasthttp's first, each with its own
	// CPU per request and ratios. The plain bench only: not with TLS.
	Dataplane string
	// TLS runs the TLS bench instead (`sessiongate bench -tls`): sessiongate and the
	// peers terminate TLS 1.3 with one certificate made for the run, the members stay
	// plain HTTP, and each proxy is measured three times per round: keep-alive HTTPS
	// (LoadKeepAlive) and one new TLS connection per request (LoadHandshake) on the
	// proxy configured for HTTP/1.1 only, then HTTP/2 (LoadH2) on the same proxy
	// restarted with HTTP/2 on. There is no direct phase; sessiongate's ratios are to
	// the best peer of each load.
	TLS bool
	// H2Conns is the number of HTTP/2 connections of LoadH2. Default 4.
	H2Conns int
	// H2Streams is the number of concurrent streams on each H2Conns connection: one
	// worker each, one request at a time. Default 16; every proxy of the bench allows
	// at least 100.
	H2Streams int
	// SwapMembers configures the gateway (and peers) with the members' addresses
	// rotated against their route ids: a wrong configuration whose sticky violations
	// the bench must see.
	SwapMembers bool
	// Progress, if set, receives a live progress line (carriage return, no newline).
	Progress io.Writer
	// PhaseLog, if set, receives one line per measured phase (for a log that is not a
	// terminal).
	PhaseLog io.Writer
}

func (o *Options) defaults() error {
	if o.Sessions == 0 {
		o.Sessions = 10000
	}
	if o.Conns == 0 {
		o.Conns = 32
	}
	if o.Duration == 0 && o.Requests == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Warmup == 0 {
		o.Warmup = time.Second
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Mix == (Mix{}) {
		o.Mix = DefaultMix
	}
	if o.Members == 0 {
		o.Members = 2
	}
	if o.Rounds == 0 {
		o.Rounds = 1
	}
	if o.H2Conns == 0 {
		o.H2Conns = 4
	}
	if o.H2Streams == 0 {
		o.H2Streams = 16
	}
	if o.Mode == "" {
		o.Mode = ModeInProcess
	}
	if o.Dataplane == "" {
		o.Dataplane = config.DataplaneFasthttp
	}
	switch {
	case o.Sessions < 1:
		return fmt.Errorf("bench: sessions %d: must be at least 1", o.Sessions)
	case o.Conns < 1:
		return fmt.Errorf("bench: conns %d: must be at least 1", o.Conns)
	case o.Duration < 0 || o.Requests < 0:
		return errors.New("bench: duration and requests must not be negative")
	case o.Rate < 0:
		return fmt.Errorf("bench: rate %g: must not be negative", o.Rate)
	case o.H2Conns < 1 || o.H2Conns > 1024:
		return fmt.Errorf("bench: h2 conns %d: range 1-1024", o.H2Conns)
	case o.H2Streams < 1 || o.H2Streams > 100:
		return fmt.Errorf("bench: h2 streams %d: range 1-100 (the lowest stream limit of the proxies, HAProxy's)", o.H2Streams)
	case o.Rounds < 1 || o.Rounds > 100:
		return fmt.Errorf("bench: rounds %d: range 1-100", o.Rounds)
	case o.Members < 1 || o.Members > 64:
		return fmt.Errorf("bench: members %d: range 1-64", o.Members)
	case o.Mode != ModeInProcess && o.Mode != ModeChild:
		return fmt.Errorf("bench: mode %q: want %s or %s", o.Mode, ModeInProcess, ModeChild)
	case o.CPUProfile != "" && o.Mode != ModeInProcess:
		return errors.New("bench: cpuprofile needs mode in-process")
	case o.Dataplane != config.DataplaneFasthttp && o.Dataplane != config.DataplaneEpoll && o.Dataplane != DataplaneBoth:
		return fmt.Errorf("bench: dataplane %q: want %s, %s or %s", o.Dataplane, config.DataplaneFasthttp, config.DataplaneEpoll, DataplaneBoth)
	case o.TLS && o.Dataplane != config.DataplaneFasthttp:
		return fmt.Errorf("bench: dataplane %q: not with tls: the TLS bench measures fasthttp's data path only (epoll serves plain listeners)", o.Dataplane)
	}
	for _, p := range o.Peers {
		if p != "haproxy" && p != "nginx" && p != PeerFasthttp {
			return fmt.Errorf("bench: peer %q: want haproxy, nginx or %s", p, PeerFasthttp)
		}
		if p == PeerFasthttp && o.TLS {
			return fmt.Errorf("bench: peer %q: plain HTTP only, not with tls", p)
		}
	}
	return nil
}

// Mix is the share of each session key format; the shares are relative weights.
type Mix struct {
	// WebSphere keys carry a clone list: "0000<id>:<clone>:<clone>...", bound to the first clone.
	WebSphere float64 `json:"websphere"`
	// Tomcat keys carry a jvmRoute: "<id>.<route>".
	Tomcat float64 `json:"tomcat"`
	// Learned sessions start without a key; the member's Set-Cookie issues an opaque
	// id without a route, bound to that member.
	Learned float64 `json:"learned"`
	// Hashed keys are opaque ids the client makes up and no member issued, bound to
	// the first member that serves them.
	Hashed float64 `json:"hashed"`
}

// DefaultMix is 40% WebSphere, 30% Tomcat, 20% learned, 10% hashed.
var DefaultMix = Mix{WebSphere: 40, Tomcat: 30, Learned: 20, Hashed: 10}

// ParseMix reads "websphere=40,tomcat=30,learned=20,hashed=10"; formats left out get 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return Mix{}, fmt.Errorf("bench: mix %q: want name=weight", part)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil || v < 0 {
			return Mix{}, fmt.Errorf("bench: mix %q: weight must be a non-negative number", part)
		}
		switch name {
		case "websphere":
			m.WebSphere = v
		case "tomcat":
			m.Tomcat = v
		case "learned":
			m.Learned = v
		case "hashed":
			m.Hashed = v
		default:
			return Mix{}, fmt.Errorf("bench: mix %q: unknown format %q (websphere, tomcat, learned, hashed)", part, name)
		}
	}
	if m == (Mix{}) {
		return Mix{}, fmt.Errorf("bench: mix %q: all weights are 0", s)
	}
	return m, nil
}

func (m Mix) String() string {
	return fmt.Sprintf("websphere=%g,tomcat=%g,learned=%g,hashed=%g", m.WebSphere, m.Tomcat, m.Learned, m.Hashed)
}
