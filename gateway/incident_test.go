package gateway

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// A member that hangs is named in the access line of the request a retry saved:
// member is the one that answered, tried the one that hung, and why.
func TestAccessLogNamesTheMemberARetryLeft(t *testing.T) {
	hang := make(chan struct{})
	slow := startFastMember(t, func(ctx *fasthttp.RequestCtx) { <-hang })
	t.Cleanup(func() { close(hang) }) // before the member's shutdown, which waits for it
	var buf syncBuffer
	g := gwGroup("tc", "/", gwMember("tc1", slow), gwMember("tc2", startFastMember(t, idMember("tc2"))))
	cfg := gwConfig(g)
	cfg.Client.ReadTimeout = 300 * time.Millisecond
	_, addr := startGateway(t, cfg, zerolog.New(&buf))
	resp, body := httpGet(t, newHTTPClient(t), "http://"+addr+"/x", "0000abc:tc1")
	if resp.StatusCode != http.StatusOK || bodyField(body, "member") != "tc2" {
		t.Fatalf("GET bound to the hung tc1: %d %q, want 200 from tc2 after a retry", resp.StatusCode, body)
	}
	lines, _ := accessLines(t, &buf)
	if len(lines) != 1 {
		t.Fatalf("%d access lines, want 1: %v", len(lines), lines)
	}
	l := lines[0]
	if l["member"] != "tc2" || l["tried"] != "tc1" || l["retry_reason"] != "member_timeout" || l["affinity"] != "moved" {
		t.Errorf("access line %v, want member tc2, tried tc1, retry_reason member_timeout, affinity moved", l)
	}
	if d, ok := l["duration_ms"].(float64); !ok || d < 300 {
		t.Errorf("duration_ms %v, want at least the 300 ms the hung member took", l["duration_ms"])
	}
}

// The client in the access line is the real one: behind a trusted proxy, the last
// X-Forwarded-For address that is not a trusted proxy's.
func TestAccessLogClientBehindTrustedProxy(t *testing.T) {
	for _, tc := range []struct {
		name, xff, want string
		trusted         []string
	}{
		{"untrusted peer", "203.0.113.7", "127.0.0.1", nil},
		{"trusted peer", "203.0.113.7", "203.0.113.7", []string{"127.0.0.1"}},
		{"trusted chain", "198.51.100.1, 203.0.113.7, 10.0.0.5", "203.0.113.7", []string{"127.0.0.1", "10.0.0.0/8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf syncBuffer
			cfg := gwConfig(gwGroup("g", "/", gwMember("n1", startFastMember(t, idMember("n1")))))
			cfg.Forwarded.TrustedProxies = tc.trusted
			_, addr := startGateway(t, cfg, zerolog.New(&buf))
			rawRoundTrip(t, addr, "GET /x HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: "+tc.xff+"\r\n\r\n")
			lines, _ := accessLines(t, &buf)
			if len(lines) != 1 || lines[0]["client"] != tc.want {
				t.Errorf("access lines %v, want client %s", lines, tc.want)
			}
		})
	}
}

