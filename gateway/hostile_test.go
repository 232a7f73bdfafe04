package gateway

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// echoMember answers "member=<id> cl=<Content-Length> body=<body> host=<Host>
// xfh=<X-Forwarded-Host>", and counts the requests it served.
func echoMember(id string, served *atomic.Int64) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		served.Add(1)
		ctx.SetContentType("text/plain")
		fmt.Fprintf(ctx, "member=%s cl=%d body=%s host=%s xfh=%s\n", id, ctx.Request.Header.ContentLength(),
			ctx.PostBody(), ctx.Request.Header.Host(), ctx.Request.Header.Peek("X-Forwarded-Host"))
	}
}

// assertHealthy fails if any member of s counted a failure or was ejected.
func assertHealthy(t *testing.T, s *Server, what string) {
	t.Helper()
	for _, m := range s.Table().Members {
		if st := m.State; st.Failures.Load() != 0 || st.Ejected() || st.Consecutive.Load() != 0 {
			t.Fatalf("%s: member %s has %d failures (%d in a row), ejected %v; want none",
				what, m.ID, st.Failures.Load(), st.Consecutive.Load(), st.Ejected())
		}
	}
}

// A header that Connection names is hop-by-hop, but never the framing or the Host:
// dropping Content-Length made the member request unwritable (502), counted as the
// member's failure, and five such requests ejected a healthy member.
func TestConnectionNamingFramingHeaders(t *testing.T) {
	cases := []struct {
		name, raw, want string
	}{
		{"content-length", "POST /fb/x HTTP/1.1\r\nHost: app\r\nConnection: Content-Length\r\nContent-Length: 4\r\n\r\nabcd", "cl=4 body=abcd"},
		{"content-length keep-alive", "POST /fb/x HTTP/1.1\r\nHost: app\r\nConnection: keep-alive, content-length\r\nContent-Length: 4\r\n\r\nabcd", "cl=4 body=abcd"},
		{"transfer-encoding", "POST /fb/x HTTP/1.1\r\nHost: app\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n", "body=abcd"},
		{"host", "GET /fb/x HTTP/1.1\r\nHost: app\r\nConnection: Host\r\n\r\n", "host=app xfh=app"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var served atomic.Int64
			g := gwGroup("g", "/", gwMember("n1", startFastMember(t, echoMember("n1", &served))))
			g.Passive.ConsecutiveFailures = 2
			s, addr := startGateway(t, gwConfig(g), zerolog.Nop())
			for i := range 5 {
				resp, body := rawRoundTrip(t, addr, tc.raw)
				if resp.StatusCode != http.StatusOK || !strings.Contains(body, tc.want) {
					t.Fatalf("request %d: %d %q, want 200 with %q", i, resp.StatusCode, body, tc.want)
				}
			}
			assertHealthy(t, s, tc.name)
		})
	}
}

