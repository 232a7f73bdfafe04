package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/valyala/fasthttp"
)

// startLimitsAdmin serves one group with the admin listener on, after edit has changed
// the config; it returns the client address and the admin base URL.
func startLimitsAdmin(t *testing.T, token string, edit func(*config.Config)) (string, string) {
	t.Helper()
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("Node1", startFastMember(t, idMember("Node1")))))
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Token = token
	if edit != nil {
		edit(cfg)
	}
	s, addr := startGateway(t, cfg, zerolog.Nop())
	s.mu.Lock()
	admin := s.listeners[len(s.listeners)-1].Addr().String()
	s.mu.Unlock()
	return addr, "http://" + admin
}

// adminGetHost sends GET url with the given Host header (and token, if any).
func adminGetHost(t *testing.T, url, host, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, body := doHTTP(t, newHTTPClient(t), req)
	return resp.StatusCode, body
}

// The index of the profiles, /debug/pprof/, was 404 (fasthttp's pprofhandler refuses
// every path that ends in a slash); it answers now, behind the same token as the
// profiles.
func TestAdminPprofIndex(t *testing.T) {
	_, admin := startLimitsAdmin(t, "s3cret", nil)
	if code, body := adminDo(t, "GET", admin+"/debug/pprof/", "", ""); code != 401 {
		t.Fatalf("GET /debug/pprof/ without token = %d %q, want 401", code, body)
	}
	if code, body := adminDo(t, "GET", admin+"/debug/pprof/", "wrong", ""); code != 401 {
		t.Fatalf("GET /debug/pprof/ with a wrong token = %d %q, want 401", code, body)
	}
	code, body := adminDo(t, "GET", admin+"/debug/pprof/", "s3cret", "")
	if code != 200 || !strings.Contains(body, "goroutine") || !strings.Contains(body, "heap") {
		t.Fatalf("GET /debug/pprof/ = %d %q, want 200 with the list of profiles", code, trimForLog(body))
	}
	if code, body := adminDo(t, "GET", admin+"/debug/pprof/heap?debug=1", "s3cret", ""); code != 200 || !strings.Contains(body, "heap profile") {
		t.Fatalf("GET /debug/pprof/heap?debug=1 = %d %q, want 200 with a heap profile", code, trimForLog(body))
	}
}

// serverHeaders returns every Server header of resp.
func serverHeaders(resp *http.Response) []string { return resp.Header.Values("Server") }

// The gateway's own answers (404, 400 from fasthttp's parser through the ErrorHandler,
// 502) carry server.server_header, or no Server header when it is "" (the default); a
// member's answer keeps its own Server header, or its lack of one.
func TestServerHeader(t *testing.T) {
	named := func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetServer("member-srv/1.0")
		ctx.SetBodyString("named\n")
	}
	anonymous := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "anonymous\n") })
	for _, tc := range []struct {
		name, header string
		want         []string // the Server headers of the gateway's own answers
		anon         []string // those of a member's answer without one
	}{
		{"default", "", nil, nil},
		// fasthttp's Name fills in a Server header that an answer lacks.
		{"configured", "edge", []string{"edge"}, []string{"edge"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gwConfig(
				gwGroup("named", "/named", gwMember("n1", startFastMember(t, named))),
				gwGroup("anon", "/anon", gwMember("a1", startHTTPMember(t, anonymous))),
				gwGroup("gone", "/gone", gwMember("g1", closedAddr(t))),
			)
			cfg.Server.ServerHeader = tc.header
			_, addr := startGateway(t, cfg, zerolog.Nop())
			for _, c := range []struct {
				what, raw string
				status    int
				want      []string
			}{
				{"member with a Server header", "GET /named/x HTTP/1.1\r\nHost: app\r\n\r\n", 200, []string{"member-srv/1.0"}},
				{"member without one", "GET /anon/x HTTP/1.1\r\nHost: app\r\n\r\n", 200, tc.anon},
				{"no group (404)", "GET /nowhere HTTP/1.1\r\nHost: app\r\n\r\n", 404, tc.want},
				{"unparsable request (400)", "GET /named/x HTTP/1.1\r\nHost: app\r\nContent-Length: abc\r\n\r\n", 400, tc.want},
				{"member unreachable (502)", "GET /gone/x HTTP/1.1\r\nHost: app\r\n\r\n", 502, tc.want},
			} {
				resp, body := rawRoundTrip(t, addr, c.raw)
				if resp.StatusCode != c.status {
					t.Fatalf("%s: status %d %q, want %d", c.what, resp.StatusCode, body, c.status)
				}
				if got := serverHeaders(resp); strings.Join(got, "|") != strings.Join(c.want, "|") {
					t.Fatalf("%s: Server headers %q, want %q", c.what, got, c.want)
				}
			}
		})
	}
}

