package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strconv"
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

// sessionCookie returns the JSESSIONID a response sets, or "".
func sessionCookie(resp *http.Response) string {
	for _, c := range resp.Cookies() {
		if c.Name == "JSESSIONID" {
			return c.Value
		}
	}
	return ""
}

// startDemoMembers starts demo members (id, clone) and stops them at cleanup.
func startDemoMembers(t *testing.T, idClone ...string) []*demo.Member {
	t.Helper()
	var ms []*demo.Member
	for i := 0; i+1 < len(idClone); i += 2 {
		m, err := demo.Start(demo.Options{ID: idClone[i], Route: idClone[i+1], HealthPath: "/fb/healthcheck"})
		if err != nil {
			t.Fatalf("demo.Start(%q): %v", idClone[i], err)
		}
		t.Cleanup(func() { m.Close() })
		ms = append(ms, m)
	}
	return ms
}

var webSphereCookie = regexp.MustCompile(`^0000[A-Za-z0-9_-]{23}:(Node1|Node2)$`)

func TestProxyWebSphereRoutes(t *testing.T) {
	dm := startDemoMembers(t, "m1", "Node1", "m2", "Node2")
	cfg := gwConfig(gwGroup("fb", "/fb",
		routed(config.NewMember("m1", dm[0].Addr()), "Node1"),
		routed(config.NewMember("m2", dm[1].Addr()), "Node2")))
	s, addr := startGateway(t, cfg, zerolog.Nop())
	c := newHTTPClient(t)
	url := "http://" + addr + "/fb/app"

	t.Run("issued id sticks", func(t *testing.T) {
		seen := map[string]bool{}
		for range 2 { // round robin: one session on each member
			resp, body := httpGet(t, c, url, "")
			id := sessionCookie(resp)
			m := webSphereCookie.FindStringSubmatch(id)
			if m == nil {
				t.Fatalf("Set-Cookie JSESSIONID=%q, want 0000<23 chars>:<clone>", id)
			}
			member := bodyField(body, "member")
			if clone := bodyField(body, "clone"); clone != m[1] {
				t.Fatalf("session %q issued by clone %q", id, clone)
			}
			seen[member] = true
			for n := 2; n <= 4; n++ {
				_, body := httpGet(t, c, url, id)
				if got := bodyField(body, "member"); got != member {
					t.Fatalf("request %d with %q went to %q, want %q", n, id, got, member)
				}
				if got := bodyField(body, "counter"); got != strconv.Itoa(n) {
					t.Fatalf("request %d with %q: counter=%s, want %d", n, id, got, n)
				}
			}
		}
		if len(seen) != 2 {
			t.Errorf("keyless requests reached %v, want both members", seen)
		}
	})

	cases := []struct {
		name   string
		clones string
		down   []string
		want   string
	}{
		{"first clone Node2", ":Node2:Node1", nil, "m2"},
		{"first clone Node1", ":Node1:Node2", nil, "m1"},
		{"first clone down goes to next clone", ":Node2:Node1", []string{"m2"}, "m1"},
		{"plus separators", ":Node2+Node1", nil, "m2"},
		{"plus separators, first clone down", ":Node2+Node1", []string{"m2"}, "m1"},
		{"plus only", "+Node1+Node2", []string{"m1"}, "m2"},
		{"percent-encoded colons", "%3ANode2%3ANode1", nil, "m2"},
		{"unknown clone skipped", ":Node9:Node1", nil, "m1"},
		{"single clone down moves", ":Node1", []string{"m1"}, "m2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, id := range tc.down {
				setDown(t, s, id)
			}
			for i := range 4 {
				key := fmt.Sprintf("0000ABCDEFGHIJKLMNOPQRSTU%02d%s", i, tc.clones)
				_, body := httpGet(t, c, url, key)
				if got := bodyField(body, "member"); got != tc.want {
					t.Errorf("JSESSIONID=%s went to %q, want %q", key, got, tc.want)
				}
			}
		})
	}
}