// hostileRequest builds one random request from parts that clients get wrong or abuse:
// odd methods, targets and versions, Connection naming any header, duplicate and
// malformed framing, bodies shorter or longer than declared, bare LF, NUL, folding.
func hostileRequest(r *rand.Rand, keys []string) []byte {
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	eol := "\r\n"
	if r.IntN(12) == 0 {
		eol = "\n"
	}
	var b strings.Builder
	b.WriteString(pick("GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "get", "post", "CONNECT", "PRI", "G\x00T", "TRACE"))
	b.WriteString(" ")
	b.WriteString(pick("/fb/x", "/fb;jsessionid="+keys[r.IntN(len(keys))], "/fb/../admin", "/fb/%2e%2e/admin",
		"http://app/fb/x", "http://u:p@app/fb/x", "*", "//a/x?u=http://b/", "/fb/x?a=%zz", "/fb/"+strings.Repeat("a", r.IntN(3000)),
		"/fb/x#frag", "fb/x", "/fb/\x7f", "/fb/x?jsessionid="+keys[r.IntN(len(keys))]))
	b.WriteString(" ")
	b.WriteString(pick("HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "HTTP/1.1 ", "HTTP/0.9", "http/1.1"))
	b.WriteString(eol)
	switch r.IntN(6) {
	case 0: // no Host
	case 1:
		b.WriteString("Host: app" + eol + "Host: other" + eol)
	case 2:
		b.WriteString("Host: " + pick("admin:hunter2@internal", "", "app:99999", "a b", "app\x00x") + eol)
	default:
		b.WriteString("Host: app" + eol)
	}
	if r.IntN(2) == 0 {
		b.WriteString("Cookie: JSESSIONID=" + keys[r.IntN(len(keys))] + eol)
	}
	for range r.IntN(3) {
		b.WriteString("Connection: ")
		for j := range 1 + r.IntN(3) {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pick("close", "keep-alive", "Content-Length", "Transfer-Encoding", "Host", "Cookie",
				"Upgrade", "X-Forwarded-For", "Expect", "TE", "content-length", "Authorization"))
		}
		b.WriteString(eol)
	}
	body := strings.Repeat("b", r.IntN(40))
	declared := len(body)
	switch r.IntN(8) {
	case 0: // no framing
	case 1:
		b.WriteString("Transfer-Encoding: " + pick("chunked", "chunked, identity", " chunked", "xchunked", "chunked\x00") + eol)
		body = fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
		if r.IntN(3) == 0 {
			b.WriteString("Content-Length: " + fmt.Sprint(declared) + eol)
		}
	case 2:
		b.WriteString(fmt.Sprintf("Content-Length: %d%sContent-Length: %d%s", declared, eol, declared+1, eol))
	case 3:
		b.WriteString("Content-Length: " + pick("+4", "-1", "4, 4", "0x4", "", "99999999999999999999") + eol)
	case 4:
		declared += r.IntN(9) - 4 // shorter or longer than sent
		if declared < 0 {
			declared = 0
		}
		b.WriteString(fmt.Sprintf("Content-Length: %d%s", declared, eol))
	default:
		b.WriteString(fmt.Sprintf("Content-Length: %d%s", declared, eol))
	}
	for range r.IntN(4) {
		b.WriteString(pick("Expect: 100-continue", "Upgrade: websocket", "X-Forwarded-For: 6.6.6.6", "X-Forwarded-Proto: gopher",
			"X-Forwarded-Host: evil", "X-Bad\x00: v", " folded: continuation", "Bad Name: v", "X: "+strings.Repeat("v", r.IntN(20000)),
			"Te: trailers", "Trailer: X-T", "Keep-Alive: timeout=1", "Authorization: Basic dTpw"))
		b.WriteString(eol)
	}
	b.WriteString(eol)
	b.WriteString(body)
	return []byte(b.String())
}

// sendHostile sends raw on a new connection, half-closes it and reads every answer.
// It returns the statuses, and a note for any answer that is neither 4xx (or 505, the
// client's version refused) nor the member's.
func sendHostile(t *testing.T, addr string, raw []byte) (statuses []int, members int, bad string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, scaled(5*time.Second))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(scaled(10 * time.Second)))
	conn.Write(raw)
	conn.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(conn)
	// The first answer is to the request line's method (a HEAD answer has no body);
	// what follows, from bytes past a declared body, is garbage to the gateway.
	method, _, _ := strings.Cut(string(raw), " ")
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		method = http.MethodGet
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				bad = "no answer and no close within the deadline"
			}
			return statuses, members, bad
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 200 {
			continue
		}
		statuses = append(statuses, resp.StatusCode)
		switch {
		case resp.StatusCode == http.StatusOK: // the gateway's own answers are errors: a 200 is the member's
			members++
		case resp.StatusCode >= 400 && resp.StatusCode < 500, resp.StatusCode == http.StatusHTTPVersionNotSupported:
		default:
			bad = fmt.Sprintf("answer %d %q", resp.StatusCode, body)
			return statuses, members, bad
		}
	}
}