// The admin listener answers only Host values a DNS-rebinding page cannot send: IP
// literals, localhost and the names in admin.hosts. Anything else is 421 on every
// path, before the token is looked at.
func TestAdminHostCheck(t *testing.T) {
	_, admin := startLimitsAdmin(t, "s3cret", func(cfg *config.Config) {
		cfg.Admin.Hosts = []string{"Admin.Example"}
	})
	port := admin[strings.LastIndexByte(admin, ':')+1:]
	paths := []string{"/api/groups", "/status", "/metrics", "/healthz", "/debug/pprof/goroutine?debug=1"}
	for _, host := range []string{
		"evil.example", "evil.example:" + port, "localhost.evil.example", "127.0.0.1.evil.example",
		"admin.example.evil", "other.example:" + port, "localhost.", "0x7f000001",
	} {
		for _, path := range paths {
			code, body := adminGetHost(t, admin+path, host, "s3cret")
			if code != fasthttp.StatusMisdirectedRequest || len(body) > 200 {
				t.Fatalf("GET %s with Host %q = %d %q, want 421 with a short body", path, host, code, trimForLog(body))
			}
		}
	}
	// Malformed values: fasthttp's parser may refuse them first (400).
	for _, host := range []string{"::1", "[::1", "127.0.0.1:x", "[::1]x", "[evil.example]"} {
		if code, body := adminGetHost(t, admin+"/api/groups", host, ""); code != fasthttp.StatusMisdirectedRequest && code != fasthttp.StatusBadRequest {
			t.Fatalf("GET /api/groups with Host %q = %d %q, want 421 (or 400)", host, code, trimForLog(body))
		}
	}
	for _, host := range []string{
		"127.0.0.1:" + port, "127.0.0.1", "10.1.2.3:80", "[::1]:" + port, "[::1]",
		"localhost", "LocalHost:" + port, "admin.example", "ADMIN.example:" + port,
	} {
		for _, path := range paths {
			if code, body := adminGetHost(t, admin+path, host, "s3cret"); code != 200 {
				t.Fatalf("GET %s with Host %q = %d %q, want 200", path, host, code, trimForLog(body))
			}
		}
	}
}

// tryGet sends a keep-alive GET on c and returns the status, or the error.
func tryGet(c net.Conn, br *bufio.Reader, path string) (int, error) {
	c.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// server.max_conns_per_ip: the third concurrent connection from 127.0.0.1 is refused
// while the first two keep working, and a slot frees when one of them closes.
func TestMaxConnsPerIP(t *testing.T) {
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("Node1", startFastMember(t, idMember("Node1")))))
	cfg.Server.MaxConnsPerIP = 2
	_, addr := startGateway(t, cfg, zerolog.Nop())
	c1, c2 := dialRaw(t, addr), dialRaw(t, addr)
	for i, c := range []*rawConn{c1, c2} {
		if resp, body := c.roundTrip("GET /fb/x HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("connection %d: %d %q, want 200", i+1, resp.StatusCode, body)
		}
	}
	c3, err := net.DialTimeout("tcp", addr, scaled(5*time.Second))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c3.Close()
	// A refused connection gets 429 and is closed; reading it may also meet the close
	// (or a reset, as the request crossed it) first.
	if code, err := tryGet(c3, bufio.NewReader(c3), "/fb/x"); err == nil && code != fasthttp.StatusTooManyRequests {
		t.Fatalf("third connection from one address: %d, want 429 or the connection closed", code)
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third connection from one address: no answer and not closed (%v)", err)
	}
	for i, c := range []*rawConn{c1, c2} {
		if resp, body := c.roundTrip("GET /fb/y HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("connection %d after the refusal: %d %q, want 200", i+1, resp.StatusCode, body)
		}
	}
	c1.conn.Close()
	waitFor(t, "a new connection once one of two has closed", func() bool {
		c, err := net.DialTimeout("tcp", addr, scaled(5*time.Second))
		if err != nil {
			return false
		}
		defer c.Close()
		code, err := tryGet(c, bufio.NewReader(c), "/fb/z")
		return err == nil && code == 200
	})
}

