package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/internal/demo"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// killableMember is a fasthttp member whose listener remembers every connection it
// accepted, so that kill can drop them all at once, as a crashed server would:
// fasthttp's Shutdown leaves busy keep-alive connections open until they go idle.
type killableMember struct {
	net.Listener
	srv *fasthttp.Server

	mu     sync.Mutex
	conns  []net.Conn
	killed bool
}

// startKillableMember serves h on a loopback port until kill or the end of the test.
func startKillableMember(t *testing.T, h fasthttp.RequestHandler) *killableMember {
	t.Helper()
	k := &killableMember{Listener: listenLoopback(t)}
	k.srv = &fasthttp.Server{Handler: h, DisablePreParseMultipartForm: true, Logger: quietLogger{}}
	served := make(chan struct{})
	go func() {
		defer close(served)
		k.srv.Serve(k) //nolint:errcheck // ends with kill or Shutdown
	}()
	t.Cleanup(func() {
		k.kill()
		k.srv.Shutdown() //nolint:errcheck // every connection is closed already
		<-served
	})
	return k
}

// quietLogger drops fasthttp's complaints about the connections kill closed.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

func (k *killableMember) addr() string { return k.Listener.Addr().String() }

// Accept tracks the connection, or closes it when the member was killed meanwhile.
func (k *killableMember) Accept() (net.Conn, error) {
	c, err := k.Listener.Accept()
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.killed {
		c.Close()
		return nil, net.ErrClosed
	}
	k.conns = append(k.conns, c)
	return c, nil
}

// kill closes the listener and every connection the member accepted.
func (k *killableMember) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.killed {
		return
	}
	k.killed = true
	k.Listener.Close()
	for _, c := range k.conns {
		c.Close()
	}
	k.conns = nil
}

// issuingMember answers "member=<id> session=<JSESSIONID>" and issues an opaque
// 32-hex session id (no route in it) to requests without one; /health answers ok.
func issuingMember(id string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/health" {
			ctx.SetBodyString("ok\n")
			return
		}
		key := string(ctx.Request.Header.Cookie("JSESSIONID"))
		if key == "" {
			key = hex32()
			c := fasthttp.AcquireCookie()
			c.SetKey("JSESSIONID")
			c.SetValue(key)
			c.SetPath("/")
			ctx.Response.Header.SetCookie(c)
			fasthttp.ReleaseCookie(c)
		}
		ctx.SetContentType("text/plain")
		ctx.SetBodyString("member=" + id + " session=" + key + "\n")
	}
}

// hex32 is a random 32-hex session id, the shape of a Tomcat id without its route.
func hex32() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// webSphereKey is a WebSphere session id whose clone list is routes.
func webSphereKey(routes string) string { return demo.NewWebSphereID() + ":" + routes }

// survivorTable is an independent routing table of the group's members other than
// gone, for predicting where rendezvous hashing moves a key.
func survivorTable(t *testing.T, g *router.Group, gone string) *router.Group {
	t.Helper()
	spec := router.GroupSpec{Name: g.Name, PathPrefix: string(g.Prefix)}
	for _, m := range g.Members {
		if m.ID != gone {
			spec.Members = append(spec.Members, router.MemberSpec{ID: m.ID, Addr: m.Addr, Route: string(m.Route), Weight: m.Weight})
		}
	}
	tb, err := router.NewTable(router.Spec{Groups: []router.GroupSpec{spec}, Chain: []router.Link{router.HashResolver()}}, router.NewStates())
	if err != nil {
		t.Fatalf("NewTable(survivors of %s): %v", gone, err)
	}
	return tb.Groups[0]
}

// logMoves reports the gateway's failover counters.
func logMoves(t *testing.T, s *Server) string {
	t.Helper()
	var b strings.Builder
	for r := range router.NumMoveReasons {
		if n := s.stats.moves[r].Load(); n > 0 {
			fmt.Fprintf(&b, " %s=%d", r, n)
		}
	}
	if b.Len() == 0 {
		return " none"
	}
	return b.String()
}