// No client can hurt another: a stream of random and hostile requests from one client
// against healthy members never counts a member failure, ejects a member or moves a
// session, every answer is 4xx or the member's, and the member never sees more
// requests than the client got member answers for (no request smuggled in a body).
func TestHostileClientHurtsNoOne(t *testing.T) {
	var served1, served2 atomic.Int64
	g := gwGroup("g", "/", gwMember("n1", startFastMember(t, echoMember("n1", &served1))),
		gwMember("n2", startFastMember(t, echoMember("n2", &served2))))
	g.Passive.ConsecutiveFailures = 1
	cfg := gwConfig(g)
	cfg.Server.ReadTimeout = scaled(2 * time.Second)
	s, addr := startGateway(t, cfg, zerolog.Nop())
	victims := map[string]string{webSphereKey("n1"): "n1", webSphereKey("n2"): "n2", "0000" + hex32() + ".n2": "n2"}
	keys := []string{"x", "0000abc:n9", "", "a.b.c"}
	for k := range victims {
		keys = append(keys, k)
	}
	c := newHTTPClient(t)
	n := 300
	if testing.Short() {
		n = 60
	}
	r := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	var members int
	for i := range n {
		raw := hostileRequest(r, keys)
		refused := s.stats.errors[kindMemberRefused].Load()
		_, m, bad := sendHostile(t, addr, raw)
		if strings.HasPrefix(bad, "answer 502 ") && s.stats.errors[kindMemberRefused].Load() > refused {
			// The member refused the request (its head limit is 4096 bytes, the
			// gateway's 16384) and closed while it was still being written: 502, and
			// nothing counted against the member (assertHealthy below).
			bad = ""
		}
		if bad != "" {
			t.Fatalf("request %d %q: %s", i, trimForLog(string(raw)), bad)
		}
		members += m
		assertHealthy(t, s, fmt.Sprintf("after request %d %q", i, trimForLog(string(raw))))
		if i%20 == 0 {
			for key, want := range victims {
				resp, body := httpGet(t, c, "http://"+addr+"/fb/page", key)
				if got := bodyField(body, "member"); resp.StatusCode != http.StatusOK || got != want {
					t.Fatalf("after request %d %q: victim session %s: %d on %q, want 200 on %q", i, trimForLog(string(raw)), key, resp.StatusCode, got, want)
				}
				members++
			}
		}
	}
	if got := served1.Load() + served2.Load(); got != int64(members) {
		t.Errorf("members served %d requests for %d member answers to the client: a request was smuggled or lost", got, members)
	}
	for _, reason := range []router.MoveReason{router.MoveMemberDown, router.MoveEjected, router.MoveMaint, router.MoveDrainingDeadline} {
		if got := s.stats.moves[reason].Load(); got != 0 {
			t.Errorf("moves[%s] = %d, want 0", reason, got)
		}
	}
}

// FuzzRequest sends whole client byte streams through a gateway in front of two
// healthy members (the framing as a unit): no panic, every answer 4xx, 505 or the
// member's, never more requests at the members than member answers at the client,
// never a member failure.
func FuzzRequest(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 7))
	keys := []string{"0000abc:n1", "0000abc:n2", "x"}
	for range 32 {
		f.Add(hostileRequest(r, keys))
	}
	f.Add([]byte("POST /fb/x HTTP/1.1\r\nHost: app\r\nConnection: Content-Length\r\nContent-Length: 4\r\n\r\nabcd"))
	f.Add([]byte("GET /fb/x HTTP/1.1\r\nHost: app\r\n\r\nGET /fb/y HTTP/1.1\r\nHost: app\r\n\r\n"))
	f.Add([]byte("POST /fb/x HTTP/1.1\r\nHost: app\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app\r\n\r\n"))
	var served1, served2 atomic.Int64
	g := config.NewGroup("g", "/", config.NewMember("n1", fuzzMember(f, echoMember("n1", &served1))),
		config.NewMember("n2", fuzzMember(f, echoMember("n2", &served2))))
	g.Passive.ConsecutiveFailures = 1
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = ""
	cfg.Server.ReadTimeout = 2 * time.Second
	cfg.TargetGroups = []config.Group{g}
	s, err := New(&cfg, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	lns, err := s.Listen()
	if err != nil {
		f.Fatal(err)
	}
	go s.Serve(lns, nil) //nolint:errcheck // ends with Shutdown
	f.Cleanup(func() { s.Shutdown(time.Second) })
	addr := lns[0].Addr().String()
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 64<<10 {
			return
		}
		before := served1.Load() + served2.Load()
		_, members, bad := sendHostile(t, addr, raw)
		if bad != "" {
			t.Fatalf("%q: %s", trimForLog(string(raw)), bad)
		}
		if got := served1.Load() + served2.Load() - before; got > int64(members) {
			t.Fatalf("%q: members served %d requests for %d member answers", trimForLog(string(raw)), got, members)
		}
		assertHealthy(t, s, trimForLog(string(raw)))
	})
}

