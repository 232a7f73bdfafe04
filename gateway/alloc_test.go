//go:build !race

package gateway

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// TestAllocsPrepareRequest guards the gateway's own glue around fasthttp's client:
// hop-by-hop removal, X-Forwarded-*, and keeping the target byte-exact.
func TestAllocsPrepareRequest(t *testing.T) {
	const raw = "GET /fb/account;jsessionid=0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2?x=1 HTTP/1.1\r\n" +
		"Host: app.example.com\r\n" +
		"Connection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\n" +
		"X-Forwarded-For: 10.0.0.1\r\n" +
		"Cookie: theme=dark; lang=en; JSESSIONID=0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2:Node3; _ga=GA1.2.3; csrf=abc\r\n\r\n"
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}, nil)
	var saved fasthttp.Request
	ctx.Request.CopyTo(&saved)
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}
	f := func() {
		saved.CopyTo(&ctx.Request)
		prepareRequest(&ctx, &ctx.Request, trusted)
	}
	f()
	if n := testing.AllocsPerRun(1000, f); n != 0 {
		t.Fatalf("prepareRequest: %v allocs/op, want 0", n)
	}
}

// TestAllocsIssuedKey guards reading the session a member issued from its response.
func TestAllocsIssuedKey(t *testing.T) {
	cfg := config.Default()
	cfg.Admin.Listen = ""
	cfg.TargetGroups = []config.Group{config.NewGroup("g", "/", config.NewMember("Node1", "127.0.0.1:1"))}
	s, err := New(&cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(0)
	snap := s.snap.Load()
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\n" +
		"Set-Cookie: other=1; Path=/\r\n" +
		"Set-Cookie: JSESSIONID=6F1A2B3C4D5E6F708192A3B4C5D6E7F8; Path=/; HttpOnly\r\n" +
		"Content-Length: 0\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	var key []byte
	f := func() { key = issuedKey(snap, &resp) }
	f()
	if string(key) != "6F1A2B3C4D5E6F708192A3B4C5D6E7F8" {
		t.Fatalf("issuedKey = %q", key)
	}
	if n := testing.AllocsPerRun(1000, f); n != 0 {
		t.Fatalf("issuedKey: %v allocs/op, want 0", n)
	}
}

// memConn is an in-memory net.Conn: reads come from r, writes go to w. As a member
// connection it answers every request written to it with resp.
type memConn struct {
	r, w  bytes.Buffer
	resp  []byte // set: a member that answers each write with resp
	ready bool
}

var memAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

func (c *memConn) Read(p []byte) (int, error) {
	if c.resp != nil {
		if !c.ready {
			return 0, io.EOF
		}
		c.ready = false
		return copy(p, c.resp), nil
	}
	return c.r.Read(p)
}

func (c *memConn) Write(p []byte) (int, error) {
	if c.resp != nil {
		c.ready = true // fasthttp writes a request in one flush
		return len(p), nil
	}
	return c.w.Write(p)
}

func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return memAddr }
func (c *memConn) RemoteAddr() net.Addr             { return memAddr }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// handleAllocsBudget is the whole request path's allocation budget per request, the
// router, the cache, our glue and fasthttp's server and client together, as
// docs/performance.md states it: the 4 objects fasthttp's client makes for a streamed
// response body (clientStreamBody and its three closures, transport.RoundTrip), plus,
// for a request with a body, the io.LimitReader fasthttp's Body makes to read it from
// the client's stream (io.CopyN). Everything of ours is 0.
const (
	handleAllocsBudget     = 4
	handleBodyAllocsBudget = handleAllocsBudget + 1
)

// TestAllocsHandle guards the whole of Server.handle as fasthttp's own allocation
// tests do: a request through fasthttp.Server.ServeConn on an in-memory connection,
// proxied to an in-memory member over a pooled connection, for a routed WebSphere
// session, a Tomcat one, a keyless request and a POST with a body.
func TestAllocsHandle(t *testing.T) {
	for _, try := range []time.Duration{0, time.Second} {
		t.Run("try_timeout "+try.String(), func(t *testing.T) { allocsHandle(t, try, false) })
	}
	t.Run("signed cookie", func(t *testing.T) { allocsHandle(t, 0, true) })
}