// tomcatMember issues <32 hex>.<route> to requests without a session and answers
// "member=<id>".
func tomcatMember(id, route string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := r.Cookie("JSESSIONID"); err != nil {
			var b [16]byte
			rand.Read(b[:])
			http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: strings.ToUpper(hex.EncodeToString(b[:])) + "." + route, Path: "/"})
		}
		fmt.Fprintf(w, "member=%s\n", id)
	})
}

var tomcatCookie = regexp.MustCompile(`^[0-9A-F]{32}\.(jvm[123])$`)

func TestProxyTomcatRoutes(t *testing.T) {
	for _, format := range []string{"tomcat", "auto"} {
		t.Run(format, func(t *testing.T) {
			var members []config.Member
			for i := 1; i <= 3; i++ {
				id, route := "t"+strconv.Itoa(i), "jvm"+strconv.Itoa(i)
				members = append(members, routed(config.NewMember(id, startHTTPMember(t, tomcatMember(id, route))), route))
			}
			cfg := gwConfig(gwGroup("app", "/app", members...))
			cfg.Session.RouteFormat = format
			_, addr := startGateway(t, cfg, zerolog.Nop())
			c := newHTTPClient(t)
			url := "http://" + addr + "/app/x"

			for range 3 {
				resp, body := httpGet(t, c, url, "")
				id := sessionCookie(resp)
				m := tomcatCookie.FindStringSubmatch(id)
				if m == nil {
					t.Fatalf("Set-Cookie JSESSIONID=%q, want <32 hex>.<jvmRoute>", id)
				}
				member := bodyField(body, "member")
				if "jvm"+member[1:] != m[1] {
					t.Fatalf("member %q issued %q", member, id)
				}
				for range 3 {
					_, body := httpGet(t, c, url, id)
					if got := bodyField(body, "member"); got != member {
						t.Fatalf("JSESSIONID=%s went to %q, want %q", id, got, member)
					}
				}
			}
			for i := 1; i <= 3; i++ {
				want := "t" + strconv.Itoa(i)
				for j := range 4 {
					key := fmt.Sprintf("%032X.jvm%d", j*7919+i, i)
					if j == 3 {
						key = "abc.def.jvm" + strconv.Itoa(i) // the route follows the last dot
					}
					_, body := httpGet(t, c, url, key)
					if got := bodyField(body, "member"); got != want {
						t.Errorf("JSESSIONID=%s went to %q, want %q", key, got, want)
					}
				}
			}
		})
	}
}

// echoURIMember answers "member=<id> host=<Host> uri=<raw request target>".
func echoURIMember(id string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBodyString("member=" + id + " host=" + string(ctx.Request.Header.Host()) +
			" uri=" + string(ctx.Request.Header.RequestURI()) + "\n")
	}
}

func TestProxyURLRewriting(t *testing.T) {
	cfg := gwConfig(
		gwGroup("fb", "/fb",
			gwMember("Node1", startFastMember(t, echoURIMember("Node1"))),
			gwMember("Node2", startFastMember(t, echoURIMember("Node2")))),
		gwGroup("root", "/", gwMember("root", startFastMember(t, echoURIMember("root")))),
	)
	// Byte-exact forwarding of dot segments is path_normalization: forward; the default
	// refuses them (TestRefusedRequests).
	cfg.Server.PathNormalization = "forward"
	_, addr := startGateway(t, cfg, zerolog.Nop())

	cases := []struct {
		name, uri, want string
	}{
		{"path parameter", "/fb/page;jsessionid=0000abc:Node2?x=1", "Node2"},
		{"path parameter Node1", "/fb/page;jsessionid=0000abc:Node1?x=1", "Node1"},
		{"upper-case parameter name", "/fb/page;JSESSIONID=0000abc:Node2", "Node2"},
		{"parameter on the prefix", "/fb;jsessionid=0000abc:Node2", "Node2"},
		{"among other parameters", "/fb/x;a=1;jsessionid=0000abc:Node2;b=2/y?q", "Node2"},
		{"double slash and dot segments", "/fb//a/./b/../c;jsessionid=0000abc:Node2?x=1", "Node2"},
		{"encoded slash and dots", "/fb/a%2Fb/%2e%2e/..%2F..%2fc;jsessionid=0000abc:Node1?p=%2F", "Node1"},
		{"dot dot above the prefix", "/fb/../../etc;jsessionid=0000abc:Node2", "Node2"},
		{"unusual query", "/fb/x;jsessionid=0000abc:Node1?a=1&&b=&=c&d=%zz&e=a+b&f=;g=h?i=j/k&u=http://other.example/p", "Node1"},
		{"query parameter", "/fb/x?jsessionid=0000abc:Node2", "Node2"},
		{"leading double slash with a URL in the query", "//other.example/x?u=http://evil.example/", "root"},
	}
	const host = "Gw.Example.Test:8080"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawRoundTrip(t, addr, "GET "+tc.uri+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: status %d, body %q", tc.uri, resp.StatusCode, body)
			}
			if got := bodyField(body, "member"); got != tc.want {
				t.Errorf("GET %s went to %q, want %q", tc.uri, got, tc.want)
			}
			if got := bodyField(body, "uri"); got != tc.uri {
				t.Errorf("GET %s: member saw request target %q, want it byte-exact", tc.uri, got)
			}
			if got := bodyField(body, "host"); got != host {
				t.Errorf("GET %s: member saw Host %q, want %q", tc.uri, got, host)
			}
		})
	}
}