// fuzzMember serves h on loopback for the life of the fuzz target.
func fuzzMember(f *testing.F, h fasthttp.RequestHandler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, DisablePreParseMultipartForm: true}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	f.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// headerMember answers with the request's headers as the member received them, one
// "Name: value" per line, in order.
func headerMember(ctx *fasthttp.RequestCtx) {
	ctx.Request.Header.VisitAll(func(k, v []byte) {
		fmt.Fprintf(ctx, "%s: %s\n", k, v)
	})
}

// memberHeaders returns the values of name in a headerMember answer.
func memberHeaders(body, name string) []string {
	var vs []string
	for _, line := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && strings.EqualFold(k, name) {
			vs = append(vs, v)
		}
	}
	return vs
}

// The member gets one X-Forwarded-For, -Proto and -Host, written by the gateway:
// duplicates from the client are gone, and the client's X-Forwarded-For is kept only
// from a trusted proxy.
func TestForwardedHeaders(t *testing.T) {
	const dup = "GET /fb/x HTTP/1.1\r\nHost: app\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Proto: gopher\r\n" +
		"X-Forwarded-Host: evil1\r\nX-Forwarded-Host: evil2\r\n\r\n"
	for _, tc := range []struct {
		name    string
		trusted []string
		xff     string
	}{
		{"untrusted peer", nil, "127.0.0.1"},
		{"untrusted peer, other proxies trusted", []string{"10.0.0.0/8"}, "127.0.0.1"},
		{"trusted peer", []string{"127.0.0.0/8"}, "6.6.6.6, 7.7.7.7, 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gwConfig(gwGroup("g", "/", gwMember("n1", startFastMember(t, headerMember))))
			cfg.Forwarded.TrustedProxies = tc.trusted
			_, addr := startGateway(t, cfg, zerolog.Nop())
			resp, body := rawRoundTrip(t, addr, dup)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %q", resp.StatusCode, body)
			}
			for name, want := range map[string]string{"X-Forwarded-For": tc.xff, "X-Forwarded-Proto": "http", "X-Forwarded-Host": "app"} {
				if got := memberHeaders(body, name); len(got) != 1 || got[0] != want {
					t.Errorf("member saw %s %q, want one, %q", name, got, want)
				}
			}
		})
	}
}