func allocsHandle(t *testing.T, tryTimeout time.Duration, cookie bool) {
	cfg := config.Default()
	cfg.Retry.TryTimeout = tryTimeout
	if cookie {
		cfg.Session.Affinity = []string{"route", "cookie", "learned", "hash"}
		cfg.Session.Cookie.Keys = []string{"0123456789abcdef-new", "0123456789abcdef-old"}
	}
	cfg.Admin.Listen = ""
	cfg.Log.Access = false
	g := config.NewGroup("fb", "/fb", config.NewMember("n1", "127.0.0.1:1"), config.NewMember("n2", "127.0.0.1:2"))
	cfg.TargetGroups = []config.Group{g}
	s, err := New(&cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(0)
	const answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nmember=n?\n"
	for _, c := range s.snap.Load().clients {
		member := &memConn{resp: []byte(answer)}
		c.Dial = func(string) (net.Conn, error) { return member, nil }
	}
	type allocCase struct {
		name, raw string
		budget    float64
	}
	cases := []allocCase{
		{"websphere cookie", "GET /fb/account HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: test\r\n" +
			"Cookie: theme=dark; JSESSIONID=0000A1B2C3D4E5F6G7H8I9J0K1L:n2:n1; _ga=GA1.2.3\r\n\r\n", handleAllocsBudget},
		{"tomcat path parameter", "GET /fb/cart;jsessionid=6F1A2B3C4D5E6F708192A3B4C5D6E7F8.n1?item=4 HTTP/1.1\r\nHost: app.example.com\r\n\r\n", handleAllocsBudget},
		{"no key", "GET /fb/ HTTP/1.1\r\nHost: app.example.com\r\nAccept: */*\r\n\r\n", handleAllocsBudget},
		{"h2c upgrade (served as a request)", "GET /fb/ HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\n" +
			"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n", handleAllocsBudget},
		{"post", "POST /fb/pay HTTP/1.1\r\nHost: app.example.com\r\nCookie: JSESSIONID=0000A1B2C3D4E5F6G7H8I9J0K1L:n1\r\n" +
			"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\namount=1000", handleBodyAllocsBudget},
	}
	if cookie {
		v := cookieValue([]byte(cfg.Session.Cookie.Keys[0]), "fb", "n1")
		old := cookieValue([]byte(cfg.Session.Cookie.Keys[1]), "fb", "n2")
		cases = append(cases,
			allocCase{"keyless, signed cookie", "GET /fb/ HTTP/1.1\r\nHost: app.example.com\r\nCookie: a=b; SGROUTE=" + v + "\r\n\r\n", handleAllocsBudget},
			allocCase{"keyless, old key: re-signed", "GET /fb/ HTTP/1.1\r\nHost: app.example.com\r\nCookie: SGROUTE=" + old + "\r\n\r\n", handleAllocsBudget},
			allocCase{"forged cookie", "GET /fb/ HTTP/1.1\r\nHost: app.example.com\r\nCookie: SGROUTE=AAAAAAAAAAAAAAAAAAAAAA\r\n\r\n", handleAllocsBudget})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := &memConn{}
			client.r.Grow(4096)
			client.w.Grow(4096)
			f := func() {
				client.r.WriteString(tc.raw)
				if err := s.srv.ServeConn(client); err != nil {
					t.Fatal(err)
				}
			}
			f()
			if !strings.HasPrefix(client.w.String(), "HTTP/1.1 200 OK") {
				t.Fatalf("answer %q, want 200", client.w.String())
			}
			client.w.Reset()
			if n := testing.AllocsPerRun(1000, func() { f(); client.w.Reset() }); n > tc.budget {
				t.Fatalf("Server.handle (%s): %v allocs/op, want at most %v", tc.name, n, tc.budget)
			}
		})
	}
}

