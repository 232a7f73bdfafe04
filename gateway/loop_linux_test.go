//go:build linux

package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/valyala/fasthttp"
)

var dpUnderTest = config.DataplaneEpoll

// epollConfig is gwConfig with its one listener on the epoll data path.
func epollConfig(groups ...config.Group) *config.Config {
	cfg := gwConfig(groups...)
	cfg.Listeners = []config.Listener{{Address: "127.0.0.1:0", HTTP2: true, Dataplane: dpUnderTest}}
	return cfg
}

// loopEchoMember answers with its id, the method, the path and the request body.
func loopEchoMember(id string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		fmt.Fprintf(ctx, "member=%s method=%s uri=%s body=%s", id, ctx.Method(), ctx.RequestURI(), ctx.PostBody())
	}
}

// The loops serve keep-alive requests themselves: routed sessions stay on their
// member, bodies go through, and nothing is handed over.
func TestEpollServesKeepAlive(t *testing.T) {
	m1 := startFastMember(t, loopEchoMember("n1"))
	m2 := startFastMember(t, loopEchoMember("n2"))
	s, addr := startGateway(t, epollConfig(gwGroup("fb", "/fb", gwMember("n1", m1), gwMember("n2", m2))), zerolog.Nop())
	c := newHTTPClient(t)
	for i := range 100 {
		_, body := httpGet(t, c, "http://"+addr+"/fb/page?i="+strconv.Itoa(i), "0000A:n2")
		if bodyField(body, "member") != "n2" {
			t.Fatalf("request %d: %q, want member n2", i, body)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/fb/form", strings.NewReader("a=1&b=2"))
	req.AddCookie(&http.Cookie{Name: "JSESSIONID", Value: "0000A:n1"})
	if _, body := doHTTP(t, c, req); !strings.Contains(body, "member=n1 method=POST uri=/fb/form body=a=1&b=2") {
		t.Fatalf("POST: %q", body)
	}
	if got := s.stats.loopRequests.Load(); got != 101 {
		t.Errorf("the loops served %d requests, want 101", got)
	}
	for i := range s.stats.handoffs {
		if n := s.stats.handoffs[i].Load(); n != 0 {
			t.Errorf("%d connections handed over (%s), want none", n, handoffNames[i])
		}
	}
}

// Pipelined requests are answered in order on one connection.
func TestEpollPipelined(t *testing.T) {
	m1 := startFastMember(t, loopEchoMember("n1"))
	_, addr := startGateway(t, epollConfig(gwGroup("g", "/", gwMember("n1", m1))), zerolog.Nop())
	c := dialRaw(t, addr)
	c.conn.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
	var b strings.Builder
	for i := range 20 {
		fmt.Fprintf(&b, "GET /p%d HTTP/1.1\r\nHost: app\r\n\r\n", i)
	}
	b.WriteString("POST /last HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n\r\nxyz")
	io.WriteString(c.conn, b.String())
	for i := range 21 {
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		want := fmt.Sprintf("uri=/p%d ", i)
		if i == 20 {
			want = "uri=/last body=xyz"
		}
		if !strings.Contains(string(body), want) {
			t.Fatalf("answer %d: %q, want %q", i, body, want)
		}
	}
}

// Answers of every framing are relayed whole: Content-Length, chunked (with a
// trailer), close-delimited, none (HEAD, 204, 304), and one of 8 MiB to a client that
// reads slowly (the member is read only as fast as the client takes it).
func TestEpollRelaysEveryFraming(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 512<<10) // 8 MiB
	member := startHTTPMember(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			w.Write(big)
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			for i := range 5 {
				fmt.Fprintf(w, "piece%d;", i)
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Sum", "5")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.WriteHeader(http.StatusNotModified)
		default:
			io.WriteString(w, "plain")
		}
	}))
	closer := startRawMember(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
		c.Close()
	})
	cfg := epollConfig(gwGroup("g", "/", gwMember("n1", member)), gwGroup("c", "/close", gwMember("c1", closer)))
	_, addr := startGateway(t, cfg, zerolog.Nop())
	c := newHTTPClient(t)
	if _, body := httpGet(t, c, "http://"+addr+"/chunked", ""); body != "piece0;piece1;piece2;piece3;piece4;" {
		t.Errorf("chunked: %q", body)
	}
	if _, body := httpGet(t, c, "http://"+addr+"/close", ""); body != "until the end" {
		t.Errorf("close-delimited: %q", body)
	}
	for _, tc := range []struct {
		method, path string
		status       int
	}{{"HEAD", "/plain", 200}, {"GET", "/nocontent", 204}, {"GET", "/notmodified", 304}} {
		req, _ := http.NewRequest(tc.method, "http://"+addr+tc.path, nil)
		if resp, body := doHTTP(t, c, req); resp.StatusCode != tc.status || body != "" {
			t.Errorf("%s %s: %d %q", tc.method, tc.path, resp.StatusCode, body)
		}
	}
	// The slow reader: a raw connection read a piece at a time.
	raw := dialRaw(t, addr)
	raw.conn.SetDeadline(time.Now().Add(scaled(20 * time.Second)))
	io.WriteString(raw.conn, "GET /big HTTP/1.1\r\nHost: app\r\n\r\n")
	resp, err := http.ReadResponse(raw.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	for got.Len() < len(big) {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
		if got.Len() < 1<<20 {
			time.Sleep(time.Millisecond) // slow at first: the gateway must wait, not buffer
		}
	}
	if !bytes.Equal(got.Bytes(), big) {
		t.Fatalf("8 MiB answer: got %d bytes, equal %v", got.Len(), bytes.Equal(got.Bytes(), big))
	}
	// The same connection serves on.
	io.WriteString(raw.conn, "GET /plain HTTP/1.1\r\nHost: app\r\n\r\n")
	if resp, err := http.ReadResponse(raw.br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the big answer: %v %v", resp, err)
	}
}