// learnMember issues opaque session ids: as a cookie to requests without one, or, on
// /fb/login, in a rewritten Location. It answers "member=<id>".
func learnMember(id string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/fb/login":
			w.Header().Set("Location", "/fb/next;jsessionid="+newUUID())
			w.WriteHeader(http.StatusFound)
		case strings.Contains(r.RequestURI, ";jsessionid="):
		default:
			if _, err := r.Cookie("JSESSIONID"); err != nil {
				http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: newUUID(), Path: "/"})
			}
		}
		fmt.Fprintf(w, "member=%s\n", id)
	})
}

func TestProxyLearnedSessions(t *testing.T) {
	for _, affinity := range [][]string{{"learned", "hash"}, {"route", "learned", "hash"}} {
		t.Run(strings.Join(affinity, ","), func(t *testing.T) {
			cfg := gwConfig(gwGroup("fb", "/fb",
				gwMember("m1", startHTTPMember(t, learnMember("m1"))),
				gwMember("m2", startHTTPMember(t, learnMember("m2")))))
			cfg.Session.Affinity = affinity
			cfg.Session.Balance = "round_robin"
			s, addr := startGateway(t, cfg, zerolog.Nop())
			c := newHTTPClient(t)
			g := s.Table().Group("fb")
			hashed := func(key string) string {
				return g.Members[g.Rendezvous(router.HashKey([]byte(key)))].ID
			}

			t.Run("set-cookie", func(t *testing.T) {
				type session struct{ key, member string }
				var sessions []session
				against := 0 // sessions whose hash member is not the issuing one
				for len(sessions) < 8 || against < 2 {
					if len(sessions) == 64 {
						t.Fatalf("64 sessions, %d of them against hashing: want at least 2", against)
					}
					resp, body := httpGet(t, c, "http://"+addr+"/fb/start", "")
					key := sessionCookie(resp)
					if key == "" {
						t.Fatalf("no JSESSIONID issued; body %q", body)
					}
					m := bodyField(body, "member")
					sessions = append(sessions, session{key, m})
					if hashed(key) != m {
						against++
					}
				}
				s.Cache().Wait()
				for _, ss := range sessions {
					for range 3 {
						_, body := httpGet(t, c, "http://"+addr+"/fb/page", ss.key)
						if got := bodyField(body, "member"); got != ss.member {
							t.Fatalf("JSESSIONID=%s (issued by %s, hashed to %s) went to %q", ss.key, ss.member, hashed(ss.key), got)
						}
					}
				}
			})

			t.Run("location", func(t *testing.T) {
				against := 0
				for i := 0; against < 2; i++ {
					if i == 64 {
						t.Fatalf("64 logins, %d of them against hashing: want at least 2", against)
					}
					resp, body := httpGet(t, c, "http://"+addr+"/fb/login", "")
					loc := resp.Header.Get("Location")
					key, ok := strings.CutPrefix(loc, "/fb/next;jsessionid=")
					if resp.StatusCode != http.StatusFound || !ok {
						t.Fatalf("login: status %d, Location %q", resp.StatusCode, loc)
					}
					m := bodyField(body, "member")
					if hashed(key) == m {
						continue
					}
					against++
					s.Cache().Wait()
					for range 3 {
						_, body := httpGet(t, c, "http://"+addr+loc, "")
						if got := bodyField(body, "member"); got != m {
							t.Fatalf("GET %s (issued by %s) went to %q", loc, m, got)
						}
					}
				}
			})
		})
	}
}