// TestAllocsCookieVerify guards the signed affinity cookie's verification: found among
// other cookies, valid, old key, forged, absent.
func TestAllocsCookieVerify(t *testing.T) {
	g := config.NewGroup("fb", "/fb", config.NewMember("n1", "127.0.0.1:1"), config.NewMember("n2", "127.0.0.1:2"))
	table, err := router.NewTable(router.Spec{Groups: []router.GroupSpec{{Name: "fb", PathPrefix: "/fb", Members: []router.MemberSpec{
		{ID: g.Members[0].ID, Addr: g.Members[0].Address, Route: "n1", Weight: 1}, {ID: g.Members[1].ID, Addr: g.Members[1].Address, Route: "n2", Weight: 1}}}},
		Chain: []router.Link{router.CookieResolver()}}, router.NewStates())
	if err != nil {
		t.Fatal(err)
	}
	c := config.Default().Session.Cookie
	c.Keys = []string{"0123456789abcdef-new", "0123456789abcdef-old"}
	ac, err := buildCookie(c, table)
	if err != nil {
		t.Fatal(err)
	}
	headers := [][][]byte{
		{[]byte("a=b; SGROUTE=" + cookieValue([]byte(c.Keys[0]), "fb", "n2") + "; c=d")},
		{[]byte("x=y"), []byte("SGROUTE=" + cookieValue([]byte(c.Keys[1]), "fb", "n1"))},
		{[]byte("SGROUTE=AAAAAAAAAAAAAAAAAAAAAA")},
		{[]byte("JSESSIONID=abc")},
	}
	want := []int{cookieValid, cookieOldKey, cookieInvalid, cookieAbsent}
	for i, h := range headers {
		if _, _, res := ac.pinnedIndex(table.Groups[0], h); res != want[i] {
			t.Fatalf("headers %d: %s, want %s", i, cookieResultNames[res], cookieResultNames[want[i]])
		}
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		sinkIdx, _, _ = ac.pinnedIndex(table.Groups[0], headers[i%len(headers)])
		i++
	}); n != 0 {
		t.Fatalf("affinity cookie verification allocates %v times per run, want 0", n)
	}
}

var sinkIdx int

// TestAllocsMemberScheme guards the scheme switch of forward: a request from a plain
// client to a TLS member and back costs nothing once the URI has held a scheme.
func TestAllocsMemberScheme(t *testing.T) {
	var req fasthttp.Request
	req.SetRequestURI("/fb/account?x=1")
	u := req.URI()
	memberScheme(u, true)
	memberScheme(u, false)
	tlsMember := false
	if n := testing.AllocsPerRun(1000, func() {
		tlsMember = !tlsMember
		memberScheme(u, tlsMember)
	}); n != 0 {
		t.Fatalf("memberScheme: %v allocs/op, want 0", n)
	}
	if memberScheme(u, true); string(u.Scheme()) != "https" {
		t.Errorf("memberScheme(u, true): scheme %q, want https", u.Scheme())
	}
	if memberScheme(u, false); string(u.Scheme()) != "http" {
		t.Errorf("memberScheme(u, false): scheme %q, want http", u.Scheme())
	}
}

// TestAllocsIsUpgrade guards the upgrade check every request passes through, for a
// request without Upgrade and for one with.
func TestAllocsIsUpgrade(t *testing.T) {
	for _, raw := range []string{
		"GET /fb/ HTTP/1.1\r\nHost: app.example.com\r\nCookie: JSESSIONID=0000A1B2C3D4E5F6G7H8I9J0K1L:n1\r\n\r\n",
		"GET /fb/chat HTTP/1.1\r\nHost: app.example.com\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	} {
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		var up bool
		f := func() { up = isUpgrade(&req) }
		f()
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Fatalf("isUpgrade (upgrade %v): %v allocs/op, want 0", up, n)
		}
	}
}

// TestAllocsWSFrames guards the frame tracker, which runs on every read of a
// WebSocket tunnel.
func TestAllocsWSFrames(t *testing.T) {
	var stream []byte
	for _, n := range []int{5, 0, 300, 70000, 12} {
		stream = append(stream, wsFrame(0x2, n, false, false)...)
	}
	var fr wsFrames
	f := func() {
		for p := stream; len(p) > 0; {
			k := min(len(p), 4096)
			fr.scan(p[:k], false)
			p = p[k:]
		}
		fr.scan(stream[:3], true)
		fr = wsFrames{}
	}
	if n := testing.AllocsPerRun(1000, f); n != 0 {
		t.Fatalf("wsFrames.scan: %v allocs/op, want 0", n)
	}
}

