package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/internal/demo"
)

// Run measures, in this order and in the same run: direct to one member, the gateway
// on each data path of o.Dataplane (fasthttp's first), then each peer in o.Peers;
// o.Rounds times over, each path's rounds merged into one phase. With o.TLS it
// measures instead the gateway (on fasthttp's data path) and each peer over TLS, each
// with LoadKeepAlive, LoadHandshake and LoadH2 (see Options.TLS). It returns the
// report, with what it skipped in its notes.
// It stops early, returning the phases measured so far, when ctx ends.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	r := &Report{
		Sessions: o.Sessions, Conns: o.Conns, Duration: o.Duration, Requests: o.Requests, Warmup: o.Warmup,
		Rate: o.Rate, Mix: o.Mix, Members: o.Members, Mode: o.Mode, Taskset: o.Taskset, ReusePort: o.ReusePort, Rounds: o.Rounds, TLS: o.TLS,
		Dataplane: o.Dataplane,
		Machine: Machine{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
			NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), CPU: cpuModel()},
	}
	if o.TLS {
		r.H2Conns, r.H2Streams = o.H2Conns, o.H2Streams
	}
	defer r.computeRatios()
	members := make([]*demo.Member, o.Members)
	for i := range members {
		m, err := demo.Start(demo.Options{ID: fmt.Sprintf("n%d", i+1), IDs: demo.Plain})
		if err != nil {
			return nil, err
		}
		defer m.Close()
		members[i] = m
	}
	// The address each proxy is configured with for member i: rotated when swapped.
	addrs := make([]string, len(members))
	for i := range members {
		j := i
		if o.SwapMembers {
			j = (i + 1) % len(members)
		}
		addrs[i] = members[j].Addr()
	}
	if o.Mode == ModeInProcess && o.TLS {
		r.Notes = append(r.Notes, "in-process: sessiongate's CPU/req* and allocs/req* are the whole bench process (load generator with its TLS client, members and gateway), not comparable with a peer's proxy process: use -mode child for CPU")
	} else if o.Mode == ModeInProcess {
		r.Notes = append(r.Notes, "in-process: CPU/req* and allocs/req* are the whole bench process (load generator, members and gateway); the gateway's own share is the difference to direct")
	}

	if o.TLS {
		dir, err := os.MkdirTemp("", "sessiongate-bench-tls-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(dir)
		certs, err := newCerts(dir)
		if err != nil {
			return nil, err
		}
		r.Notes = append(r.Notes, "tls: one ECDSA P-256 certificate from a private CA on every proxy, TLS 1.3 only; the load generator offers X25519 alone, ALPN http/1.1 (h2 alone in the h2 load), and keeps no session cache (no resumption); members plain HTTP; no direct phase")
		r.Notes = append(r.Notes, fmt.Sprintf("h2: each proxy restarted with HTTP/2 on (sessiongate http2: true, HAProxy alpn h2,http/1.1, NGINX listen ... ssl http2); Go's HTTP/2 client on %d connections with %d concurrent streams each, Cookie sent as crumbs; members HTTP/1.1", o.H2Conns, o.H2Streams))
		for round := range o.Rounds {
			if err := runTLSRound(ctx, o, r, round, members, addrs, certs); err != nil {
				return r, err
			}
		}
		return r, nil
	}
	for round := range o.Rounds {
		if err := runRound(ctx, o, r, round, members, addrs); err != nil {
			return r, err
		}
	}
	return r, nil
}