func TestFailoverKillUnderLoad(t *testing.T) {
	ids := []string{"m1", "m2", "m3"}
	const dead = "m2"
	members := map[string]*killableMember{}
	var mcs []config.Member
	for _, id := range ids {
		members[id] = startKillableMember(t, issuingMember(id))
		mcs = append(mcs, gwMember(id, members[id].addr()))
	}
	g := gwGroup("app", "/", mcs...)
	g.HealthCheck.Path = "/health"
	g.HealthCheck.Interval = 100 * time.Millisecond
	g.HealthCheck.Timeout = 90 * time.Millisecond
	g.Passive.ConsecutiveFailures = 1
	cfg := gwConfig(g)
	var logBuf syncBuffer
	s, addr := startGateway(t, cfg, zerolog.New(&logBuf).Level(zerolog.WarnLevel))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", logBuf.String())
		}
	})
	if got := cfg.Session.Affinity; strings.Join(got, ",") != "route,learned,hash" {
		t.Fatalf("affinity %v, want the default [route learned hash]", got)
	}

	client := &fasthttp.HostClient{
		Addr:                      addr,
		MaxConns:                  64,
		MaxIdemponentCallAttempts: 1, // every failure counts
		ReadTimeout:               scaled(10 * time.Second),
		WriteTimeout:              scaled(10 * time.Second),
	}
	t.Cleanup(client.CloseIdleConnections)

	type session struct {
		key    string
		issuer string
		seq    []string     // the member of each keyed request, in order
		after  atomic.Int64 // requests sent after the dead member was taken out
		done   atomic.Bool  // its goroutine returned
	}
	const clients = 20
	sessions := make([]*session, clients)
	for i := range sessions {
		sessions[i] = &session{}
	}
	var (
		requests, failures atomic.Int64
		settled, stop      atomic.Bool
		failMu             sync.Mutex
		failLog            []string
	)
	get := func(key string) (member, echoed string, ok bool) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + addr + "/app/page")
		if key != "" {
			req.Header.Set("Cookie", "JSESSIONID="+key)
		}
		requests.Add(1)
		err := client.Do(req, resp)
		body := string(resp.Body())
		member, echoed = bodyField(body, "member"), bodyField(body, "session")
		if err != nil || resp.StatusCode() != http.StatusOK || member == "" || key != "" && echoed != key {
			failures.Add(1)
			failMu.Lock()
			failLog = append(failLog, fmt.Sprintf("GET with %q: status %d, body %q, err %v", key, resp.StatusCode(), body, err))
			failMu.Unlock()
			return "", "", false
		}
		return member, echoed, true
	}

	var wg sync.WaitGroup
	for _, ss := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ss.done.Store(true)
			m, key, ok := get("")
			if !ok {
				return
			}
			ss.key, ss.issuer = key, m
			s.Cache().Wait() // the binding to the issuer is learned before the session goes on
			for !stop.Load() {
				after := settled.Load()
				if m, _, ok := get(ss.key); ok {
					ss.seq = append(ss.seq, m)
				}
				if after {
					ss.after.Add(1)
				}
			}
		}()
	}
	// stopLoad ends the load; it runs before any Fatal below returns.
	stopLoad := sync.OnceFunc(func() { stop.Store(true); wg.Wait() })
	t.Cleanup(stopLoad)

	waitFor(t, "load before the kill", func() bool { return requests.Load() >= clients*20 })
	deadM := members[dead]
	deadM.kill()
	if c, err := net.DialTimeout("tcp", deadM.addr(), time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after the kill", dead)
	}
	direct := fasthttp.Client{MaxIdemponentCallAttempts: 1}
	if code, _, err := direct.GetTimeout(nil, "http://"+deadM.addr()+"/health", time.Second); err == nil {
		t.Fatalf("%s still answers after the kill: status %d", dead, code)
	}
	deadState := tableMember(t, s, dead).State
	waitFor(t, dead+" taken out (ejected or down)", func() bool { return !deadState.UsableNew() })
	settled.Store(true)
	waitFor(t, "10 requests per session after the kill", func() bool {
		for _, ss := range sessions {
			if !ss.done.Load() && ss.after.Load() < 10 {
				return false
			}
		}
		return true
	})
	// Keep the load on until the active checks have found the member down too.
	waitFor(t, dead+" down by active checks", func() bool { return !deadState.Healthy() })
	stopLoad()

	t.Logf("requests=%d failures=%d retries=%d replays=%d moves:%s; %s ejected=%v healthy=%v",
		requests.Load(), failures.Load(), s.stats.retries.Load(), s.stats.replays.Load(), logMoves(t, s),
		dead, deadState.Ejected(), deadState.Healthy())
	for i, f := range failLog {
		if i == 10 {
			t.Errorf("... and %d more failures", len(failLog)-i)
			break
		}
		t.Errorf("failed: %s", f)
	}
	for _, id := range ids {
		if st := tableMember(t, s, id).State; id != dead && !st.UsableNew() {
			t.Errorf("survivor %s was taken out: healthy=%v ejected=%v", id, st.Healthy(), st.Ejected())
		}
	}

	survivors := survivorTable(t, s.Table().Groups[0], dead)
	onDead, notIssuer := 0, 0
	for _, ss := range sessions {
		if ss.key == "" || len(ss.seq) == 0 {
			t.Errorf("a session never got going (key %q, %d requests)", ss.key, len(ss.seq))
			continue
		}
		home := ss.seq[0]
		if home != ss.issuer {
			notIssuer++ // its learned binding was dropped: it lives where hashing put it
		}
		successor := survivors.Members[survivors.Rendezvous(router.HashKey([]byte(ss.key)))].ID
		var moved []string
		for i, m := range ss.seq {
			if m != home {
				moved = ss.seq[i:]
				break
			}
		}
		switch {
		case home != dead && len(moved) > 0:
			t.Errorf("session %s on %s (a survivor) moved: %v", ss.key, home, moved)
		case home == dead && len(moved) == 0:
			t.Errorf("session %s on %s never moved after the kill (%d requests)", ss.key, dead, len(ss.seq))
		case home == dead:
			onDead++
			for _, m := range moved {
				if m != successor {
					t.Errorf("session %s moved off %s to %v, want only its successor %s", ss.key, dead, moved, successor)
					break
				}
			}
		}
	}
	t.Logf("sessions=%d on %s=%d not on their issuer=%d", len(sessions), dead, onDead, notIssuer)
	if onDead == 0 {
		t.Errorf("no session lived on %s: the kill tested nothing", dead)
	}
	if total := s.stats.moves[router.MoveMemberDown].Load() + s.stats.moves[router.MoveEjected].Load(); total == 0 {
		t.Errorf("no move counted (moves:%s)", logMoves(t, s))
	}
}