// What the loops do not serve goes on in fasthttp's path, answered as there: a chunked
// upload, HTTP/1.0, Expect, an absolute-form target, a head too large and a bare-LF
// head (both refused there).
func TestEpollHandsOver(t *testing.T) {
	m1 := startFastMember(t, loopEchoMember("n1"))
	cfg := epollConfig(gwGroup("g", "/", gwMember("n1", m1)))
	cfg.Server.MaxHeaderBytes = 4096
	s, addr := startGateway(t, cfg, zerolog.Nop())
	cases := []struct {
		name, raw string
		status    int
		body      string
		why       int
	}{
		{"chunked upload", "POST /up HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, "body=abc", handoffBody},
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: app\r\n\r\n", 200, "uri=/old", handoffVersion},
		{"Expect", "POST /e HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok", 200, "body=ok", handoffExpect},
		{"absolute form", "GET http://app/abs HTTP/1.1\r\nHost: app\r\n\r\n", 200, "uri=/abs", handoffTarget},
		{"head too large", "GET /x HTTP/1.1\r\nHost: app\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n", 431, "", handoffHead},
		{"bare LF", "GET /x HTTP/1.1\nHost: app\n\n", 400, "", handoffHead},
	}
	for _, tc := range cases {
		before := s.stats.handoffs[tc.why].Load()
		c := dialRaw(t, addr)
		c.conn.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
		io.WriteString(c.conn, tc.raw)
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for resp.StatusCode == 100 {
			resp, err = http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("%s after 100: %v", tc.name, err)
			}
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, resp.StatusCode, body, tc.status, tc.body)
		}
		if got := s.stats.handoffs[tc.why].Load() - before; got != 1 {
			t.Errorf("%s: %d hand-overs counted as %s, want 1", tc.name, got, handoffNames[tc.why])
		}
	}
	// A handed-over connection serves its next requests there.
	c := dialRaw(t, addr)
	c.conn.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
	if resp, body := c.roundTrip("GET /old HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n"); resp.StatusCode != 200 || !strings.Contains(body, "uri=/old") {
		t.Fatalf("HTTP/1.0 keep-alive: %d %q", resp.StatusCode, body)
	}
	if resp, body := c.roundTrip("GET /next HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 || !strings.Contains(body, "uri=/next") {
		t.Fatalf("next request after the hand-over: %d %q", resp.StatusCode, body)
	}
}

// Failures on the loop are fasthttp's path's: a refused member is retried on another
// (the session moves), a group without a live member is 502 then 503 once ejected, a
// member that does not answer within retry.try_timeout is 504.
func TestEpollFailures(t *testing.T) {
	live := startFastMember(t, loopEchoMember("live"))
	dead := closedAddr(t)
	slow := startFastMember(t, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(scaled(2 * time.Second))
	})
	cfg := epollConfig(
		gwGroup("fb", "/fb", gwMember("dead", dead), gwMember("live", live)),
		gwGroup("down", "/down", gwMember("dead2", closedAddr(t))),
		gwGroup("slow", "/slow", gwMember("slow", slow)))
	cfg.Retry.TryTimeout = 300 * time.Millisecond
	s, addr := startGateway(t, cfg, zerolog.Nop())
	c := newHTTPClient(t)
	resp, body := httpGet(t, c, "http://"+addr+"/fb/x", "0000S:dead")
	if resp.StatusCode != 200 || bodyField(body, "member") != "live" {
		t.Fatalf("a session on a refusing member: %d %q, want it moved to live", resp.StatusCode, body)
	}
	if s.stats.retries.Load() == 0 {
		t.Errorf("no retry counted")
	}
	if resp, _ := httpGet(t, c, "http://"+addr+"/down/x", ""); resp.StatusCode != 502 && resp.StatusCode != 503 {
		t.Errorf("a group whose one member refuses: %d, want 502 or 503", resp.StatusCode)
	}
	start := time.Now()
	if resp, _ := httpGet(t, c, "http://"+addr+"/slow/x", ""); resp.StatusCode != 504 {
		t.Errorf("a member past try_timeout: %d, want 504", resp.StatusCode)
	}
	if d := time.Since(start); d > scaled(1500*time.Millisecond) {
		t.Errorf("504 after %v, want within about try_timeout (300ms) and a sweep", d)
	}
}

// A member's pooled connection that it closed while idle is not used again, and a
// request (a POST, which is not retried) does not fail for it. (A close that crosses
// the request on the wire fails it, 502, on both data paths alike.)
func TestEpollIdleMemberClose(t *testing.T) {
	member := startRawMember(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		c.Close() // keep-alive announced, then closed while idle
	})
	_, addr := startGateway(t, epollConfig(gwGroup("g", "/", gwMember("n1", member))), zerolog.Nop())
	c := newHTTPClient(t)
	for i := range 5 {
		if i > 0 {
			time.Sleep(50 * time.Millisecond) // idle: the member's close arrives meanwhile
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/p", strings.NewReader("x"))
		if resp, body := doHTTP(t, c, req); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
}