func TestProxyHashStable(t *testing.T) {
	ids := []string{"h1", "h2", "h3"}
	var members []config.Member
	for _, id := range ids {
		members = append(members, gwMember(id, startFastMember(t, idMember(id))))
	}
	cfg := gwConfig(gwGroup("app", "/app", members...))
	cfg.Session.Affinity = []string{"hash"}
	s, addr := startGateway(t, cfg, zerolog.Nop())
	c := newHTTPClient(t)

	const keys = 300
	round := func() []string {
		t.Helper()
		got := make([]string, keys)
		for i := range got {
			_, body := httpGet(t, c, "http://"+addr+"/app/x", fmt.Sprintf("sess-%03d-opaque", i))
			got[i] = bodyField(body, "member")
		}
		return got
	}
	first := round()
	count := map[string]int{}
	for _, m := range first {
		count[m]++
	}
	for _, id := range ids {
		if count[id] < keys/6 {
			t.Errorf("member %s got %d of %d keys: %v", id, count[id], keys, count)
		}
	}
	for r := 2; r <= 3; r++ {
		for i, m := range round() {
			if m != first[i] {
				t.Errorf("round %d: key %d went to %s, first round to %s", r, i, m, first[i])
			}
		}
	}

	setDown(t, s, "h2")
	moved := 0
	for i, m := range round() {
		switch {
		case m == "h2":
			t.Errorf("key %d went to h2, which is down", i)
		case first[i] == "h2":
			moved++
		case m != first[i]:
			t.Errorf("key %d moved from %s to %s although %s is up", i, first[i], m, first[i])
		}
	}
	if moved != count["h2"] {
		t.Errorf("%d keys moved, want the %d of h2", moved, count["h2"])
	}
}

// slowMember answers after 2s (or when the test ends).
func slowMember(t *testing.T) string {
	t.Helper()
	done := make(chan struct{})
	addr := startHTTPMember(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-done:
		}
		io.WriteString(w, "late\n")
	}))
	t.Cleanup(func() { close(done) }) // runs before the member's Close
	return addr
}

