package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/internal/demo"
)

// shortOptions are a bounded run of about a second per phase.
func shortOptions() Options {
	return Options{Sessions: 200, Conns: 4, Duration: 400 * time.Millisecond, Warmup: 200 * time.Millisecond}
}

func run(t *testing.T, o Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r
}

func phase(t *testing.T, r *Report, name string) *Phase {
	t.Helper()
	p := r.Phase(name)
	if p == nil {
		t.Fatalf("report has no phase %q", name)
	}
	return p
}

func TestRunGateway(t *testing.T) {
	r := run(t, shortOptions())
	for _, name := range []string{"direct", "sessiongate"} {
		p := phase(t, r, name)
		if p.Requests == 0 {
			t.Errorf("%s: 0 requests", name)
		}
		if p.ErrorCount != 0 || p.StickyViolations != 0 || p.MemberForeign != 0 {
			t.Errorf("%s: errors %d %v, sticky violations %d, member foreign %d, want none", name, p.ErrorCount, p.Errors, p.StickyViolations, p.MemberForeign)
		}
		if p.P50 <= 0 || p.P99 < p.P50 || p.Max < p.P99 {
			t.Errorf("%s: p50 %v, p99 %v, max %v: not ordered", name, p.P50, p.P99, p.Max)
		}
	}
	if g := phase(t, r, "sessiongate"); g.VsDirect == nil || g.VsDirect.RPS <= 0 {
		t.Errorf("sessiongate: ratios to direct %+v, want them set", g.VsDirect)
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil || !strings.Contains(b.String(), "sessiongate/direct: req/s") {
		t.Errorf("WriteTable = %v:\n%s\nwant the gateway/direct ratio line", err, b.String())
	}
}

// needEpoll skips a test of the epoll data path where it does not run.
func needEpoll(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("the epoll data path needs Linux, not %s", runtime.GOOS)
	}
}

// With both data paths, the gateway is measured twice in the same rounds: the rows
// sessiongate (fasthttp) and sessiongate (epoll), each clean, with its own CPU per
// request and ratios, and the epoll row's ratios to the fasthttp one.
func TestRunDataplaneBoth(t *testing.T) {
	needEpoll(t)
	o := shortOptions()
	o.Dataplane = DataplaneBoth
	r := run(t, o)
	var names []string
	for _, p := range r.Phases {
		names = append(names, p.Name)
	}
	if want := []string{"direct", "sessiongate", PhaseEpoll}; !slices.Equal(names, want) {
		t.Fatalf("phases %q, want %q", names, want)
	}
	for _, name := range []string{"sessiongate", PhaseEpoll} {
		p := phase(t, r, name)
		if p.Requests == 0 || p.ErrorCount != 0 || p.StickyViolations != 0 || p.MemberForeign != 0 {
			t.Errorf("%s: %d requests, errors %d %v, sticky violations %d, member foreign %d; want requests and none", name, p.Requests, p.ErrorCount, p.Errors, p.StickyViolations, p.MemberForeign)
		}
		if p.CPUPerRequest <= 0 || p.VsDirect == nil || p.VsDirect.RPS <= 0 || p.VsDirect.CPU <= 0 {
			t.Errorf("%s: CPU/req %v, ratios to direct %+v; want both set", name, p.CPUPerRequest, p.VsDirect)
		}
	}
	if e := phase(t, r, PhaseEpoll); e.VsFasthttpDataplane == nil || e.VsFasthttpDataplane.RPS <= 0 {
		t.Errorf("%s: ratios to sessiongate %+v, want them set", PhaseEpoll, e.VsFasthttpDataplane)
	}
	if fails := r.Gate(0); len(fails) != 0 {
		t.Errorf("Gate(0) = %q, want none", fails)
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatalf("WriteTable: %v", err)
	}
	for _, want := range []string{"dataplane both", "sessiongate/direct: req/s", PhaseEpoll + "/direct: req/s", PhaseEpoll + "/sessiongate: req/s"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteTable:\n%s\nwant a line with %q", b.String(), want)
		}
	}
}