// runRound measures each path once, merging its phase into r's phase of that path.
func runRound(ctx context.Context, o Options, r *Report, round int, members []*demo.Member, addrs []string) error {
	note := func(s string) {
		if round == 0 {
			r.Notes = append(r.Notes, s)
		}
	}
	// Direct: every session bound to the first member.
	ph, err := measure(ctx, o, "direct", members[0].Addr(), members, newSessions(o.Sessions, o.Mix, members, 0), inProcessProbe(), nil, "")
	r.add(ph)
	if err != nil {
		return err
	}

	// The gateway on each data path asked for, one after the other.
	for i, dp := range o.dataplanes() {
		name := gatewayPhase(dp)
		gw, err := startGateway(o, dp, members, addrs, nil, false)
		if err != nil {
			return err
		}
		probe := inProcessProbe()
		if gw.pid > 0 {
			probe = procProbe(gw.pid)
		}
		if o.CPUProfile != "" && round == 0 && i == 0 {
			f, err := os.Create(o.CPUProfile)
			if err != nil {
				gw.stop()
				return fmt.Errorf("bench: cpuprofile: %w", err)
			}
			note("CPU profile of the first measured " + name + " phase (whole process) in " + o.CPUProfile)
			probe = profiled(probe, f)
		}
		ph, err = measure(ctx, o, name, gw.addr, members, newSessions(o.Sessions, o.Mix, members, -1), probe, nil, "")
		gw.stop()
		r.add(ph)
		if err != nil {
			return err
		}
	}

	for _, name := range o.Peers {
		var p *proxy
		var pnote string
		if name == PeerFasthttp {
			p, err = startNaive(o, addrs)
			pnote = PeerFasthttp + ": the naive fasthttp reverse proxy (HostClient.Do per member in turn, no affinity, no hop-by-hop handling, no deadlines): the floor of a fasthttp gateway; its sticky violations are by design"
		} else {
			p, pnote, err = startPeer(name, o, members, addrs, nil, false)
		}
		if err != nil {
			note(fmt.Sprintf("%s: skipped: %v", name, err))
			continue
		}
		if pnote != "" {
			note(pnote)
		}
		if p == nil {
			continue
		}
		pprobe := inProcessProbe()
		if p.pid > 0 {
			pprobe = procProbe(p.pid)
		}
		ph, err = measure(ctx, o, name, p.addr, members, newSessions(o.Sessions, o.Mix, members, -1), pprobe, nil, "")
		p.stop()
		r.add(ph)
		if err != nil {
			return err
		}
	}
	return nil
}