// Each of these used to reach a member (or hang): now the client gets its 4xx at
// once, and the member sees nothing.
func TestRefusedRequests(t *testing.T) {
	var served atomic.Int64
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("n1", startFastMember(t, echoMember("n1", &served)))))
	cfg.Server.ReadTimeout = 20 * time.Second // far above the deadline below: a hang shows
	_, addr := startGateway(t, cfg, zerolog.Nop())
	cases := []struct {
		name, raw string
		status    int
	}{
		{"bare LF head", "GET /fb/x HTTP/1.1\nHost: app\n\n", 400},
		{"bare LF last line", "GET /fb/x HTTP/1.1\r\nHost: app\n\r\n", 400},
		{"bare LF inside", "GET /fb/x HTTP/1.1\r\nHost: app\nX: y\r\n\r\n", 400},
		{"Content-Length and Transfer-Encoding", "POST /fb/x HTTP/1.1\r\nHost: app\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n", 400},
		{"Transfer-Encoding and Content-Length", "POST /fb/x HTTP/1.1\r\nHost: app\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n4\r\nabcd\r\n0\r\n\r\n", 400},
		{"lower-case method", "get /fb/x HTTP/1.1\r\nHost: app\r\n\r\n", 400},
		{"HTTP/2.0 on HTTP/1", "GET /fb/x HTTP/2.0\r\nHost: app\r\n\r\n", 505},
		{"userinfo in Host", "GET /fb/x HTTP/1.1\r\nHost: admin:hunter2@internal\r\n\r\n", 400},
		{"userinfo in the target", "GET http://admin:hunter2@internal/fb/x HTTP/1.1\r\nHost: app\r\n\r\n", 400},
		{"HTTP/1.1 without Host", "GET /fb/x HTTP/1.1\r\n\r\n", 400},
		{"dot segment", "GET /fb/../admin HTTP/1.1\r\nHost: app\r\n\r\n", 400},
		{"encoded dot segment", "GET /fb/%2e%2e/admin HTTP/1.1\r\nHost: app\r\n\r\n", 400},
		{"dot segment behind an encoded slash", "GET /fb/..%2fadmin HTTP/1.1\r\nHost: app\r\n\r\n", 400},
		{"dot segment after a path parameter", "GET /fb;jsessionid=1/../../admin HTTP/1.1\r\nHost: app\r\n\r\n", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := served.Load()
			start := time.Now()
			statuses, _, bad := sendHostile(t, addr, []byte(tc.raw))
			if bad != "" {
				t.Fatal(bad)
			}
			if len(statuses) == 0 || statuses[0] != tc.status {
				t.Fatalf("%q: answers %v, want %d", tc.raw, statuses, tc.status)
			}
			if d := time.Since(start); d > scaled(5*time.Second) {
				t.Errorf("%q: answered after %v, want at once (read_timeout is 20s)", tc.raw, d)
			}
			if got := served.Load() - before; got != 0 {
				t.Errorf("%q reached the member %d times", tc.raw, got)
			}
		})
	}
	// A client that keeps its connection open after a bare-LF head is answered at once
	// too (fasthttp alone waits for a CRLFCRLF until read_timeout).
	for _, raw := range []string{"GET /fb/x HTTP/1.1\nHost: app\n\n", "GET /fb/x HTTP/1.1\r\nHost: app\n\r\n"} {
		start := time.Now()
		c := dialRaw(t, addr)
		c.conn.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
		io.WriteString(c.conn, raw)
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil || resp.StatusCode != 400 {
			t.Errorf("%q on an open connection: %v %v after %v, want 400 at once", raw, resp, err, time.Since(start))
		}
	}
	// The head scan looks at heads only: a body with bare LFs and a 100-continue
	// exchange go through.
	for _, raw := range []string{
		"POST /fb/x HTTP/1.1\r\nHost: app\r\nContent-Length: 6\r\n\r\na\nb\n\nc",
		"POST /fb/x HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\na\n\nb",
		"\r\nGET /fb/x HTTP/1.1\r\nHost: app\r\n\r\n",
	} {
		statuses, members, bad := sendHostile(t, addr, []byte(raw))
		if bad != "" || members != 1 || len(statuses) != 1 || statuses[0] != 200 {
			t.Errorf("%q: answers %v (%d from the member) %s; want one 200", raw, statuses, members, bad)
		}
	}
}