// With the epoll data path alone, the gateway's one row is sessiongate (epoll).
func TestRunDataplaneEpoll(t *testing.T) {
	needEpoll(t)
	o := shortOptions()
	o.Duration, o.Requests, o.Dataplane = 0, 300, config.DataplaneEpoll
	r := run(t, o)
	if len(r.Phases) != 2 || r.Phase("sessiongate") != nil {
		t.Fatalf("%d phases, sessiongate %v; want direct and %s alone", len(r.Phases), r.Phase("sessiongate"), PhaseEpoll)
	}
	if p := phase(t, r, PhaseEpoll); p.Requests != o.Requests || p.ErrorCount != 0 || p.StickyViolations != 0 {
		t.Errorf("%s: %d requests, errors %v, sticky violations %d; want %d, none, 0", PhaseEpoll, p.Requests, p.Errors, p.StickyViolations, o.Requests)
	}
}

// The gateway's configuration on each data path means what the bench intends: the
// listen shorthand for fasthttp's, one plain listener with dataplane epoll for epoll's,
// in the file of the child mode and in the Config of the in-process one alike.
func TestGatewayDataplaneConfig(t *testing.T) {
	members := []*demo.Member{{ID: "n1", Route: "n1"}, {ID: "n2", Route: "n2"}}
	addrs := []string{"127.0.0.1:9001", "127.0.0.1:9002"}
	for _, dp := range []string{"", config.DataplaneFasthttp} {
		yml := gatewayYAML("127.0.0.1:8080", false, dp, members, addrs, nil, false)
		cfg, err := config.Parse(yml)
		if err != nil {
			t.Fatalf("config.Parse(dataplane %q): %v\n%s", dp, err, yml)
		}
		if len(cfg.Listeners) != 0 || cfg.Listen != "127.0.0.1:8080" {
			t.Errorf("dataplane %q: listen %q, %d listeners; want 127.0.0.1:8080 and none", dp, cfg.Listen, len(cfg.Listeners))
		}
	}
	yml := gatewayYAML("127.0.0.1:8080", true, config.DataplaneEpoll, members, addrs, nil, false)
	cfg, err := config.Parse(yml)
	if err != nil {
		t.Fatalf("config.Parse(dataplane epoll): %v\n%s", err, yml)
	}
	if len(cfg.Listeners) != 1 {
		t.Fatalf("dataplane epoll: %d listeners, want 1\n%s", len(cfg.Listeners), yml)
	}
	if l := cfg.Listeners[0]; l.Address != "127.0.0.1:8080" || l.Dataplane != config.DataplaneEpoll || l.TLS != nil || l.ProxyProtocol {
		t.Errorf("dataplane epoll: listener %+v, want 127.0.0.1:8080, dataplane epoll, plain", l)
	}
	if !cfg.ReusePort || len(cfg.TargetGroups) != 1 || len(cfg.TargetGroups[0].Members) != 2 {
		t.Errorf("dataplane epoll: reuseport %v, target groups %+v; want reuseport and one group of two members", cfg.ReusePort, cfg.TargetGroups)
	}
	// The in-process Config: the same listener, the rest as the fasthttp one.
	mem := gatewayConfig("127.0.0.1:0", false, config.DataplaneEpoll, members, addrs)
	want := []config.Listener{{Address: "127.0.0.1:0", HTTP2: true, Dataplane: config.DataplaneEpoll}}
	if !slices.Equal(mem.Listeners, want) {
		t.Errorf("gatewayConfig(epoll).Listeners = %+v, want %+v", mem.Listeners, want)
	}
	if fast := gatewayConfig("127.0.0.1:0", false, config.DataplaneFasthttp, members, addrs); len(fast.Listeners) != 0 || fast.Listen != "127.0.0.1:0" {
		t.Errorf("gatewayConfig(fasthttp): listen %q, listeners %+v; want 127.0.0.1:0 and none", fast.Listen, fast.Listeners)
	}
}