// hitStore is a local store that always holds a fresh binding: bindings' own code on a
// local hit, without ristretto (STYLE.md: guards do not measure it).
type hitStore struct{ num uint32 }

func (h hitStore) LookupRefreshAt(uint64) (uint32, uint32, bool, bool) { return h.num, 5, true, false }
func (h hitStore) Learn(uint64, uint32) bool                           { return true }
func (h hitStore) LearnAbsent(uint64) bool                             { return true }
func (h hitStore) Now() uint32                                         { return 10 }

var sinkNum uint32

// TestAllocsBindingsLocalHit guards the learned resolver's store with a shared store
// configured, on a local hit: as free as the cache alone. (The shared read of a local
// miss allocates, by design: BenchmarkSharedLookup measures it.)
func TestAllocsBindingsLocalHit(t *testing.T) {
	keyHash := router.HashKey([]byte("6F1A2B3C4D5E6F708192A3B4C5D6E7F8"))
	for _, c := range []struct {
		name string
		num  uint32
	}{{"local hit", 3}, {"known absence (a routed session)", 0}} {
		var b router.Store = &bindings{local: hitStore{num: c.num}}
		if n := testing.AllocsPerRun(1000, func() {
			num, _ := b.Lookup(keyHash)
			sinkNum += num
		}); n != 0 {
			t.Fatalf("bindings.Lookup (%s): %v allocs/op, want 0", c.name, n)
		}
	}
}

// h2Writer is a reusable http.ResponseWriter for TestAllocsH2Bridge.
type h2Writer struct {
	h    http.Header
	code int
	n    int
}

func (w *h2Writer) Header() http.Header         { return w.h }
func (w *h2Writer) WriteHeader(code int)        { w.code = code }
func (w *h2Writer) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// TestAllocsH2Bridge measures what bridging an HTTP/2 request to the request path
// costs in allocations, on top of the standard library's HTTP/2 server (its framing,
// header decoding and http.Request are its own): the fasthttp request made from the
// http.Request, handle, and the answer's headers copied back. It is held to a budget
// (the HTTP/1.1 path is at handleAllocsBudget).
func TestAllocsH2Bridge(t *testing.T) {
	cfg := config.Default()
	cfg.Admin.Listen = ""
	cfg.Log.Access = false
	cfg.TargetGroups = []config.Group{config.NewGroup("fb", "/fb", config.NewMember("n1", "127.0.0.1:1"), config.NewMember("n2", "127.0.0.1:2"))}
	s, err := New(&cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(0)
	const answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nmember=n?\n"
	for _, c := range s.snap.Load().clients {
		member := &memConn{resp: []byte(answer)}
		c.Dial = func(string) (net.Conn, error) { return member, nil }
	}
	hc := &h2Conn{Conn: &memConn{}, info: &listenerInfo{port: []byte("443")}}
	req, _ := http.NewRequest(http.MethodGet, "https://app.example.com/fb/account?x=1", nil)
	req.RequestURI = "/fb/account?x=1"
	req.Header.Set("Cookie", "theme=dark")
	req.Header.Add("Cookie", "JSESSIONID=0000A1B2C3D4E5F6G7H8I9J0K1L:n2:n1")
	req.Header.Set("User-Agent", "test")
	req = req.WithContext(context.WithValue(req.Context(), h2ConnKey{}, hc))
	w := &h2Writer{h: http.Header{}}
	f := func() {
		clear(w.h)
		s.serveH2(w, req)
		if w.code != 200 {
			t.Fatalf("status %d", w.code)
		}
	}
	f()
	n := testing.AllocsPerRun(1000, f)
	t.Logf("HTTP/2 bridge: %v allocs per request (HTTP/1.1 path budget: %d)", n, handleAllocsBudget)
	if n > h2BridgeAllocsBudget {
		t.Fatalf("serveH2: %v allocs/op, want at most %v", n, h2BridgeAllocsBudget)
	}
}

// h2BridgeAllocsBudget is TestAllocsH2Bridge's budget.
const h2BridgeAllocsBudget = 8
