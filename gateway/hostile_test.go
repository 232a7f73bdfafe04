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
		_, m, bad := sendHostile(t, addr, raw)
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