// runTLSRound measures the gateway and then each peer over TLS: LoadKeepAlive then
// LoadHandshake on the proxy configured for HTTP/1.1 alone, then LoadH2 on the same
// proxy restarted with HTTP/2 on, merging the phases into r's. A proxy that does not
// start is skipped with a note, the gateway included: its TLS listener is configured
// from the file format alone.
func runTLSRound(ctx context.Context, o Options, r *Report, round int, members []*demo.Member, addrs []string, certs *certFiles) error {
	note := func(s string) {
		if round == 0 {
			r.Notes = append(r.Notes, s)
		}
	}
	h1cfg, h2cfg := certs.clientConfig(), certs.h2ClientConfig()
	// loads measures kinds on the running proxy p, which it stops.
	loads := func(name string, p *proxy, probe *probe, cfg *tls.Config, kinds ...string) error {
		defer p.stop()
		label := name
		if cfg == h2cfg {
			label += " h2"
		}
		if params, err := tlsParams(p.addr, cfg); err != nil {
			note(fmt.Sprintf("%s: %v", label, err))
		} else {
			note(label + ": " + params)
		}
		for _, kind := range kinds {
			ph, err := measure(ctx, o, name, p.addr, members, newSessions(o.Sessions, o.Mix, members, -1), probe, cfg, kind)
			r.add(ph)
			if err != nil {
				return err
			}
			if probe.done != nil { // the CPU profile covers the first phase only
				probe = inProcessProbe()
			}
		}
		return nil
	}
	gatewayProbe := func(gw *proxy) *probe {
		if gw.pid > 0 {
			return procProbe(gw.pid)
		}
		return inProcessProbe()
	}

	gw, err := startGateway(o, config.DataplaneFasthttp, members, addrs, certs, false)
	if err != nil {
		note(fmt.Sprintf("sessiongate: skipped: %v", err))
	} else {
		probe := gatewayProbe(gw)
		if o.CPUProfile != "" && round == 0 {
			f, err := os.Create(o.CPUProfile)
			if err != nil {
				gw.stop()
				return fmt.Errorf("bench: cpuprofile: %w", err)
			}
			note("CPU profile of the first measured sessiongate phase (keep-alive, whole process) in " + o.CPUProfile)
			probe = profiled(probe, f)
		}
		if err := loads("sessiongate", gw, probe, h1cfg, LoadKeepAlive, LoadHandshake); err != nil {
			return err
		}
	}
	if gw, err := startGateway(o, config.DataplaneFasthttp, members, addrs, certs, true); err != nil {
		note(fmt.Sprintf("sessiongate h2: skipped: %v", err))
	} else if err := loads("sessiongate", gw, gatewayProbe(gw), h2cfg, LoadH2); err != nil {
		return err
	}

	for _, name := range o.Peers {
		for _, h2 := range []bool{false, true} {
			p, pnote, err := startPeer(name, o, members, addrs, certs, h2)
			if err != nil {
				label := name
				if h2 {
					label += " h2"
				}
				note(fmt.Sprintf("%s: skipped: %v", label, err))
				continue
			}
			if pnote != "" && !h2 {
				note(pnote)
			}
			if p == nil {
				break // not installed
			}
			if h2 {
				err = loads(name, p, procProbe(p.pid), h2cfg, LoadH2)
			} else {
				err = loads(name, p, procProbe(p.pid), h1cfg, LoadKeepAlive, LoadHandshake)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// add records a measured phase: the first of its path as is, later rounds merged in.
func (r *Report) add(ph Phase) {
	for i := range r.Phases {
		if r.Phases[i].Name == ph.Name && r.Phases[i].Load == ph.Load {
			r.Phases[i].merge(ph)
			return
		}
	}
	r.Phases = append(r.Phases, ph)
}

// measure runs one phase and reads the probe around its measured part; with cfg, over
// TLS with the load of kind (LoadKeepAlive, LoadHandshake or LoadH2).
func measure(ctx context.Context, o Options, name, addr string, members []*demo.Member, sessions []*session, probe *probe, cfg *tls.Config, kind string) (Phase, error) {
	foreign0 := int64(0)
	for _, m := range members {
		foreign0 += m.Foreign()
	}
	l := &load{opts: o, addr: addr, members: members, sessions: sessions, name: name, tls: cfg, loadKind: kind}
	var cpu0 time.Duration
	var mallocs0 uint64
	var ms runtime.MemStats
	var cpu time.Duration
	var mallocs uint64
	ph, err := l.run(ctx, func(start bool) {
		if start {
			if probe.allocs {
				runtime.ReadMemStats(&ms)
				mallocs0 = ms.Mallocs
			}
			if probe.begin != nil {
				probe.begin()
			}
			cpu0 = probe.cpu()
			return
		}
		cpu = probe.cpu() - cpu0
		if probe.allocs {
			runtime.ReadMemStats(&ms)
			mallocs = ms.Mallocs - mallocs0
		}
		if probe.done != nil {
			probe.done()
		}
	})
	for _, m := range members {
		ph.MemberForeign += m.Foreign()
	}
	ph.MemberForeign -= foreign0
	if ph.Requests > 0 {
		ph.CPUScope = probe.scope
		ph.cpu = cpu
		if probe.allocs {
			ph.mallocs = mallocs
		}
		ph.summarize()
	}
	return ph, err
}

// probe reads the CPU time of what a phase measures.
type probe struct {
	scope  string
	cpu    func() time.Duration
	allocs bool
	begin  func() // when measurement starts, if set
	done   func() // when measurement ends, if set
}

func inProcessProbe() *probe {
	return &probe{scope: "bench process", allocs: true, cpu: func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}}
}

// procProbe reads utime+stime of pid and its waited-for children from /proc/<pid>/stat.
func procProbe(pid int) *probe {
	return &probe{scope: "proxy process", cpu: func() time.Duration { return procCPU(pid) }}
}

// profiled makes p profile the CPU into f while the phase is measured.
func profiled(p *probe, f *os.File) *probe {
	started := false
	p.begin = func() { started = pprof.StartCPUProfile(f) == nil }
	p.done = func() {
		if started {
			pprof.StopCPUProfile()
		}
		f.Close()
	}
	return p
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times; 100 on Linux.
const clockTick = 100

func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * time.Second / clockTick
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

var errNotReady = errors.New("bench: proxy did not start listening")
