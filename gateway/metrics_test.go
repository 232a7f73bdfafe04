package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// scrape is one GET /metrics: every sample by its series exactly as written
// (name{labels}), and the families' TYPE lines.
type scrape struct {
	samples map[string]float64
	types   map[string]string
}

// get returns a sample, failing the test if it is missing.
func (s scrape) get(t *testing.T, series string) float64 {
	t.Helper()
	v, ok := s.samples[series]
	if !ok {
		t.Fatalf("/metrics has no sample %s", series)
	}
	return v
}

// want checks a sample's value.
func (s scrape) want(t *testing.T, series string, want float64) {
	t.Helper()
	if got := s.get(t, series); got != want {
		t.Errorf("%s = %v, want %v", series, got, want)
	}
}

// sum adds the samples of a family whose labels include every one of labels
// (`member="Node2"` and the like).
func (s scrape) sum(name string, labels ...string) float64 {
	var n float64
	for series, v := range s.samples {
		if metricName(series) != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(series, l) {
				ok = false
			}
		}
		if ok {
			n += v
		}
	}
	return n
}

func metricName(series string) string {
	if i := strings.IndexByte(series, '{'); i >= 0 {
		return series[:i]
	}
	return series
}

// scrapeMetrics fetches and parses admin/metrics, checking the text format as it goes:
// sample lines "series value", a family's samples together and after its TYPE line,
// no series twice.
func scrapeMetrics(t *testing.T, admin string) scrape {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: reading body: %v", err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics = %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics Content-Type = %q, want text/plain; version=0.0.4", ct)
	}
	s := scrape{samples: map[string]float64{}, types: map[string]string{}}
	done := map[string]bool{} // families whose samples have ended
	cur := ""
	for i, line := range strings.Split(strings.TrimSuffix(string(body), "\n"), "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			if _, dup := s.types[name]; dup {
				t.Fatalf("/metrics line %d: second TYPE line for %s", i+1, name)
			}
			s.types[name] = typ
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp <= 0 {
			t.Fatalf("/metrics line %d: %q is not \"series value\"", i+1, line)
		}
		series := line[:sp]
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %d: %q: value: %v", i+1, line, err)
		}
		if _, dup := s.samples[series]; dup {
			t.Fatalf("/metrics line %d: series %s twice", i+1, series)
		}
		s.samples[series] = v
		fam := metricName(series)
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(fam, suffix); ok && s.types[base] == "histogram" {
				fam = base
			}
		}
		if strings.HasPrefix(fam, "sessiongate_") && s.types[fam] == "" {
			t.Fatalf("/metrics line %d: %s has no TYPE line before it", i+1, fam)
		}
		if fam != cur {
			if done[fam] {
				t.Fatalf("/metrics line %d: the samples of %s are not together", i+1, fam)
			}
			done[cur] = true
			cur = fam
		}
	}
	return s
}

// metricsMember answers "member=<id>" with 200, or with the status in the path
// /<prefix>/status/<code>; /<prefix>/login?sid=<id> also issues the session <id>.
func metricsMember(id string) fasthttp.RequestHandler {
	body := "member=" + id + "\n"
	return func(ctx *fasthttp.RequestCtx) {
		path := string(ctx.Path())
		if _, code, ok := strings.Cut(path, "/status/"); ok {
			n, _ := strconv.Atoi(code)
			ctx.SetStatusCode(n)
		}
		if strings.HasSuffix(path, "/login") {
			ctx.Response.Header.Set("Set-Cookie", "JSESSIONID="+string(ctx.QueryArgs().Peek("sid"))+"; Path=/")
		}
		ctx.SetContentType("text/plain")
		ctx.SetBodyString(body)
	}
}

// wsKey is a WebSphere session id: cache id, a 23-character session id made of n,
// and the clone id route.
func wsKey(n int, route string) string { return fmt.Sprintf("0000%023d:%s", n, route) }