// path_normalization: forward keeps today's byte-exact behaviour; an absolute-form
// target is routed and sent by its authority, in origin-form.
func TestPathForwardAndAbsoluteForm(t *testing.T) {
	var served atomic.Int64
	member := startFastMember(t, func(ctx *fasthttp.RequestCtx) {
		served.Add(1)
		fmt.Fprintf(ctx, "uri=%s host=%s", ctx.Request.Header.RequestURI(), ctx.Request.Header.Host())
	})
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("n1", member)))
	cfg.Server.PathNormalization = "forward"
	_, addr := startGateway(t, cfg, zerolog.Nop())
	if resp, body := rawRoundTrip(t, addr, "GET /fb/%2e%2e/admin HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 || body != "uri=/fb/%2e%2e/admin host=app" {
		t.Errorf("forward: %d %q, want the path byte for byte", resp.StatusCode, body)
	}
	if resp, body := rawRoundTrip(t, addr, "GET http://other.example:81/fb/x?q=1 HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 || body != "uri=/fb/x?q=1 host=other.example:81" {
		t.Errorf("absolute form: %d %q, want origin-form with the target's authority as Host", resp.StatusCode, body)
	}

	cfg = gwConfig(gwGroup("fb", "/fb", gwMember("n1", member)))
	cfg.Server.RejectEncodedSlashes = true
	_, addr = startGateway(t, cfg, zerolog.Nop())
	if resp, _ := rawRoundTrip(t, addr, "GET /fb/a%2Fb HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 400 {
		t.Errorf("encoded slash with reject_encoded_slashes: %d, want 400", resp.StatusCode)
	}
}

// A member that closes mid-body: the access line says how many bytes went out and
// that the body was cut short, at warn level, and the member's health hears of it.
func TestTruncatedResponseLogged(t *testing.T) {
	member := startRawMember(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 1000))
		c.Close()
	})
	var buf syncBuffer
	s, addr := startGateway(t, gwConfig(gwGroup("g", "/", gwMember("n1", member))), zerolog.New(&buf))
	conn := dialRaw(t, addr)
	conn.conn.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
	io.WriteString(conn.conn, "GET /big HTTP/1.1\r\nHost: app\r\n\r\n")
	got, _ := io.ReadAll(conn.br)
	// fasthttp aborts the answer: what it had buffered (here all of it) is not sent, the
	// connection is closed, and the client sees no complete response.
	if resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(got))), nil); err == nil {
		if b, err := io.ReadAll(resp.Body); err == nil {
			t.Fatalf("client got a complete answer of %d bytes to a cut body", len(b))
		}
	}
	var line map[string]any
	waitFor(t, "the access line", func() bool {
		lines, _ := accessLines(t, &buf)
		for _, l := range lines {
			if l["path"] == "/big" {
				line = l
				return true
			}
		}
		return false
	})
	if line["truncated"] != true || line["bytes"] != float64(1000) || line["level"] != "warn" {
		t.Errorf("access line %v, want truncated true, bytes 1000 (passed on to the client's connection), level warn", line)
	}
	if f := tableMember(t, s, "n1").State.Failures.Load(); f != 1 {
		t.Errorf("member failures %d, want 1 (it closed mid-body)", f)
	}
}

// A HEAD answer keeps the member's Content-Length.
func TestHeadKeepsContentLength(t *testing.T) {
	member := startFastMember(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString(strings.Repeat("y", 1234))
	})
	_, addr := startGateway(t, gwConfig(gwGroup("g", "/", gwMember("n1", member))), zerolog.Nop())
	conn := dialRaw(t, addr)
	conn.conn.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
	io.WriteString(conn.conn, "HEAD /x HTTP/1.1\r\nHost: app\r\n\r\n")
	resp, err := http.ReadResponse(conn.br, &http.Request{Method: http.MethodHead})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != 1234 {
		t.Errorf("HEAD: %d, Content-Length %d; want 200, 1234", resp.StatusCode, resp.ContentLength)
	}
}