func TestProxyStatusCodes(t *testing.T) {
	okAddr := startFastMember(t, idMember("ok"))
	cfg := gwConfig(
		gwGroup("ok", "/ok", gwMember("ok", okAddr)),
		withHosts(gwGroup("hosted", "/h", gwMember("hosted", startFastMember(t, idMember("hosted")))), "app.example.com"),
		gwGroup("down", "/down", gwMember("down1", startFastMember(t, idMember("down1"))), gwMember("down2", okAddr)),
		gwGroup("dead", "/dead", gwMember("dead", closedAddr(t))),
		gwGroup("slow", "/slow", gwMember("slow", slowMember(t))),
		gwGroup("big", "/big", gwMember("big", startHTTPMember(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Big", strings.Repeat("h", 40000)) // past the member client's read buffer
		})))),
	)
	cfg.Client.ReadTimeout = scaled(200 * time.Millisecond)
	cfg.Server.MaxHeaderBytes = 4096
	cfg.Server.MaxBodyBytes = 1000
	cfg.Server.BufferBodyBytes = 4096
	s, addr := startGateway(t, cfg, zerolog.Nop())
	setDown(t, s, "down1")
	setDown(t, s, "down2")

	get := func(path, host string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
	}
	cases := []struct {
		name   string
		raw    string
		status int
		body   string
	}{
		{"host matches", get("/h/x", "app.example.com"), 200, "member=hosted\n"},
		{"no group for path", get("/nowhere", "gw.test"), 404, "404 Not Found: no target group for this host and path\n"},
		{"no group for host", get("/h/x", "wrong.example.com"), 404, "404 Not Found: no target group for this host and path\n"},
		{"every member down", get("/down/x", "gw.test"), 503, "503 Service Unavailable\n"},
		{"every member down, with a key", "GET /down/x HTTP/1.1\r\nHost: gw.test\r\nCookie: JSESSIONID=0000abc:down1\r\n\r\n", 503, "503 Service Unavailable\n"},
		{"member unreachable", get("/dead/x", "gw.test"), 502, "502 Bad Gateway\n"},
		{"member too slow", get("/slow/x", "gw.test"), 504, "504 Gateway Timeout\n"},
		{"member response head too large", get("/big/x", "gw.test"), 502, "502 Bad Gateway\n"},
		{"request head too large", "GET /ok/x HTTP/1.1\r\nHost: gw.test\r\nX-Big: " + strings.Repeat("a", 8000) + "\r\n\r\n", 431, "431 Request Header Fields Too Large\n"},
		{"body too large", "POST /ok/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1001\r\n\r\n" + strings.Repeat("b", 1001), 413, "413 Request Entity Too Large\n"},
		{"body too large, streamed", "POST /ok/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 6000\r\n\r\n" + strings.Repeat("b", 6000), 413, "413 Request Entity Too Large\n"},
		{"chunked body within limit", "POST /ok/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(1000), 200, "member=ok\n"},
		{"chunked body too large", "POST /ok/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(1001), 413, "413 Request Entity Too Large\n"},
		{"chunked body far too large", "POST /ok/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(100000), 413, "413 Request Entity Too Large\n"},
		{"malformed request line", "GET\r\nHost: gw.test\r\n\r\n", 400, "400 Bad Request\n"},
		{"malformed header", "GET /ok/x HTTP/1.1\r\nHost: gw.test\r\nno colon here\r\n\r\n", 400, "400 Bad Request\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawRoundTrip(t, addr, tc.raw)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tc.status, body)
			}
			if body != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			for _, leak := range []string{"dial", "fasthttp", "127.0.0.1", "error", "i/o", "refused", "deadline"} {
				if strings.Contains(strings.ToLower(body), leak) {
					t.Errorf("body %q shows internal text %q", body, leak)
				}
			}
			resp, body = rawRoundTrip(t, addr, get("/ok/after", "gw.test"))
			if resp.StatusCode != http.StatusOK || body != "member=ok\n" {
				t.Errorf("next request on a new connection: status %d, body %q; want 200 from ok", resp.StatusCode, body)
			}
		})
	}
}

// seen is what hopMember reports of a request.
type seen struct {
	Host   string
	URI    string
	Header http.Header
}

// hopMember reports the request it got as JSON and answers with hop-by-hop headers
// and Connection: close.
func hopMember() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Connection", "close, X-Resp-Private")
		w.Header().Set("X-Resp-Private", "1")
		w.Header().Set("X-Resp-Public", "1")
		json.NewEncoder(w).Encode(seen{Host: r.Host, URI: r.RequestURI, Header: r.Header})
	})
}