// TestMetricsTraffic sends scripted traffic and checks that every counter in /metrics
// is exactly what was sent, and the per-member counts are what the members answered.
func TestMetricsTraffic(t *testing.T) {
	fb := gwGroup("fb", "/fb",
		gwMember("Node1", startFastMember(t, metricsMember("Node1"))),
		gwMember("Node2", startFastMember(t, metricsMember("Node2"))),
		gwMember("Node3", startFastMember(t, metricsMember("Node3"))))
	strict := gwGroup("st", "/st",
		gwMember("S1", startFastMember(t, metricsMember("S1"))),
		gwMember("S2", startFastMember(t, metricsMember("S2"))))
	strict.Strict = true
	dead := gwGroup("dead", "/dead",
		gwMember("DeadA", closedAddr(t)),
		gwMember("Live", startFastMember(t, metricsMember("Live"))))
	dead.Passive.ConsecutiveFailures = 1
	sb := gwGroup("sb", "/sb",
		gwMember("SB1", startFastMember(t, metricsMember("SB1"))),
		gwMember("SB2", startFastMember(t, metricsMember("SB2"))))
	sb.SwitchBack = true
	cfg := gwConfig(fb, strict, dead, sb)
	cfg.Admin.Listen = "127.0.0.1:0"
	s, addr := startGateway(t, cfg, zerolog.Nop())
	s.mu.Lock()
	admin := "http://" + s.listeners[len(s.listeners)-1].Addr().String()
	s.mu.Unlock()

	c := newHTTPClient(t)
	base := "http://" + addr
	served := map[string]map[int]int{} // member -> status class -> responses seen
	record := func(resp *http.Response, body string) string {
		m := bodyField(body, "member")
		if m == "" {
			return ""
		}
		if served[m] == nil {
			served[m] = map[int]int{}
		}
		served[m][resp.StatusCode/100]++
		return m
	}
	get := func(path, session string) string {
		t.Helper()
		return record(httpGet(t, c, base+path, session))
	}

	// 30 requests of 3 sessions routed to Node2.
	for i := range 30 {
		if m := get("/fb/a", wsKey(i%3, "Node2")); m != "Node2" {
			t.Fatalf("route to Node2 answered by %q", m)
		}
	}
	// 20 without a session: balanced.
	for range 20 {
		get("/fb/a", "")
	}
	// 10 sessions without a route, not learned: hashed.
	for range 10 {
		get("/fb/a", newUUID())
	}
	// One login (no session: balanced) issues a session; 5 requests of it: learned.
	sid := newUUID()
	issuer := get("/fb/login?sid="+sid, "")
	s.Cache().Wait()
	for range 5 {
		if m := get("/fb/a", sid); m != issuer {
			t.Fatalf("learned session answered by %q, want %q, which issued it", m, issuer)
		}
	}
	// 8 routed to Node3 that answer 404 (5) and 500 (3).
	for i := range 8 {
		path := "/fb/status/404"
		if i >= 5 {
			path = "/fb/status/500"
		}
		get(path, wsKey(100, "Node3"))
	}
	// Node1 goes down: 100 requests of 10 sessions bound to it. The first request of
	// each session moves, and its new member is learned; without switch_back the
	// learned binding comes first, so the 9 others are "learned", not moves.
	setDown(t, s, "Node1")
	for i := range 10 {
		for j := range 10 {
			if m := get("/fb/a", wsKey(200+i, "Node1")); m != "Node2" && m != "Node3" {
				t.Fatalf("session of the down Node1 answered by %q", m)
			}
			if j == 0 {
				s.Cache().Wait()
			}
		}
	}
	// With switch_back the route comes first: each of 20 requests (4 sessions) bound to
	// the down SB1 is a move.
	setDown(t, s, "SB1")
	for i := range 20 {
		if m := get("/sb/a", wsKey(400+i%4, "SB1")); m != "SB2" {
			t.Fatalf("session of the down SB1 answered by %q, want SB2", m)
		}
	}
	// A strict group keeps sessions on their down member: 3 refusals (503).
	setDown(t, s, "S1")
	for range 3 {
		if resp, _ := httpGet(t, c, base+"/st/a", wsKey(300, "S1")); resp.StatusCode != 503 {
			t.Fatalf("strict group, session on a down member: status %d, want 503", resp.StatusCode)
		}
	}
	// 4 POSTs to a group whose DeadA refuses connections: round robin sends one of the
	// first two there, it fails, is ejected (consecutive_failures 1), and the request is
	// sent again, body included, to Live.
	for range 4 {
		resp, body := doHTTP(t, c, mustRequest(t, "POST", base+"/dead/a", "x=1"))
		if m := record(resp, body); resp.StatusCode != 200 || m != "Live" {
			t.Fatalf("POST /dead/a = %d %q, want 200 from Live", resp.StatusCode, body)
		}
	}
	// 5 requests no group takes: 404.
	for range 5 {
		if resp, _ := httpGet(t, c, base+"/nothing", ""); resp.StatusCode != 404 {
			t.Fatalf("GET /nothing = %d, want 404", resp.StatusCode)
		}
	}
	tableMember(t, s, "Node3").State.SetAdmin(router.AdminDrain)

	m := scrapeMetrics(t, admin)

	m.want(t, `sessiongate_requests_total`, 30+20+10+1+5+8+100+20+3+4+5)
	m.want(t, `sessiongate_affinity_total{outcome="route"}`, 30+8)
	m.want(t, `sessiongate_affinity_total{outcome="balanced"}`, 20+1+4)
	m.want(t, `sessiongate_affinity_total{outcome="hash"}`, 10)
	m.want(t, `sessiongate_affinity_total{outcome="learned"}`, 5+90)
	m.want(t, `sessiongate_affinity_total{outcome="moved"}`, 10+20)
	m.want(t, `sessiongate_moves_total{reason="member_down"}`, 10+20)
	for _, r := range []string{"ejected", "maint", "draining_deadline", "unknown_route"} {
		m.want(t, `sessiongate_moves_total{reason="`+r+`"}`, 0)
	}
	m.want(t, `sessiongate_strict_refusals_total{reason="member_down"}`, 3)
	m.want(t, `sessiongate_errors_total{kind="no_member",status="503"}`, 3)
	m.want(t, `sessiongate_errors_total{kind="no_group",status="404"}`, 5)
	m.want(t, `sessiongate_errors_total{kind="connect",status="502"}`, 0) // retried, not failed
	m.want(t, `sessiongate_retries_total`, 1)
	m.want(t, `sessiongate_replays_total`, 1)
	m.want(t, `sessiongate_sessions_learned_total`, 1)

	// Lookups: every request with a session key looks the cache up once (the learned
	// binding comes first without switch_back; with it, after the route, which named a
	// down member in all 20), and every move once more before writing its binding.
	// Sets: the login and each move whose binding was not there yet; the cache applies
	// writes asynchronously, so a repeated move may write again before it sees the first.
	const lookups = 30 + 10 + 5 + 8 + 100 + 3 + 20 + 30
	if got := m.get(t, `sessiongate_learned_hits_total`) + m.get(t, `sessiongate_learned_misses_total`); got != lookups {
		t.Errorf("learned hits + misses = %v, want %d", got, lookups)
	}
	if got := m.get(t, `sessiongate_learned_hits_total`); got < 5+90 {
		t.Errorf("sessiongate_learned_hits_total = %v, want at least %d", got, 5+90)
	}
	if got := m.get(t, `sessiongate_learned_sets_total`); got < 1+10+1 || got > 1+10+20 {
		t.Errorf("sessiongate_learned_sets_total = %v, want from %d (one per moved session) to %d (one per move)", got, 1+10+1, 1+10+20)
	}
	m.want(t, `sessiongate_learned_refreshes_total`, 0)
	for _, n := range []string{"drops_total", "rejections_total", "evictions_total", "entries"} {
		m.get(t, "sessiongate_learned_"+n)
	}

	// Per member: responses by class as the client saw them, the histogram's count,
	// attempts and failures.
	for _, id := range []string{"Node1", "Node2", "Node3", "S1", "S2", "DeadA", "Live", "SB1", "SB2"} {
		g := map[string]string{"Node1": "fb", "Node2": "fb", "Node3": "fb", "S1": "st", "S2": "st", "DeadA": "dead", "Live": "dead", "SB1": "sb", "SB2": "sb"}[id]
		lbl := `group="` + g + `",member="` + id + `"`
		total := 0
		for class := 1; class <= 5; class++ {
			n := served[id][class]
			total += n
			m.want(t, `sessiongate_member_requests_total{`+lbl+`,class="`+strconv.Itoa(class)+`xx"}`, float64(n))
		}
		dur := `sessiongate_member_request_duration_seconds`
		m.want(t, dur+`_count{`+lbl+`}`, float64(total))
		m.want(t, dur+`_bucket{`+lbl+`,le="+Inf"}`, float64(total))
		prev := 0.0
		for _, le := range []string{"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"} {
			v := m.get(t, dur+`_bucket{`+lbl+`,le="`+le+`"}`)
			if v < prev {
				t.Errorf("%s_bucket{%s,le=%q} = %v, below the bucket before (%v)", dur, lbl, le, v, prev)
			}
			prev = v
		}
		if sum := m.get(t, dur+`_sum{`+lbl+`}`); (total > 0) != (sum > 0) {
			t.Errorf("%s_sum{%s} = %v for %d responses", dur, lbl, sum, total)
		}
		attempts, failures := float64(total), 0.0
		if id == "DeadA" {
			attempts, failures = 1, 1
		}
		m.want(t, `sessiongate_member_attempts_total{`+lbl+`}`, attempts)
		m.want(t, `sessiongate_member_failures_total{`+lbl+`}`, failures)
		m.want(t, `sessiongate_member_inflight{`+lbl+`}`, 0)
		m.get(t, `sessiongate_member_bound_sessions{`+lbl+`}`)
	}
	if got := m.sum("sessiongate_member_requests_total"); got != 30+20+10+1+5+8+100+20+4 {
		t.Errorf("sum of sessiongate_member_requests_total = %v, want %d (every proxied response)", got, 30+20+10+1+5+8+100+20+4)
	}
	m.want(t, `sessiongate_member_requests_total{group="sb",member="SB2",class="2xx"}`, 20)
	m.want(t, `sessiongate_member_requests_total{group="fb",member="Node3",class="4xx"}`, 5)
	m.want(t, `sessiongate_member_requests_total{group="fb",member="Node3",class="5xx"}`, 3)
	if got := m.sum("sessiongate_member_requests_total", `member="Node2"`); got < 30 {
		t.Errorf("Node2 served %v requests, want at least the 30 routed to it", got)
	}

	// Member states: Node1 down, Node3 draining, DeadA ejected.
	for _, c := range []struct {
		member                    string
		healthy, ejected, usable  float64
		ready, drain, maint       float64
		up, down, ejectedTransits float64
	}{
		{"Node1", 0, 0, 0, 1, 0, 0, 0, 0, 0},
		{"Node2", 1, 0, 1, 1, 0, 0, 0, 0, 0},
		{"Node3", 1, 0, 0, 0, 1, 0, 0, 0, 0},
		{"DeadA", 1, 1, 0, 1, 0, 0, 0, 0, 1},
		{"Live", 1, 0, 1, 1, 0, 0, 0, 0, 0},
	} {
		g := "fb"
		if strings.HasPrefix(c.member, "Dead") || c.member == "Live" {
			g = "dead"
		}
		lbl := `group="` + g + `",member="` + c.member + `"`
		m.want(t, `sessiongate_member_healthy{`+lbl+`}`, c.healthy)
		m.want(t, `sessiongate_member_ejected{`+lbl+`}`, c.ejected)
		m.want(t, `sessiongate_member_usable{`+lbl+`}`, c.usable)
		m.want(t, `sessiongate_member_admin_state{`+lbl+`,state="ready"}`, c.ready)
		m.want(t, `sessiongate_member_admin_state{`+lbl+`,state="drain"}`, c.drain)
		m.want(t, `sessiongate_member_admin_state{`+lbl+`,state="maint"}`, c.maint)
		m.want(t, `sessiongate_health_transitions_total{`+lbl+`,to="up"}`, c.up)
		m.want(t, `sessiongate_health_transitions_total{`+lbl+`,to="down"}`, c.down)
		m.want(t, `sessiongate_health_transitions_total{`+lbl+`,to="ejected"}`, c.ejectedTransits)
		m.want(t, `sessiongate_health_checks_total{`+lbl+`,result="ok"}`, 0) // no active checks
		m.want(t, `sessiongate_health_checks_total{`+lbl+`,result="fail"}`, 0)
	}

	if got := m.get(t, `sessiongate_open_connections`); got < 1 {
		t.Errorf("sessiongate_open_connections = %v, want at least the client's kept-alive one", got)
	}
	m.want(t, `sessiongate_inflight_requests`, 0)
	m.want(t, `sessiongate_config_reloads_total{result="ok"}`, 0)
	m.want(t, `sessiongate_config_reloads_total{result="failed"}`, 0)
	m.want(t, `sessiongate_config_info{hash="`+configHash(cfg)+`"}`, 1)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		m.get(t, name)
	}
	for fam, typ := range map[string]string{
		"sessiongate_requests_total":                  "counter",
		"sessiongate_member_request_duration_seconds": "histogram",
		"sessiongate_member_healthy":                  "gauge",
	} {
		if m.types[fam] != typ {
			t.Errorf("TYPE of %s = %q, want %q", fam, m.types[fam], typ)
		}
	}
}

func mustRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("NewRequest(%s %s): %v", method, url, err)
	}
	return req
}

// TestMetricsHealthChecks checks the active check counters: results and transitions.
func TestMetricsHealthChecks(t *testing.T) {
	var ok atomic.Bool
	ok.Store(true)
	addr := startFastMember(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" && !ok.Load() {
			ctx.SetStatusCode(503)
		}
	})
	g := gwGroup("hc", "/", gwMember("HC1", addr))
	g.HealthCheck = config.HealthCheck{
		Path: "/health", Interval: 100 * time.Millisecond, UnhealthyInterval: 100 * time.Millisecond,
		Timeout: 90 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 1,
		ExpectedStatus: "200-399", Start: "unhealthy",
	}
	cfg := gwConfig(g)
	cfg.Admin.Listen = "127.0.0.1:0"
	s, _ := startGateway(t, cfg, zerolog.Nop())
	s.mu.Lock()
	admin := "http://" + s.listeners[len(s.listeners)-1].Addr().String()
	s.mu.Unlock()

	const lbl = `group="hc",member="HC1"`
	healthy := func(want float64) func() bool {
		return func() bool {
			return scrapeMetrics(t, admin).get(t, `sessiongate_member_healthy{`+lbl+`}`) == want
		}
	}
	waitFor(t, "HC1 up", healthy(1))
	ok.Store(false)
	waitFor(t, "HC1 down", healthy(0))

	m := scrapeMetrics(t, admin)
	m.want(t, `sessiongate_health_transitions_total{`+lbl+`,to="up"}`, 1)
	m.want(t, `sessiongate_health_transitions_total{`+lbl+`,to="down"}`, 1)
	m.want(t, `sessiongate_health_transitions_total{`+lbl+`,to="ejected"}`, 0)
	if n := m.get(t, `sessiongate_health_checks_total{`+lbl+`,result="ok"}`); n < 1 {
		t.Errorf("ok checks = %v, want at least 1", n)
	}
	if n := m.get(t, `sessiongate_health_checks_total{`+lbl+`,result="fail"}`); n < 1 {
		t.Errorf("failed checks = %v, want at least 1", n)
	}
	// The scrape and the checker's accessor agree, a check or two apart at most.
	if c := s.health.Counts("HC1"); c.Up != 1 || c.Down != 1 || c.OK < 1 || c.Fail < 1 {
		t.Errorf("Counts(HC1) = %+v, want 1 up, 1 down, some ok and failed checks", c)
	}
}

