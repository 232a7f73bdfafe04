package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
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