// Absolute-form targets: http and https are sent in origin-form with their authority
// as Host; any other scheme is refused (it would be matched on one path and sent with
// another).
func TestAbsoluteFormTargets(t *testing.T) {
	fb := startFastMember(t, func(ctx *fasthttp.RequestCtx) {
		fmt.Fprintf(ctx, "member=fb uri=%s host=%s", ctx.Request.Header.RequestURI(), ctx.Request.Header.Host())
	})
	root := startFastMember(t, func(ctx *fasthttp.RequestCtx) {
		fmt.Fprintf(ctx, "member=root uri=%s host=%s", ctx.Request.Header.RequestURI(), ctx.Request.Header.Host())
	})
	_, addr := startGateway(t, gwConfig(gwGroup("fb", "/fb", gwMember("fb1", fb)), gwGroup("root", "/", gwMember("r1", root))), zerolog.Nop())
	for _, tc := range []struct {
		target string
		status int
		body   string
	}{
		{"http://app.example/fb/x?q=1", 200, "member=fb uri=/fb/x?q=1 host=app.example"},
		{"HTTPS://app.example:8443/fb/y", 200, "member=fb uri=/fb/y host=app.example:8443"},
		{"http://app.example", 200, "member=root uri=/ host=app.example"},
		{"ftp://app/fb/../admin", 400, ""},
		{"x://app/fb/x", 400, ""},
		{"https://app/fb/../admin", 400, ""},
	} {
		resp, body := rawRoundTrip(t, addr, "GET "+tc.target+" HTTP/1.1\r\nHost: other\r\n\r\n")
		if resp.StatusCode != tc.status || tc.body != "" && body != tc.body {
			t.Errorf("GET %s: %d %q, want %d %q", tc.target, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}

// A client that uploads slower than the member's write timeout is not the member's
// failure: it gets 408 and the member keeps a clean record.
func TestSlowUploadIsNotAMemberFailure(t *testing.T) {
	member := startFastMember(t, func(ctx *fasthttp.RequestCtx) {
		io.Copy(io.Discard, ctx.RequestBodyStream())
		ctx.SetBodyString("member=n1\n")
	})
	g := gwGroup("g", "/", gwMember("n1", member))
	g.Passive.ConsecutiveFailures = 1
	cfg := gwConfig(g)
	cfg.Server.ReadTimeout = 10 * time.Second
	cfg.Client.WriteTimeout = 300 * time.Millisecond
	s, addr := startGateway(t, cfg, zerolog.Nop())
	c := dialRaw(t, addr)
	c.conn.SetDeadline(time.Now().Add(scaled(10 * time.Second)))
	const size = 200 << 10 // past buffer_body_bytes: streamed
	fmt.Fprintf(c.conn, "POST /up HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n", size)
	chunk := strings.Repeat("u", size/8)
	for range 8 {
		if _, err := io.WriteString(c.conn, chunk); err != nil {
			break // the gateway gave up on the upload and closed
		}
		time.Sleep(150 * time.Millisecond) // pacing the upload, not waiting for state
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("slow upload: %v %v, want 408", resp, err)
	}
	assertHealthy(t, s, "after a slow upload")
}

// Heads and bodies in pieces: a Content-Length and Transfer-Encoding head split inside
// a header name is still refused, and the body of a pipelined request that comes after
// its head is not read as a head.
func TestHeadScanAcrossReads(t *testing.T) {
	var served atomic.Int64
	_, addr := startGateway(t, gwConfig(gwGroup("g", "/", gwMember("n1", startFastMember(t, echoMember("n1", &served))))), zerolog.Nop())
	send := func(parts ...string) []int {
		c := dialRaw(t, addr)
		c.conn.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
		for i, p := range parts {
			if i > 0 {
				time.Sleep(50 * time.Millisecond) // separate TCP segments, not a wait for state
			}
			io.WriteString(c.conn, p)
		}
		c.conn.(*net.TCPConn).CloseWrite()
		var statuses []int
		for {
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				return statuses
			}
			io.Copy(io.Discard, resp.Body)
			statuses = append(statuses, resp.StatusCode)
		}
	}
	if got := send("POST /x HTTP/1.1\r\nHost: app\r\nContent-Length: 4\r\nTransfer-", "Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"); len(got) != 1 || got[0] != 400 {
		t.Errorf("CL and TE split inside a name: answers %v, want [400]", got)
	}
	if got := send("POST /x HTTP/1.1\r\nHost: app\r\nCont", "ent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"); len(got) != 1 || got[0] != 400 {
		t.Errorf("CL split inside its name, then TE: answers %v, want [400]", got)
	}
	if got := send("GET /a HTTP/1.1\r\nHost: app\r\n\r\nPOST /b HTTP/1.1\r\nHost: app\r\nContent-Length: 6\r\n\r\n", "a\n\nbcd"); len(got) != 2 || got[0] != 200 || got[1] != 200 {
		t.Errorf("pipelined POST whose body has bare LFs: answers %v, want [200 200]", got)
	}
}

// An HTTP/1.0 client gets a chunked member answer with a length, not chunked.
func TestHTTP10ClientGetsNoChunked(t *testing.T) {
	member := startFastMember(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) { w.WriteString("hello") }) // chunked
	})
	_, addr := startGateway(t, gwConfig(gwGroup("g", "/", gwMember("n1", member))), zerolog.Nop())
	c := dialRaw(t, addr)
	c.conn.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
	io.WriteString(c.conn, "GET /x HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if len(resp.TransferEncoding) != 0 || string(body) != "hello" || resp.ContentLength != 5 {
		t.Errorf("HTTP/1.0 answer: Transfer-Encoding %v, Content-Length %d, body %q; want no chunking, 5, hello", resp.TransferEncoding, resp.ContentLength, body)
	}
}