func TestProxyHopByHopHeaders(t *testing.T) {
	memberAddr := startHTTPMember(t, hopMember())
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("Node1", memberAddr)))
	cfg.Forwarded.TrustedProxies = []string{"127.0.0.1"} // the prior X-Forwarded-For is kept (TestForwardedHeaders: from others it is not)
	_, addr := startGateway(t, cfg, zerolog.Nop())

	const host = "Front.Example:8443"
	const cookie = `a=1;b="q";  JSESSIONID=0000x:Node1; e=`
	request := func(extra string) string {
		return "GET /fb/hop?x=1 HTTP/1.1\r\n" +
			"Host: " + host + "\r\n" +
			"Connection: keep-alive, X-Private\r\n" +
			"X-Private: 1\r\n" +
			"Keep-Alive: timeout=5\r\n" +
			"Proxy-Authorization: x\r\n" +
			"Te: trailers\r\n" +
			"Upgrade: foo\r\n" +
			"Cookie: " + cookie + "\r\n" +
			"X-Public: 1\r\n" +
			extra + "\r\n"
	}
	hop := []string{"Connection", "X-Private", "Keep-Alive", "Proxy-Authorization", "Te", "Upgrade"}
	decode := func(t *testing.T, body string) seen {
		t.Helper()
		var s seen
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatalf("member answer %q: %v", body, err)
		}
		return s
	}

	// The member sees the hop-by-hop headers when they are sent to it directly, so
	// their absence below is the gateway's doing.
	t.Run("control", func(t *testing.T) {
		_, body := rawRoundTrip(t, memberAddr, request(""))
		s := decode(t, body)
		for _, name := range hop {
			if len(s.Header[name]) == 0 {
				t.Errorf("member did not see %s sent directly: %v", name, s.Header)
			}
		}
	})

	conn := dialRaw(t, addr)
	cases := []struct {
		name, extra, xff string
	}{
		{"no X-Forwarded-For", "", "127.0.0.1"},
		{"prior X-Forwarded-For", "X-Forwarded-For: 1.2.3.4\r\n", "1.2.3.4, 127.0.0.1"},
		{"again on the same connection", "", "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := conn.roundTrip(request(tc.extra))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			s := decode(t, body)
			for _, name := range hop {
				if v, ok := s.Header[name]; ok {
					t.Errorf("member saw %s: %q", name, v)
				}
			}
			if got := s.Header.Get("X-Public"); got != "1" {
				t.Errorf("member saw X-Public %q, want 1", got)
			}
			if got := s.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != tc.xff {
				t.Errorf("X-Forwarded-For = %q, want [%q]", got, tc.xff)
			}
			if got := s.Header.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
				t.Errorf("X-Forwarded-Proto = %q, want [http]", got)
			}
			if got := s.Header.Values("X-Forwarded-Host"); len(got) != 1 || got[0] != host {
				t.Errorf("X-Forwarded-Host = %q, want [%q]", got, host)
			}
			if got := s.Header.Values("Cookie"); len(got) != 1 || got[0] != cookie {
				t.Errorf("Cookie = %q, want [%q] byte-exact", got, cookie)
			}
			if s.URI != "/fb/hop?x=1" {
				t.Errorf("member saw %q, want /fb/hop?x=1", s.URI)
			}
			for _, name := range []string{"Keep-Alive", "Connection", "X-Resp-Private"} {
				if v, ok := resp.Header[name]; ok {
					t.Errorf("client got %s: %q", name, v)
				}
			}
			if resp.Close {
				t.Errorf("client was told to close the connection")
			}
			if got := resp.Header.Get("X-Resp-Public"); got != "1" {
				t.Errorf("client got X-Resp-Public %q, want 1", got)
			}
		})
	}

	t.Run("client asks to close", func(t *testing.T) {
		c := dialRaw(t, addr)
		resp, body := c.roundTrip("GET /fb/hop HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, body %q", resp.StatusCode, body)
		}
		if s := decode(t, body); len(s.Header["Connection"]) != 0 {
			t.Errorf("member saw Connection %q", s.Header["Connection"])
		}
		if !resp.Close {
			t.Errorf("response to Connection: close does not close (header %v)", resp.Header)
		}
		if n, err := c.br.ReadByte(); err != io.EOF {
			t.Errorf("after Connection: close: read %q, %v; want EOF", n, err)
		}
	})
}

// streamMember answers POST with the length and sha256 of the body, and GET
// /fb/download with data (with Content-Length, or chunked with ?chunked).
func streamMember(data []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "len=%d sha=%x te=%s\n", n, h.Sum(nil), strings.Join(r.TransferEncoding, ","))
			return
		}
		if r.URL.Query().Has("chunked") {
			for b := data; len(b) > 0; {
				n := min(len(b), 256<<10)
				w.Write(b[:n])
				w.(http.Flusher).Flush()
				b = b[n:]
			}
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	})
}