// bodyRecorder is a member that records the length and sha256 of every POST body.
type bodyRecorder struct {
	mu     sync.Mutex
	bodies []string // "len=<n> sha=<hex>"
}

func (b *bodyRecorder) handle(ctx *fasthttp.RequestCtx) {
	if ctx.IsPost() {
		body := ctx.PostBody()
		sum := sha256.Sum256(body)
		b.mu.Lock()
		b.bodies = append(b.bodies, fmt.Sprintf("len=%d sha=%x", len(body), sum))
		b.mu.Unlock()
	}
	ctx.SetBodyString("member=B\n")
}

func (b *bodyRecorder) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	got := b.bodies
	b.bodies = nil
	return got
}

func TestFailoverPOSTReplay(t *testing.T) {
	rec := &bodyRecorder{}
	bAddr := startFastMember(t, rec.handle)
	aAddr := closedAddr(t) // connection refused: a request provably never reaches A
	start := func(t *testing.T, retryBuffer int) (*Server, string) {
		t.Helper()
		g := gwGroup("app", "/", gwMember("A", aAddr), gwMember("B", bAddr))
		g.Passive.ConsecutiveFailures = 0 // every request tries A first
		cfg := gwConfig(g)
		cfg.Retry.RetryBuffer = retryBuffer
		return startGateway(t, cfg, zerolog.Nop())
	}
	post := func(t *testing.T, addr string, body []byte) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/app/upload", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Cookie", "JSESSIONID="+webSphereKey("A")) // a new session bound to A
		return doHTTP(t, newHTTPClient(t), req)
	}
	body := make([]byte, 10<<10)
	rand.Read(body)
	want := fmt.Sprintf("len=%d sha=%x", len(body), sha256.Sum256(body))

	t.Run("replayed within retry_buffer", func(t *testing.T) {
		s, addr := start(t, 64<<10)
		resp, got := post(t, addr, body)
		if resp.StatusCode != http.StatusOK || got != "member=B\n" {
			t.Fatalf("POST 10 KiB bound to unreachable A: status %d, body %q; want 200 from B", resp.StatusCode, got)
		}
		if bodies := rec.take(); len(bodies) != 1 || bodies[0] != want {
			t.Errorf("B received %q, want exactly [%q]", bodies, want)
		}
		if n := s.stats.replays.Load(); n != 1 {
			t.Errorf("replays = %d, want 1", n)
		}
		if n := s.stats.retries.Load(); n != 1 {
			t.Errorf("retries = %d, want 1", n)
		}
	})

	t.Run("larger than retry_buffer", func(t *testing.T) {
		s, addr := start(t, 1024)
		resp, got := post(t, addr, body)
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("POST 10 KiB over retry_buffer 1024: status %d, body %q; want 502", resp.StatusCode, got)
		}
		if bodies := rec.take(); len(bodies) != 0 {
			t.Errorf("B received %q, want nothing", bodies)
		}
		if r, n := s.stats.retries.Load(), s.stats.replays.Load(); r != 0 || n != 0 {
			t.Errorf("retries = %d, replays = %d; want 0, 0", r, n)
		}
	})

	t.Run("streamed past buffer_body_bytes", func(t *testing.T) {
		s, addr := start(t, 1<<20)
		big := make([]byte, 3*config.Default().Server.BufferBodyBytes)
		rand.Read(big)
		resp, got := post(t, addr, big)
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("POST %d bytes (streamed): status %d, body %q; want 502", len(big), resp.StatusCode, got)
		}
		if bodies := rec.take(); len(bodies) != 0 {
			t.Errorf("B received %q, want nothing", bodies)
		}
		if r, n := s.stats.retries.Load(), s.stats.replays.Load(); r != 0 || n != 0 {
			t.Errorf("retries = %d, replays = %d; want 0, 0", r, n)
		}
	})
}