func TestMetricsMethod(t *testing.T) {
	_, _, admin := startAdminGateway(t, "", zerolog.Nop())
	if code, body := adminDo(t, "POST", admin+"/metrics", "", ""); code != 405 {
		t.Fatalf("POST /metrics = %d %s, want 405", code, body)
	}
	if code, _ := adminDo(t, "HEAD", admin+"/metrics", "", ""); code != 200 {
		t.Fatalf("HEAD /metrics = %d, want 200", code)
	}
}

func TestConfigHash(t *testing.T) {
	a := gwConfig(gwGroup("fb", "/fb", gwMember("Node1", "127.0.0.1:1")))
	b := gwConfig(gwGroup("fb", "/fb", gwMember("Node1", "127.0.0.1:1")))
	if configHash(a) != configHash(b) || len(configHash(a)) != 16 {
		t.Fatalf("configHash of equal configs = %q, %q; want the same 16 hex digits", configHash(a), configHash(b))
	}
	b.TargetGroups[0].Members[0].Address = "127.0.0.1:2"
	if configHash(a) == configHash(b) {
		t.Fatalf("configHash = %q for configs with different member addresses", configHash(a))
	}
	c := *a
	c.Admin.Token = "s3cret"
	if configHash(&c) != configHash(a) {
		t.Fatalf("configHash changes with admin.token: the token must not go into it")
	}
}