// onlyReader hides everything but Read, so net/http does not know the length.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestProxyStreaming(t *testing.T) {
	down := make([]byte, 8<<20)
	rand.Read(down)
	up := down[:5<<20]
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("Node1", startHTTPMember(t, streamMember(down)))))
	cfg.Server.BufferBodyBytes = 64 << 10
	_, addr := startGateway(t, cfg, zerolog.Nop())
	c := newHTTPClient(t)
	upSum := fmt.Sprintf("%x", sha256.Sum256(up))

	uploads := []struct {
		name string
		body io.Reader
		te   string
	}{
		{"content-length", bytes.NewReader(up), ""},
		{"chunked", onlyReader{bytes.NewReader(up)}, "chunked"},
	}
	for _, tc := range uploads {
		t.Run("upload "+tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/fb/upload", tc.body)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := doHTTP(t, c, req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			if got := bodyField(body, "len"); got != strconv.Itoa(len(up)) {
				t.Errorf("member read %s bytes, want %d", got, len(up))
			}
			if got := bodyField(body, "sha"); got != upSum {
				t.Errorf("member body sha256 %s, want %s", got, upSum)
			}
			if got := bodyField(body, "te"); got != tc.te {
				t.Errorf("member saw Transfer-Encoding %q, want %q", got, tc.te)
			}
		})
	}

	downSum := sha256.Sum256(down)
	for _, path := range []string{"/fb/download", "/fb/download?chunked"} {
		t.Run("download "+path, func(t *testing.T) {
			resp, err := c.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			if err != nil {
				t.Fatalf("reading %s: %v after %d bytes", path, err, n)
			}
			if resp.StatusCode != http.StatusOK || n != int64(len(down)) || !bytes.Equal(h.Sum(nil), downSum[:]) {
				t.Errorf("GET %s: status %d, %d bytes (want %d), sha256 match %v", path, resp.StatusCode, n, len(down), bytes.Equal(h.Sum(nil), downSum[:]))
			}
		})
	}
}

func TestProxyDemoFlow(t *testing.T) {
	dm := startDemoMembers(t, "Node1", "Node1", "Node2", "Node2")
	_, addr := startGateway(t, demo.Config("127.0.0.1:0", "", dm...), zerolog.Nop())
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newHTTPClient(t)
	c.Jar = jar
	member := ""
	for n := 1; n <= 10; n++ {
		resp, body := httpGet(t, c, "http://"+addr+"/fb/", "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %d: status %d, body %q", n, resp.StatusCode, body)
		}
		m := bodyField(body, "member")
		if member == "" {
			member = m
		}
		if m != member {
			t.Errorf("GET %d served by %q, earlier ones by %q", n, m, member)
		}
		if got := bodyField(body, "counter"); got != strconv.Itoa(n) {
			t.Errorf("GET %d: counter=%s, want %d (body %q)", n, got, n, body)
		}
	}
	for _, d := range dm {
		want := int64(0)
		if d.ID == member {
			want = 10
		}
		if got := d.Served(); got != want {
			t.Errorf("%s served %d requests, want %d", d.ID, got, want)
		}
	}
}

// accessLines returns the access log lines in buf, decoded.
func accessLines(t *testing.T, buf *syncBuffer) (access []map[string]any, all int) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		all++
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["log"] == "access" {
			access = append(access, m)
		}
	}
	return access, all
}

func TestProxyAccessLog(t *testing.T) {
	var buf syncBuffer
	log := zerolog.New(&buf).Level(zerolog.InfoLevel)
	cfg := gwConfig(
		gwGroup("fb", "/fb", gwMember("Node1", startFastMember(t, idMember("Node1")))),
		gwGroup("dead", "/dead", gwMember("dead", closedAddr(t))),
	)
	_, addr := startGateway(t, cfg, log)

	buf.Reset()
	resp, body := rawRoundTrip(t, addr, "GET /fb/x?y=1 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	var lines []map[string]any
	waitFor(t, "the access line", func() bool { lines, _ = accessLines(t, &buf); return len(lines) > 0 })
	if len(lines) != 1 {
		t.Fatalf("%d access lines for one request: %q", len(lines), buf.String())
	}
	want := map[string]any{
		"level": "info", "method": "GET", "host": "gw.test", "path": "/fb/x", "status": 200.0,
		"group": "fb", "member": "Node1", "affinity": "balanced", "bytes": float64(len(body)),
	}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("access line %s = %v, want %v (line %v)", k, lines[0][k], v, lines[0])
		}
	}
	if _, ok := lines[0]["duration_ms"].(float64); !ok {
		t.Errorf("access line has no numeric duration_ms (milliseconds, unit in the name): %v", lines[0])
	}

	buf.Reset()
	resp, body = rawRoundTrip(t, addr, "GET /dead/x HTTP/1.1\r\nHost: gw.test\r\n\r\n")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, body %q; want 502", resp.StatusCode, body)
	}
	waitFor(t, "the access line", func() bool { lines, _ = accessLines(t, &buf); return len(lines) > 0 })
	lines, all := accessLines(t, &buf)
	if len(lines) != 1 || all != 1 {
		t.Fatalf("502: %d access lines, %d lines in all; want exactly one: %q", len(lines), all, buf.String())
	}
	for k, v := range map[string]any{"level": "error", "status": 502.0, "group": "dead", "member": "dead", "error_kind": "connect"} {
		if lines[0][k] != v {
			t.Errorf("502 access line %s = %v, want %v (line %v)", k, lines[0][k], v, lines[0])
		}
	}
}