func TestFailoverDeterministic(t *testing.T) {
	ids := []string{"m1", "m2", "m3", "m4", "m5"}
	const dead = "m3"
	addrs := map[string]string{}
	for _, id := range ids {
		addrs[id] = startFastMember(t, idMember(id))
	}
	mkConfig := func() *config.Config {
		var mcs []config.Member
		for _, id := range ids {
			mcs = append(mcs, gwMember(id, addrs[id]))
		}
		return gwConfig(gwGroup("app", "/", mcs...))
	}
	s1, addr1 := startGateway(t, mkConfig(), zerolog.Nop())
	s2, addr2 := startGateway(t, mkConfig(), zerolog.Nop())
	setDown(t, s1, dead)
	setDown(t, s2, dead)
	g1, g2 := s1.Table().Groups[0], s2.Table().Groups[0]
	// all is an independent table of the five members, all up: where keys live
	// before the member went down.
	all := survivorTable(t, g1, "")
	deadRoute := string(tableMember(t, s1, dead).Route)

	const n = 10000
	type key struct {
		k     string
		bound bool // bound to the dead member
	}
	var keys []key
	for range n {
		keys = append(keys, key{hex32() + "." + deadRoute, true})
	}
	for range n {
		k := hex32()
		keys = append(keys, key{k, all.Members[all.Rendezvous(router.HashKey([]byte(k)))].ID == dead})
	}
	spread := [2]map[string]int{{}, {}} // Tomcat, opaque
	boundOpaque := 0
	for i, kk := range keys {
		k := []byte(kk.k)
		h := router.HashKey(k)
		d1, d2 := g1.Decide(k, h), g2.Decide(k, h)
		if d1.Member == nil || d2.Member == nil {
			t.Fatalf("Decide(%q): no member (%v, %v)", k, d1.Outcome, d2.Outcome)
		}
		if d1.Member.ID != d2.Member.ID || d1.Outcome != d2.Outcome {
			t.Fatalf("Decide(%q) = %s (%v) on one gateway, %s (%v) on the other", k, d1.Member.ID, d1.Outcome, d2.Member.ID, d2.Outcome)
		}
		switch {
		case d1.Member.ID == dead:
			t.Fatalf("Decide(%q) = %s, which is down", k, dead)
		case kk.bound:
			spread[i/n][d1.Member.ID]++
			if i < n {
				if d1.Outcome != router.OutcomeMoved || d1.Reason != router.MoveMemberDown {
					t.Errorf("Decide(%q) = %v (%v), want moved (member_down)", k, d1.Outcome, d1.Reason)
				}
			} else {
				boundOpaque++
			}
		default:
			if want := all.Members[all.Rendezvous(h)].ID; d1.Member.ID != want {
				t.Errorf("Decide(%q) = %s: the key lived on %s, which is up, and moved", k, d1.Member.ID, want)
			}
		}
	}
	t.Logf("Tomcat keys of %s: %v; opaque keys of %s (%d of %d): %v", dead, spread[0], dead, boundOpaque, n, spread[1])
	for i, total := range []int{n, boundOpaque} {
		for _, id := range ids {
			if id == dead {
				continue
			}
			if got := spread[i][id]; got < total/8 {
				t.Errorf("survivor %s took %d of %d keys of %s, want about a quarter: %v", id, got, total, dead, spread[i])
			}
		}
	}

	c := newHTTPClient(t)
	for i := range 200 {
		kk := keys[i%2*n+i/2] // Tomcat and opaque keys in turn
		want := g1.Decide([]byte(kk.k), router.HashKey([]byte(kk.k))).Member.ID
		_, b1 := httpGet(t, c, "http://"+addr1+"/app/x", kk.k)
		_, b2 := httpGet(t, c, "http://"+addr2+"/app/x", kk.k)
		if m1, m2 := bodyField(b1, "member"), bodyField(b2, "member"); m1 != want || m2 != want {
			t.Errorf("JSESSIONID=%s went to %q and %q through the two gateways, want %s", kk.k, m1, m2, want)
		}
	}
}