// The data path is one of three, and the TLS bench is fasthttp's only.
func TestOptionsDataplane(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dataplane string
		tls       bool
		want      string // "" = valid; else a part of the error
	}{
		{"default", "", false, ""},
		{"fasthttp", config.DataplaneFasthttp, false, ""},
		{"epoll", config.DataplaneEpoll, false, ""},
		{"both", DataplaneBoth, false, ""},
		{"unknown", "xdp", false, `dataplane "xdp": want fasthttp, epoll or both`},
		{"tls fasthttp", config.DataplaneFasthttp, true, ""},
		{"tls epoll", config.DataplaneEpoll, true, "not with tls"},
		{"tls both", DataplaneBoth, true, "not with tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Dataplane: tc.dataplane, TLS: tc.tls}
			err := o.defaults()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("defaults(dataplane %q, tls %v) = %v, want nil", tc.dataplane, tc.tls, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("defaults(dataplane %q, tls %v) = %v, want an error containing %q", tc.dataplane, tc.tls, err, tc.want)
			case tc.want == "" && tc.dataplane == "" && o.Dataplane != config.DataplaneFasthttp:
				t.Fatalf("defaults: dataplane %q, want %q", o.Dataplane, config.DataplaneFasthttp)
			}
		})
	}
}

func TestRunSwappedMembersViolates(t *testing.T) {
	o := shortOptions()
	o.SwapMembers = true
	r := run(t, o)
	if p := phase(t, r, "direct"); p.StickyViolations != 0 {
		t.Errorf("direct: sticky violations %d, want 0 (the direct path has no configuration to get wrong)", p.StickyViolations)
	}
	p := phase(t, r, "sessiongate")
	if p.StickyViolations == 0 || p.MemberForeign == 0 {
		t.Errorf("sessiongate with members swapped: sticky violations %d, member foreign %d, want both > 0", p.StickyViolations, p.MemberForeign)
	}
}

func TestRunOpenLoopRequests(t *testing.T) {
	o := shortOptions()
	o.Duration = 0
	o.Requests = 300
	o.Rate = 2000
	o.Mix = Mix{Learned: 1}
	r := run(t, o)
	for _, p := range r.Phases {
		if p.Requests != o.Requests {
			t.Errorf("%s: %d requests, want %d", p.Name, p.Requests, o.Requests)
		}
		if p.ErrorCount != 0 || p.StickyViolations != 0 {
			t.Errorf("%s: errors %v, sticky violations %d, want none", p.Name, p.Errors, p.StickyViolations)
		}
	}
}

func TestReportJSONRoundTrip(t *testing.T) {
	o := shortOptions()
	o.Duration = 0
	o.Requests = 200
	r := run(t, o)
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatalf("WriteJSON: %v", err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("json.Unmarshal(WriteJSON): %v\n%s", err, b.String())
	}
	if len(back.Phases) != len(r.Phases) || back.Sessions != r.Sessions || back.Mix != r.Mix {
		t.Fatalf("round trip = %+v, want %+v", back, *r)
	}
	for i, p := range back.Phases {
		want := r.Phases[i]
		if p.Name != want.Name || p.Requests != want.Requests || p.P99 != want.P99 || p.StickyViolations != want.StickyViolations {
			t.Errorf("phase %d round trip = %+v, want %+v", i, p, want)
		}
	}
}