// TestProxyShutdownBeforeServe covers a Shutdown that wins the race with Serve (a
// stop signal right at startup): Serve must still return.
func TestProxyShutdownBeforeServe(t *testing.T) {
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("Node1", closedAddr(t))))
	cfg.Admin.Listen = "127.0.0.1:0"
	s, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	lns, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := s.ListenAdmin()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(5 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lns, adminLn) }()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after Shutdown: %v", err)
		}
	case <-time.After(scaled(5 * time.Second)):
		for _, ln := range append(lns, adminLn) {
			ln.Close() // let the stuck Serve end
		}
		<-served
		t.Fatal("Serve after Shutdown did not return")
	}
	for _, ln := range append(lns, adminLn) {
		if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Shutdown", ln.Addr())
		}
	}
}

// chunked encodes n bytes as a chunked body of 700-byte chunks.
func chunked(n int) string {
	var b strings.Builder
	for n > 0 {
		k := min(n, 700)
		fmt.Fprintf(&b, "%x\r\n%s\r\n", k, strings.Repeat("c", k))
		n -= k
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

func routed(m config.Member, route string) config.Member {
	m.Route = route
	return m
}

func withHosts(g config.Group, hosts ...string) config.Group {
	g.Hosts = hosts
	return g
}

// TestLearnedBindingVisibleAtOnce: the request right after the one that issued a
// session, with nothing in between (no cache Wait by the test), stays on the issuer,
// also when many sessions start at once (ristretto applies writes asynchronously).
func TestLearnedBindingVisibleAtOnce(t *testing.T) {
	cfg := gwConfig(gwGroup("fb", "/fb",
		gwMember("m1", startFastMember(t, fastLearnMember("m1"))),
		gwMember("m2", startFastMember(t, fastLearnMember("m2")))))
	_, addr := startGateway(t, cfg, zerolog.Nop())
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.HostClient{Addr: addr}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for range 100 {
				req.Reset()
				req.SetRequestURI("http://gw.test/fb/start")
				if err := c.Do(req, resp); err != nil {
					t.Error(err)
					return
				}
				issuer := string(resp.Body())
				key := string(resp.Header.PeekCookie("JSESSIONID"))
				key = key[len("JSESSIONID="):strings.IndexByte(key, ';')]
				req.Reset()
				req.SetRequestURI("http://gw.test/fb/page")
				req.Header.Set("Cookie", "JSESSIONID="+key)
				if err := c.Do(req, resp); err != nil {
					t.Error(err)
					return
				}
				if string(resp.Body()) != issuer {
					wrong.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Fatalf("%d of 1600 new sessions went to another member on their next request", n)
	}
}

// fastLearnMember issues an opaque JSESSIONID (no route) on /start and answers its id.
func fastLearnMember(id string) fasthttp.RequestHandler {
	var n atomic.Int64
	return func(ctx *fasthttp.RequestCtx) {
		if strings.HasSuffix(string(ctx.Path()), "/start") {
			ctx.Response.Header.Set("Set-Cookie", fmt.Sprintf("JSESSIONID=%s-%d-%x; Path=/", id, n.Add(1), ctx.ID()))
		}
		ctx.SetBodyString(id)
	}
}