func TestFailoverDrain(t *testing.T) {
	g := gwGroup("app", "/", gwMember("A", startFastMember(t, idMember("A"))), gwMember("B", startFastMember(t, idMember("B"))))
	g.DrainTimeout = scaled(time.Second)
	cfg := gwConfig(g)
	cfg.Session.BoundWindow = time.Second // the shortest window Validate accepts
	s, addr := startGateway(t, cfg, zerolog.Nop())
	c := newHTTPClient(t)
	url := "http://" + addr + "/app/x"
	a := tableMember(t, s, "A").State

	var sessions []string
	for range 10 {
		sessions = append(sessions, webSphereKey("A"))
	}
	round := func(t *testing.T) map[string]int {
		t.Helper()
		got := map[string]int{}
		for _, key := range sessions {
			before := a.DrainExpired()
			_, body := httpGet(t, c, url, key)
			m := bodyField(body, "member")
			got[m]++
			switch after := a.DrainExpired(); {
			case m == "A" && before:
				t.Fatalf("session %s went to A after its drain deadline", key)
			case m == "B" && !after:
				t.Fatalf("session %s went to B before A's drain deadline", key)
			case m != "A" && m != "B":
				t.Fatalf("session %s: body %q", key, body)
			}
		}
		return got
	}

	if got := round(t); got["A"] != len(sessions) {
		t.Fatalf("before the drain, sessions went to %v, want all on A", got)
	}
	a.SetAdmin(router.AdminDrain)
	start := time.Now()
	onA := round(t)["A"]
	if onA == 0 {
		t.Fatalf("no bound session reached A after it began to drain (%v since)", time.Since(start))
	}
	if n := a.BoundSessions(); n == 0 {
		t.Errorf("A.BoundSessions() = 0 while it serves its sessions")
	}
	for i := range 50 {
		_, body := httpGet(t, c, url, "")
		if m := bodyField(body, "member"); m != "B" {
			t.Fatalf("keyless request %d went to %q while A drains, want B", i, m)
		}
	}
	waitFor(t, "A's drain deadline", func() bool {
		onA += round(t)["A"]
		return a.DrainExpired()
	})
	t.Logf("drain: %d session requests on A in %v; bound sessions %d", onA, time.Since(start), a.BoundSessions())
	waitFor(t, "A's bound sessions to fall to 0", func() bool {
		if got := round(t); got["B"] != len(sessions) {
			t.Fatalf("after the drain deadline, sessions went to %v, want all on B", got)
		}
		return a.BoundSessions() == 0
	})
	if n := s.stats.moves[router.MoveDrainingDeadline].Load(); n == 0 {
		t.Errorf("moves[draining_deadline] = 0 (moves:%s)", logMoves(t, s))
	}
	t.Logf("moves:%s", logMoves(t, s))
}