// TestRunPeers runs HAProxy and NGINX when installed; HAProxy must keep every session.
func TestRunPeers(t *testing.T) {
	o := shortOptions()
	for _, name := range []string{"haproxy", "nginx"} {
		if _, err := exec.LookPath(name); err == nil {
			o.Peers = append(o.Peers, name)
		}
	}
	if len(o.Peers) == 0 {
		t.Skip("neither haproxy nor nginx is installed")
	}
	r := run(t, o)
	for _, name := range o.Peers {
		p := phase(t, r, name)
		if p.Requests == 0 || p.ErrorCount != 0 {
			t.Errorf("%s: %d requests, errors %v; want requests and no errors", name, p.Requests, p.Errors)
		}
		if name == "haproxy" && p.StickyViolations != 0 {
			t.Errorf("haproxy: sticky violations %d, want 0", p.StickyViolations)
		}
	}
}

// TestRunNaivePeer runs the naive fasthttp peer in-process: it answers every request,
// is excluded from the gate's sticky check, and sessiongate gets its ratios to it.
func TestRunNaivePeer(t *testing.T) {
	o := shortOptions()
	o.Peers = []string{PeerFasthttp}
	r := run(t, o)
	p := phase(t, r, PeerFasthttp)
	if p.Requests == 0 || p.ErrorCount != 0 {
		t.Fatalf("fasthttp: %d requests, errors %v; want requests and no errors", p.Requests, p.Errors)
	}
	if fails := r.Gate(0); len(fails) != 0 {
		t.Errorf("Gate(0) = %q, want none (the naive peer's violations are by design)", fails)
	}
	gw := phase(t, r, "sessiongate")
	if gw.BestPeer != PeerFasthttp || gw.VsBestPeer == nil || gw.VsPeers[PeerFasthttp] == nil {
		t.Errorf("sessiongate best peer = %q, %+v, vs peers %v; want fasthttp with ratios", gw.BestPeer, gw.VsBestPeer, gw.VsPeers)
	}
}

func TestParseMix(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Mix
		ok       bool
	}{
		{"all", "websphere=40,tomcat=30,learned=20,hashed=10", DefaultMix, true},
		{"some", "tomcat=1, hashed=3", Mix{Tomcat: 1, Hashed: 3}, true},
		{"unknown", "jboss=1", Mix{}, false},
		{"negative", "tomcat=-1", Mix{}, false},
		{"no weight", "tomcat", Mix{}, false},
		{"all zero", "tomcat=0", Mix{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMix(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("ParseMix(%q) = %+v, %v; want %+v, ok %v", tc.in, got, err, tc.want, tc.ok)
			}
			if tc.ok {
				if back, err := ParseMix(got.String()); err != nil || back != got {
					t.Errorf("ParseMix(%q) = %+v, %v; want %+v", got.String(), back, err, got)
				}
			}
		})
	}
}

func TestGate(t *testing.T) {
	phase := func(name string, errs, viol int64, ratio float64) Phase {
		p := Phase{Name: name, ErrorCount: errs, StickyViolations: viol}
		if ratio > 0 {
			p.VsDirect = &Ratios{RPS: ratio}
		}
		return p
	}
	for _, tc := range []struct {
		name   string
		phases []Phase
		floor  float64
		want   string // "" = pass; else a part of the first failure
	}{
		{"pass", []Phase{phase("direct", 0, 0, 0), phase("sessiongate", 0, 0, 0.8)}, 0.5, ""},
		{"below floor", []Phase{phase("direct", 0, 0, 0), phase("sessiongate", 0, 0, 0.4)}, 0.5, "below the floor 0.50"},
		{"floor not checked", []Phase{phase("sessiongate", 0, 0, 0.1)}, 0, ""},
		{"errors", []Phase{phase("sessiongate", 3, 0, 0.8)}, 0.5, "3 errors"},
		{"violations", []Phase{phase("sessiongate", 0, 2, 0.8)}, 0.5, "2 sticky violations"},
		{"nginx violations are expected", []Phase{phase("sessiongate", 0, 0, 0.8), phase("nginx", 0, 99, 0.8)}, 0.5, ""},
		{"haproxy violations fail", []Phase{phase("sessiongate", 0, 0, 0.8), phase("haproxy", 0, 1, 0.8)}, 0.5, "haproxy: 1 sticky"},
		{"no ratio", []Phase{phase("sessiongate", 0, 0, 0)}, 0.5, "no ratio"},
		{"epoll below floor", []Phase{phase("direct", 0, 0, 0), phase("sessiongate", 0, 0, 0.8), phase(PhaseEpoll, 0, 0, 0.4)}, 0.5, "sessiongate (epoll)/direct req/s 0.40 is below"},
		{"epoll errors", []Phase{phase("sessiongate", 0, 0, 0.8), phase(PhaseEpoll, 1, 0, 0.8)}, 0.5, "sessiongate (epoll): 1 errors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fails := (&Report{Phases: tc.phases}).Gate(tc.floor)
			switch {
			case tc.want == "" && len(fails) > 0:
				t.Fatalf("Gate(%v) = %q, want a pass", tc.floor, fails)
			case tc.want != "" && (len(fails) == 0 || !strings.Contains(fails[0], tc.want)):
				t.Fatalf("Gate(%v) = %q, want a failure containing %q", tc.floor, fails, tc.want)
			}
		})
	}
}