// slowHead opens a connection, optionally serves one request on it, then sends the
// start of a request head and one more header byte every 100ms until the gateway
// answers or closes. It returns the status (0 if the connection was closed without
// one) and how long the gateway took from the first byte of the slow head.
func slowHead(t *testing.T, addr string, keepAliveFirst bool) (int, time.Duration) {
	t.Helper()
	c := dialRaw(t, addr)
	if keepAliveFirst {
		if resp, body := c.roundTrip("GET /fb/first HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("first request: %d %q, want 200", resp.StatusCode, body)
		}
	}
	c.conn.SetDeadline(time.Now().Add(6 * time.Second))
	start := time.Now()
	if _, err := io.WriteString(c.conn, "GET /fb/slow HTTP/1.1\r\nHost: app\r\nX-Slow: "); err != nil {
		t.Fatalf("writing the request line: %v", err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond) // the client's pace, not a wait for state
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := c.conn.Write([]byte("a")); err != nil {
					return
				}
			}
		}
	}()
	resp, err := http.ReadResponse(c.br, nil)
	took := time.Since(start)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a slow head was neither answered nor closed within %v", took)
	}
	if err != nil {
		return 0, took // closed (or reset while the client was still writing)
	}
	resp.Body.Close()
	return resp.StatusCode, took
}

// server.header_timeout cuts a slowloris head long before server.read_timeout, on a
// new connection and on a keep-alive one, while a body slower than header_timeout
// still has read_timeout, and the idle wait between requests stays idle_timeout.
func TestHeaderTimeout(t *testing.T) {
	start := func(t *testing.T, header, read time.Duration) string {
		t.Helper()
		echo := func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/plain")
			ctx.SetBodyString("body=" + string(ctx.PostBody()) + "\n")
		}
		cfg := gwConfig(gwGroup("fb", "/fb", gwMember("Node1", startFastMember(t, echo))))
		cfg.Server.HeaderTimeout = header
		cfg.Server.ReadTimeout = read
		_, addr := startGateway(t, cfg, zerolog.Nop())
		return addr
	}
	const header, read = 300 * time.Millisecond, 10 * time.Second
	const bound = 5 * time.Second // well below read_timeout, far above header_timeout
	t.Run("slow head", func(t *testing.T) {
		addr := start(t, header, read)
		for _, keepAlive := range []bool{false, true} {
			status, took := slowHead(t, addr, keepAlive)
			if status != 0 && status != fasthttp.StatusRequestTimeout {
				t.Fatalf("slow head (after a keep-alive request: %v): status %d, want 408 or the connection closed", keepAlive, status)
			}
			if took >= bound {
				t.Fatalf("slow head (after a keep-alive request: %v): ended after %v, want well before read_timeout %v", keepAlive, took, read)
			}
		}
	})
	t.Run("slow body", func(t *testing.T) {
		c := dialRaw(t, start(t, header, read))
		c.conn.SetDeadline(time.Now().Add(scaled(10 * time.Second)))
		if _, err := io.WriteString(c.conn, "POST /fb/x HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\n"); err != nil {
			t.Fatalf("writing the head: %v", err)
		}
		tick := time.NewTicker(200 * time.Millisecond) // five pieces over 1s: the client's pace
		defer tick.Stop()
		for _, piece := range []string{"ab", "cd", "ef", "gh", "ij"} {
			<-tick.C
			if _, err := io.WriteString(c.conn, piece); err != nil {
				t.Fatalf("writing the body: %v", err)
			}
		}
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("a body slower than header_timeout: %v, want 200", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "body=abcdefghij\n" {
			t.Fatalf("a body slower than header_timeout: %d %q, want 200 body=abcdefghij", resp.StatusCode, body)
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c := dialRaw(t, start(t, header, read))
		if resp, body := c.roundTrip("GET /fb/1 HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("first request: %d %q, want 200", resp.StatusCode, body)
		}
		// The time under test: three header_timeouts of idle connection.
		time.Sleep(3 * header)
		if resp, body := c.roundTrip("GET /fb/2 HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("request after %v idle: %d %q, want 200 (the idle wait is idle_timeout)", 3*header, resp.StatusCode, body)
		}
	})
	t.Run("cut to read_timeout", func(t *testing.T) {
		addr := start(t, time.Hour, header)
		status, took := slowHead(t, addr, false)
		if status != 0 && status != fasthttp.StatusRequestTimeout {
			t.Fatalf("slow head: status %d, want 408 or the connection closed", status)
		}
		if took >= bound {
			t.Fatalf("slow head with header_timeout 1h, read_timeout %v: ended after %v", header, took)
		}
	})
}