// A client that reads its download slowly is not cut at client.read_timeout and does
// not count against the member: the timeout bounds each wait for the member's bytes.
func TestSlowReaderIsNotCut(t *testing.T) {
	const size = 32 << 20 // far more than the socket buffers hold: the gateway waits on the client
	big := []byte(strings.Repeat("d", size))
	member := startFastMember(t, func(ctx *fasthttp.RequestCtx) { ctx.Response.SetBodyRaw(big) })
	timeout := 400 * time.Millisecond
	if raceEnabled {
		timeout = time.Second
	}
	g := gwGroup("g", "/", gwMember("n1", member))
	g.Passive.ConsecutiveFailures = 1
	cfg := gwConfig(g)
	cfg.Client.ReadTimeout = timeout
	var logBuf syncBuffer
	s, addr := startGateway(t, cfg, zerolog.New(&logBuf))
	defer func() {
		if t.Failed() {
			t.Logf("log: %s", logBuf.String())
		}
	}()
	c := dialRaw(t, addr)
	c.conn.SetDeadline(time.Now().Add(scaled(8 * time.Second)))
	io.WriteString(c.conn, "GET /big HTTP/1.1\r\nHost: app\r\n\r\n")
	time.Sleep(3 * timeout) // a client that does not read: three read timeouts
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Fatalf("slow reader got %d of %d bytes (%v)", n, size, err)
	}
	assertHealthy(t, s, "after a slow reader")
}

// An HTTP/1.0 client whose member resets mid-body gets 502, never the error text.
func TestHTTP10ClientMemberResetMidBody(t *testing.T) {
	member := startRawMember(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		c.(*net.TCPConn).SetLinger(0)
		c.Close() // a reset, mid-body
	})
	_, addr := startGateway(t, gwConfig(gwGroup("g", "/", gwMember("n1", member))), zerolog.Nop())
	resp, body := rawRoundTrip(t, addr, "GET /x HTTP/1.0\r\nHost: app\r\n\r\n")
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, "127.0.0.1") {
		t.Errorf("HTTP/1.0 client, member reset mid-body: %d %q; want 502 without internal text", resp.StatusCode, body)
	}
}

// startRawMember is a member that reads one request per connection and then lets
// answer write whatever bytes it likes (a cut body, a reset); it returns the address.
func startRawMember(t *testing.T, answer func(c net.Conn)) string {
	t.Helper()
	ln := listenLoopback(t)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					c.Close()
					return
				}
				answer(c)
			}()
		}
	}()
	return ln.Addr().String()
}