func TestFailoverStrict(t *testing.T) {
	group := func(name string, strict, switchBack bool) config.Group {
		g := gwGroup(name, "/"+name,
			routed(gwMember(name+"A", startFastMember(t, idMember(name+"A"))), "A"),
			routed(gwMember(name+"B", startFastMember(t, idMember(name+"B"))), "B"))
		g.Strict, g.SwitchBack = strict, switchBack
		return g
	}
	cfg := gwConfig(group("strict", true, false), group("back", false, true), group("stay", false, false))
	s, addr := startGateway(t, cfg, zerolog.Nop())
	c := newHTTPClient(t)
	expect := func(t *testing.T, name, key string, status int, member string) {
		t.Helper()
		resp, body := httpGet(t, c, "http://"+addr+"/"+name+"/x", key)
		if resp.StatusCode != status || bodyField(body, "member") != member {
			t.Fatalf("GET /%s with %s: status %d, body %q; want %d from %q", name, key, resp.StatusCode, body, status, member)
		}
	}

	t.Run("strict", func(t *testing.T) {
		key := webSphereKey("A")
		expect(t, "strict", key, http.StatusOK, "strictA")
		setDown(t, s, "strictA")
		for range 3 {
			expect(t, "strict", key, http.StatusServiceUnavailable, "")
		}
		if n := s.stats.refused[router.MoveMemberDown].Load(); n != 3 {
			t.Errorf("refused[member_down] = %d, want 3", n)
		}
		expect(t, "strict", "", http.StatusOK, "strictB") // keyless requests still flow
	})

	for _, tc := range []struct {
		name, back string
	}{
		{"back", "backA"}, // switch_back: the session returns to A
		{"stay", "stayB"}, // default: it stays where its state now lives
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := webSphereKey("A")
			a := tableMember(t, s, tc.name+"A").State
			expect(t, tc.name, key, http.StatusOK, tc.name+"A")
			a.SetHealthy(false)
			t.Cleanup(func() { a.SetHealthy(true) })
			for range 3 {
				expect(t, tc.name, key, http.StatusOK, tc.name+"B")
			}
			s.Cache().Wait() // the move's binding is learned
			a.SetHealthy(true)
			for range 3 {
				expect(t, tc.name, key, http.StatusOK, tc.back)
			}
		})
	}
}