// Every line of the process logger has a millisecond UTC timestamp.
func TestLoggerMillisecondTimestamps(t *testing.T) {
	var buf syncBuffer
	log, err := NewLogger(config.Log{Level: "info", Format: "json"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Float64("timeout_ms", 30000).Msg("shutting down")
	var line map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &line); err != nil {
		t.Fatal(err)
	}
	if ts, _ := line["time"].(string); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`).MatchString(ts) {
		t.Errorf("time %q, want RFC 3339 with milliseconds in UTC", ts)
	}
}

// Counters that add up: over a scripted run with a kill, maint, drain past its
// deadline and retries, the moves by reason sum to the moved outcomes, and a group
// that is not strict counts no strict refusal.
func TestMovesAddUpToMovedOutcomes(t *testing.T) {
	a := startKillableMember(t, idMember("a"))
	b := startKillableMember(t, idMember("b"))
	c := startFastMember(t, idMember("c"))
	g := gwGroup("g", "/", gwMember("a", a.addr()), gwMember("b", b.addr()), gwMember("c", c))
	g.Passive.ConsecutiveFailures = 2
	g.DrainTimeout = time.Second
	s, addr := startGateway(t, gwConfig(g), zerolog.Nop())
	client := newHTTPClient(t)
	keys := map[string][]string{}
	for _, m := range []string{"a", "b", "c"} {
		for range 5 {
			keys[m] = append(keys[m], webSphereKey(m))
		}
	}
	round := func() {
		for _, ks := range keys {
			for _, k := range ks {
				httpGet(t, client, "http://"+addr+"/x", k)
			}
		}
		httpGet(t, client, "http://"+addr+"/x", "0000zzz:nobody") // unknown route
	}
	round()
	a.kill() // connect errors: retries, then ejection
	round()
	round()
	tableMember(t, s, "b").State.SetAdmin(router.AdminMaint)
	round()
	tableMember(t, s, "b").State.SetAdmin(router.AdminReady)
	tableMember(t, s, "c").State.SetAdmin(router.AdminDrain)
	round()
	waitFor(t, "c's drain deadline", func() bool { return tableMember(t, s, "c").State.DrainExpired() })
	round()
	// Every member out: nothing to serve, and no strict refusal in a non-strict group.
	tableMember(t, s, "b").State.SetAdmin(router.AdminMaint)
	tableMember(t, s, "c").State.SetAdmin(router.AdminMaint)
	round()

	var sum uint64
	var by []string
	for r := router.MoveNone; r < router.NumMoveReasons; r++ {
		n := s.stats.moves[r].Load()
		sum += n
		if n > 0 {
			by = append(by, r.String())
		}
	}
	moved := s.stats.outcomes[router.OutcomeMoved].Load()
	if moved == 0 || sum != moved {
		t.Errorf("moves by reason sum to %d (%s), moved outcomes %d: want equal and > 0", sum, strings.Join(by, ", "), moved)
	}
	for _, want := range []router.MoveReason{router.MoveMaint, router.MoveDrainingDeadline, router.MoveUnknownRoute} {
		if s.stats.moves[want].Load() == 0 {
			t.Errorf("no move counted as %s", want)
		}
	}
	if s.stats.moves[router.MoveEjected].Load()+s.stats.moves[router.MoveRetry].Load() == 0 {
		t.Error("the kill moved no session (ejected or retry)")
	}
	for r := router.MoveNone; r < router.NumMoveReasons; r++ {
		if n := s.stats.refused[r].Load(); n != 0 {
			t.Errorf("strict refusals[%s] = %d in a group that is not strict", r, n)
		}
	}
}

// retry.try_timeout: an idempotent request leaves a member that does not answer after
// the per-try timeout, not after client.read_timeout.
func TestTryTimeout(t *testing.T) {
	hang := make(chan struct{})
	slow := startFastMember(t, func(ctx *fasthttp.RequestCtx) { <-hang })
	t.Cleanup(func() { close(hang) }) // before the member's shutdown, which waits for it
	g := gwGroup("tc", "/", gwMember("tc1", slow), gwMember("tc2", startFastMember(t, idMember("tc2"))))
	cfg := gwConfig(g)
	cfg.Client.ReadTimeout = 20 * time.Second
	cfg.Retry.TryTimeout = 300 * time.Millisecond
	_, addr := startGateway(t, cfg, zerolog.Nop())
	start := time.Now()
	resp, body := httpGet(t, newHTTPClient(t), "http://"+addr+"/x", "0000abc:tc1")
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK || bodyField(body, "member") != "tc2" {
		t.Fatalf("GET bound to the hung tc1: %d %q, want 200 from tc2", resp.StatusCode, body)
	}
	if took < 250*time.Millisecond || took > scaled(5*time.Second) {
		t.Errorf("answered after %v, want about try_timeout (300ms), far below read_timeout (20s)", took)
	}
}