// Rounds merge per path: the counts of every round add up, and so do time and CPU.
func TestRunRoundsMerge(t *testing.T) {
	o := shortOptions()
	o.Duration, o.Requests, o.Rounds = time.Minute, 300, 2
	r := run(t, o)
	if r.Rounds != 2 || len(r.Phases) != 2 {
		t.Fatalf("rounds %d, %d phases; want 2 rounds merged into direct and sessiongate", r.Rounds, len(r.Phases))
	}
	for _, name := range []string{"direct", "sessiongate"} {
		p := phase(t, r, name)
		if p.Requests < 2*o.Requests || p.Requests > 2*(o.Requests+int64(o.Conns)) {
			t.Errorf("%s: %d requests, want those of two rounds of %d", name, p.Requests, o.Requests)
		}
		if p.hist.TotalCount()+p.ErrorCount != p.Requests || p.CPUPerRequest <= 0 {
			t.Errorf("%s: histogram %d + errors %d vs %d requests, CPU/req %v", name, p.hist.TotalCount(), p.ErrorCount, p.Requests, p.CPUPerRequest)
		}
	}
}

func TestPhaseMerge(t *testing.T) {
	a := Phase{Name: "x", Seconds: 1, Errors: map[string]int64{"timeout": 1}, ErrorCount: 1, cpu: 10 * time.Millisecond, hist: newHist()}
	b := Phase{Name: "x", Seconds: 3, Errors: map[string]int64{"timeout": 2, "502": 1}, ErrorCount: 3, StickyViolations: 2, cpu: 30 * time.Millisecond, hist: newHist()}
	for range 99 {
		a.hist.RecordValue(1000)
	}
	for range 297 {
		b.hist.RecordValue(5000)
	}
	a.summarize()
	b.summarize()
	a.merge(b)
	if a.Requests != 400 || a.Seconds != 4 || a.RPS != 100 {
		t.Errorf("requests %d, seconds %g, rps %g; want 400, 4, 100", a.Requests, a.Seconds, a.RPS)
	}
	if a.ErrorCount != 4 || a.Errors["timeout"] != 3 || a.Errors["502"] != 1 || a.StickyViolations != 2 {
		t.Errorf("errors %d %v, violations %d", a.ErrorCount, a.Errors, a.StickyViolations)
	}
	if a.CPUPerRequest != 100*time.Microsecond {
		t.Errorf("CPU/req %v, want 100µs (40ms over 400 requests)", a.CPUPerRequest)
	}
	if a.P50 < 4900 || a.P50 > 5100 || a.Max < 4900 {
		t.Errorf("p50 %v, max %v: want the merged histogram's (mostly 5µs)", a.P50, a.Max)
	}
}