// failingMember answers 500 "member=<id>" to everything and counts the requests.
func failingMember(id string, served *atomic.Int64) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		served.Add(1)
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.SetBodyString("member=" + id + "\n")
	}
}

func TestFailoverPassiveEjection(t *testing.T) {
	var aServed, soloServed atomic.Int64
	passive := func(g config.Group) config.Group {
		g.Passive.Eject5xx = true
		g.Passive.ConsecutiveFailures = 3
		return g
	}
	cfg := gwConfig(
		passive(gwGroup("pair", "/pair",
			routed(gwMember("pA", startFastMember(t, failingMember("pA", &aServed))), "A"),
			routed(gwMember("pB", startFastMember(t, idMember("pB"))), "B"))),
		passive(gwGroup("solo", "/solo", gwMember("solo", startFastMember(t, failingMember("solo", &soloServed))))),
	)
	s, addr := startGateway(t, cfg, zerolog.Nop())
	c := newHTTPClient(t)
	pA := tableMember(t, s, "pA").State

	t.Run("ejected after 3 failures", func(t *testing.T) {
		key := webSphereKey("A")
		for i := 1; i <= 3; i++ {
			if pA.Ejected() {
				t.Fatalf("pA ejected after %d failures, want 3", i-1)
			}
			resp, body := httpGet(t, c, "http://"+addr+"/pair/x", key)
			if resp.StatusCode != http.StatusInternalServerError || body != "member=pA\n" {
				t.Fatalf("request %d bound to pA: status %d, body %q; want pA's 500", i, resp.StatusCode, body)
			}
		}
		if !pA.Ejected() {
			t.Fatalf("pA not ejected after 3 failures in a row (consecutive %d)", pA.Consecutive.Load())
		}
		for i := range 10 {
			resp, body := httpGet(t, c, "http://"+addr+"/pair/x", "")
			if resp.StatusCode != http.StatusOK || body != "member=pB\n" {
				t.Fatalf("keyless request %d after the ejection: status %d, body %q; want pB", i, resp.StatusCode, body)
			}
		}
		resp, body := httpGet(t, c, "http://"+addr+"/pair/x", key)
		if resp.StatusCode != http.StatusOK || body != "member=pB\n" {
			t.Fatalf("session of pA after the ejection: status %d, body %q; want pB", resp.StatusCode, body)
		}
		if n := s.stats.moves[router.MoveEjected].Load(); n != 1 {
			t.Errorf("moves[ejected] = %d, want 1", n)
		}
		if n := aServed.Load(); n != 3 {
			t.Errorf("pA served %d requests, want 3", n)
		}
	})

	t.Run("last member is never ejected", func(t *testing.T) {
		solo := tableMember(t, s, "solo").State
		for i := range 10 {
			resp, body := httpGet(t, c, "http://"+addr+"/solo/x", webSphereKey("solo"))
			if resp.StatusCode != http.StatusInternalServerError || body != "member=solo\n" {
				t.Fatalf("request %d: status %d, body %q; want the member's own 500", i, resp.StatusCode, body)
			}
		}
		if solo.Ejected() {
			t.Errorf("the only member of its group was ejected")
		}
		if n := soloServed.Load(); n != 10 {
			t.Errorf("solo served %d of 10 requests", n)
		}
	})
}
