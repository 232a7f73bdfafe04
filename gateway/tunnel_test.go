package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// wsMember is a loopback member serving WebSocket with net/http and coder/websocket:
// a connection first gets "member=<id>", then every message back as sent. GET
// /ws/refuse answers 403 to an upgrade, GET /health 503 while sick; any other request
// gets 200 "member=<id>".
type wsMember struct {
	id, addr string
	sick     atomic.Bool // GET /health answers 503
	upgrades atomic.Int64
	header   atomic.Pointer[http.Header] // the last upgrade request's headers
}

func startWSMember(t *testing.T, id string) *wsMember { return startWSMemberTLS(t, id, nil) }

// startWSMemberTLS is startWSMember over TLS with conf (nil: plain).
func startWSMemberTLS(t *testing.T, id string, conf *tls.Config) *wsMember {
	t.Helper()
	m := &wsMember{id: id}
	serve := startHTTPMember
	if conf != nil {
		serve = func(t *testing.T, h http.Handler) string {
			ln := tls.NewListener(listenLoopback(t), conf)
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
			go srv.Serve(ln) //nolint:errcheck // ends with Close
			t.Cleanup(func() { srv.Close() })
			return ln.Addr().String()
		}
	}
	m.addr = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && m.sick.Load() {
			http.Error(w, "sick", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Upgrade") == "" {
			fmt.Fprintf(w, "member=%s upgrade=%q\n", id, r.Header.Get("Upgrade"))
			return
		}
		if r.URL.Path == "/ws/refuse" {
			w.Header().Set("Set-Cookie", "JSESSIONID=0000refused:"+id+"; Path=/")
			http.Error(w, "no websocket here", http.StatusForbidden)
			return
		}
		h := r.Header.Clone()
		m.header.Store(&h)
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			return
		}
		defer c.CloseNow()
		m.upgrades.Add(1)
		ctx := context.Background()
		if err := c.Write(ctx, websocket.MessageText, []byte("member="+id)); err != nil {
			return
		}
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	}))
	return m
}

// wsClient is the net/http client WebSocket handshakes go through.
func wsClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: scaled(10 * time.Second)}
}

// dialWS opens a WebSocket through the gateway at addr with an optional JSESSIONID
// and returns it with the member's greeting.
func dialWS(t *testing.T, hc *http.Client, addr, path, session string) (*websocket.Conn, string) {
	t.Helper()
	c, err := tryDialWS(hc, addr, path, session)
	if err != nil {
		t.Fatalf("dial ws://%s%s: %v", addr, path, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	ctx, cancel := context.WithTimeout(context.Background(), scaled(10*time.Second))
	defer cancel()
	_, hello, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("reading the member's greeting: %v", err)
	}
	return c, string(hello)
}

func tryDialWS(hc *http.Client, addr, path, session string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scaled(10*time.Second))
	defer cancel()
	h := http.Header{}
	if session != "" {
		h.Set("Cookie", "JSESSIONID="+session)
	}
	c, _, err := websocket.Dial(ctx, "ws://"+addr+path, &websocket.DialOptions{
		HTTPClient: hc, HTTPHeader: h, CompressionMode: websocket.CompressionDisabled,
	})
	return c, err
}

// echo sends msg and checks that it comes back.
func echo(c *websocket.Conn, typ websocket.MessageType, msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), scaled(10*time.Second))
	defer cancel()
	if err := c.Write(ctx, typ, msg); err != nil {
		return err
	}
	gt, got, err := c.Read(ctx)
	if err != nil {
		return err
	}
	if gt != typ || !bytes.Equal(got, msg) {
		return fmt.Errorf("echo of %d bytes: got %v %d bytes", len(msg), gt, len(got))
	}
	return nil
}

// readClose reads until the WebSocket ends and returns its close status.
func readClose(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scaled(15*time.Second))
	defer cancel()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("the WebSocket was not closed in time")
			}
			return websocket.CloseStatus(err)
		}
	}
}

// wsGateway serves members n1 and n2 (routes clone1, clone2) in group "ws" under
// /ws, with the admin API on; edit changes the config first.
func wsGateway(t *testing.T, log zerolog.Logger, edit func(*config.Config)) (*Server, string, string, [2]*wsMember) {
	t.Helper()
	ms := [2]*wsMember{startWSMember(t, "n1"), startWSMember(t, "n2")}
	m1, m2 := gwMember("n1", ms[0].addr), gwMember("n2", ms[1].addr)
	m1.Route, m2.Route = "clone1", "clone2"
	cfg := gwConfig(gwGroup("ws", "/ws", m1, m2))
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Token = "s3cret"
	if edit != nil {
		edit(cfg)
	}
	s, addr := startGateway(t, cfg, log)
	s.mu.Lock()
	admin := s.listeners[len(s.listeners)-1].Addr().String()
	s.mu.Unlock()
	return s, addr, "http://" + admin, ms
}

func TestIsUpgrade(t *testing.T) {
	tests := []struct {
		name, head string
		want       bool
	}{
		{"websocket", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n", true},
		{"token among others, any case", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, UPGRADE\r\nUpgrade: WebSocket\r\n", true},
		{"token in a second Connection header", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: upgrade\r\nUpgrade: x-proto\r\n", true},
		{"h2c", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n", false},
		{"no Connection token", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n", false},
		{"no Upgrade", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n", false},
		{"POST", "POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n", false},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n", false},
		{"with a body", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc", false},
		{"Connection: close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := readRequest(t, tc.head)
			if got := isUpgrade(req); got != tc.want {
				t.Fatalf("isUpgrade(%q) = %v, want %v", tc.head, got, tc.want)
			}
		})
	}
}

// TestWebSocketAffinity opens a WebSocket with a WebSphere session cookie: it lands on
// the member whose clone id the cookie names, the member sees the upgrade headers and
// the gateway's X-Forwarded-For, 1,000 messages (text with blank lines, binary) come
// back, the tunnel shows in the status API and /metrics while open, and its access
// line says 101.
func TestWebSocketAffinity(t *testing.T) {
	var logs syncBuffer
	s, addr, _, ms := wsGateway(t, zerolog.New(&logs), nil)
	c, hello := dialWS(t, wsClient(t), addr, "/ws/chat", "0000abcdefghijklmnopqrstuvw:clone2")
	if hello != "member=n2" {
		t.Fatalf("greeting = %q, want member=n2 (the cookie's clone)", hello)
	}
	h := ms[1].header.Load()
	if h == nil || h.Get("Sec-WebSocket-Key") == "" || !strings.EqualFold(h.Get("Upgrade"), "websocket") ||
		!strings.Contains(strings.ToLower(h.Get("Connection")), "upgrade") || h.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Fatalf("the member got headers %v, want the upgrade's and X-Forwarded-For 127.0.0.1", h)
	}
	for i := range 1000 {
		typ, msg := websocket.MessageText, []byte(fmt.Sprintf("message %d\n\nGET / HTTP/1.1\r\n\n", i))
		if i%2 == 1 {
			typ, msg = websocket.MessageBinary, bytes.Repeat([]byte{byte(i), '\n'}, i%300)
		}
		if err := echo(c, typ, msg); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if n := ms[0].upgrades.Load(); n != 0 {
		t.Errorf("n1 accepted %d upgrades, want 0", n)
	}
	n2 := tableMember(t, s, "n2")
	for _, g := range s.groupsStatus().Groups {
		for _, m := range g.Members {
			if want := int64(b2u(m.ID == "n2")); m.Tunnels != want {
				t.Errorf("status: member %s tunnels = %d, want %d", m.ID, m.Tunnels, want)
			}
		}
	}
	var metrics bytes.Buffer
	s.writeMetrics(&metrics)
	for _, want := range []string{`sessiongate_member_tunnels{group="ws",member="n2"} 1`, `sessiongate_member_tunnels{group="ws",member="n1"} 0`,
		`sessiongate_tunnels_opened_total 1`} {
		if !strings.Contains(metrics.String(), want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitFor(t, "the tunnel to end", func() bool { return s.tunnelCount(n2.State) == 0 })
	waitFor(t, "the tunnel's access line", func() bool { return strings.Contains(logs.String(), `"status":101`) })
	line := logs.String()
	if !strings.Contains(line, `"member":"n2"`) || !strings.Contains(line, `"affinity":"route"`) {
		t.Errorf("access log %s: want member n2, affinity route", line)
	}
}

// TestWebSocketMaintCloses sets the member a WebSocket is on to maint through the
// admin API: the client gets a close frame with 1001 Going Away, and a new WebSocket
// of the same session goes to the other member.
func TestWebSocketMaintCloses(t *testing.T) {
	s, addr, admin, _ := wsGateway(t, zerolog.Nop(), nil)
	hc := wsClient(t)
	const session = "0000abcdefghijklmnopqrstuvw:clone1"
	c, hello := dialWS(t, hc, addr, "/ws/chat", session)
	if hello != "member=n1" {
		t.Fatalf("greeting = %q, want member=n1", hello)
	}
	if err := echo(c, websocket.MessageText, []byte("before")); err != nil {
		t.Fatal(err)
	}
	if code, body := adminDo(t, "POST", admin+"/api/groups/ws/members/n1/state", "s3cret", `{"state":"maint"}`); code != 200 {
		t.Fatalf("set maint: %d %s", code, body)
	}
	if got := readClose(t, c); got != websocket.StatusGoingAway {
		t.Fatalf("close status = %v, want %v", got, websocket.StatusGoingAway)
	}
	waitFor(t, "n1's tunnels to end", func() bool { return s.tunnelCount(tableMember(t, s, "n1").State) == 0 })
	c2, hello := dialWS(t, hc, addr, "/ws/chat", session)
	if hello != "member=n2" {
		t.Fatalf("after maint: greeting = %q, want member=n2", hello)
	}
	c2.Close(websocket.StatusNormalClosure, "")
}

// TestWebSocketMemberDownCloses fails the member a WebSocket is on by its active
// checks: marked down, it has its tunnels closed (1001).
func TestWebSocketMemberDownCloses(t *testing.T) {
	s, addr, _, ms := wsGateway(t, zerolog.Nop(), func(cfg *config.Config) {
		hc := &cfg.TargetGroups[0].HealthCheck
		hc.Path, hc.Interval, hc.UnhealthyInterval, hc.Timeout = "/health", 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
		hc.HealthyThreshold, hc.UnhealthyThreshold = 1, 1
	})
	c, hello := dialWS(t, wsClient(t), addr, "/ws/x", "0000abcdefghijklmnopqrstuvw:clone1")
	if hello != "member=n1" {
		t.Fatalf("greeting = %q, want member=n1", hello)
	}
	ms[0].sick.Store(true)
	if got := readClose(t, c); got != websocket.StatusGoingAway {
		t.Fatalf("close status = %v, want %v", got, websocket.StatusGoingAway)
	}
	if tableMember(t, s, "n1").State.Healthy() {
		t.Errorf("the tunnel closed while n1 is up")
	}
}

// TestWebSocketMaintKeptWithoutCloseOnDown checks server.close_tunnels_on_down: false:
// a member set to maint keeps its WebSockets.
func TestWebSocketMaintKeptWithoutCloseOnDown(t *testing.T) {
	s, addr, admin, _ := wsGateway(t, zerolog.Nop(), func(cfg *config.Config) { cfg.Server.CloseTunnelsOnDown = false })
	c, _ := dialWS(t, wsClient(t), addr, "/ws/x", "0000abcdefghijklmnopqrstuvw:clone1")
	if code, body := adminDo(t, "POST", admin+"/api/groups/ws/members/n1/state", "s3cret", `{"state":"maint"}`); code != 200 {
		t.Fatalf("set maint: %d %s", code, body)
	}
	deadline := time.Now().Add(tunnelWatchInterval + 200*time.Millisecond) // past a look of watchTunnels
	for time.Now().Before(deadline) {
		if err := echo(c, websocket.MessageText, []byte("kept")); err != nil {
			t.Fatalf("in maint without close_tunnels_on_down: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := s.tunnelCount(tableMember(t, s, "n1").State); n != 1 {
		t.Errorf("n1 tunnels = %d, want 1", n)
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(des)
}

// goroutines counts this process's goroutines but fasthttp's idle workers: its pool
// keeps a worker for a while after it served a connection.
func goroutines() int {
	buf := make([]byte, 8<<20)
	n := 0
	for _, g := range bytes.Split(buf[:runtime.Stack(buf, true)], []byte("\n\n")) {
		if bytes.Contains(g, []byte("[chan receive")) && bytes.Contains(g, []byte("fasthttp.(*workerPool).workerFunc")) {
			continue
		}
		n++
	}
	return n
}

// TestTunnelNoLeaks opens 200 WebSockets at once and closes them, half from the client
// and half by the gateway (maint): goroutines and descriptors come back to where they
// were.
func TestTunnelNoLeaks(t *testing.T) {
	s, addr, _, _ := wsGateway(t, zerolog.Nop(), nil)
	hc := wsClient(t)
	warm, _ := dialWS(t, hc, addr, "/ws/x", "")
	warm.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the warm-up tunnel to end", func() bool { return s.openTunnels() == 0 })
	hc.Transport.(*http.Transport).CloseIdleConnections()
	baseG, baseFD := goroutines(), openFDs(t)

	const n = 200
	conns := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			route := []string{"clone1", "clone2"}[i%2]
			c, err := tryDialWS(hc, addr, "/ws/x", fmt.Sprintf("0000%023d:%s", i, route))
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			ctx, cancel := context.WithTimeout(context.Background(), scaled(10*time.Second))
			defer cancel()
			if _, _, err := c.Read(ctx); err != nil {
				errs <- err
				return
			}
			errs <- echo(c, websocket.MessageText, []byte("hi"))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a WebSocket failed: %v", err)
		}
	}
	if got := s.openTunnels(); got != n {
		t.Fatalf("open tunnels = %d, want %d", got, n)
	}
	// The clients of clone1 close theirs; n2 goes to maint and the gateway closes the rest.
	for i := 0; i < n; i += 2 {
		wg.Go(func() { conns[i].Close(websocket.StatusNormalClosure, "") })
	}
	wg.Wait()
	if closed := s.closeTunnels(tableMember(t, s, "n2").State, tunnelMaint); closed != n/2 {
		t.Errorf("closeTunnels(n2) = %d, want %d", closed, n/2)
	}
	for i := 1; i < n; i += 2 {
		wg.Go(func() {
			if got := readClose(t, conns[i]); got != websocket.StatusGoingAway {
				t.Errorf("tunnel %d: close status %v, want %v", i, got, websocket.StatusGoingAway)
			}
		})
	}
	wg.Wait()
	waitFor(t, "every tunnel to end", func() bool { return s.openTunnels() == 0 })
	hc.Transport.(*http.Transport).CloseIdleConnections()
	deadline := time.Now().Add(scaled(10 * time.Second))
	for {
		g, fd := goroutines(), openFDs(t)
		if g <= baseG+5 && fd <= baseFD+5 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines %d (baseline %d), descriptors %d (baseline %d)\n%s",
				g, baseG, fd, baseFD, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWebSocketLearnedBinding checks that a learned binding routes an upgrade: a
// session id without a route, bound to the member its hash would not choose.
func TestWebSocketLearnedBinding(t *testing.T) {
	s, addr, _, _ := wsGateway(t, zerolog.Nop(), nil)
	key := "S" + newUUID()
	g := s.Table().Groups[0]
	other := g.Members[1-g.Rendezvous(router.HashKey([]byte(key)))]
	s.cache.Learn(router.HashKey([]byte(key)), other.State.Num())
	s.cache.Wait()
	c, hello := dialWS(t, wsClient(t), addr, "/ws/x", key)
	if hello != "member="+other.ID {
		t.Fatalf("greeting = %q, want member=%s (the learned binding)", hello, other.ID)
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// TestWebSocketRetriesConnect sends an upgrade whose member refuses connections: it
// goes to the other member, and the refusal counts against the first.
func TestWebSocketRetriesConnect(t *testing.T) {
	live := startWSMember(t, "n2")
	dead := gwMember("n1", closedAddr(t))
	dead.Route = "clone1"
	cfg := gwConfig(gwGroup("ws", "/ws", dead, gwMember("n2", live.addr)))
	s, addr := startGateway(t, cfg, zerolog.Nop())
	c, hello := dialWS(t, wsClient(t), addr, "/ws/x", "0000abcdefghijklmnopqrstuvw:clone1")
	if hello != "member=n2" {
		t.Fatalf("greeting = %q, want member=n2", hello)
	}
	if f := tableMember(t, s, "n1").State.Failures.Load(); f == 0 {
		t.Errorf("n1 failures = 0, want the refused connection counted")
	}
	if r := s.stats.retries.Load(); r != 1 {
		t.Errorf("retries = %d, want 1", r)
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// upgradeHead is a WebSocket handshake request for path with a JSESSIONID.
func upgradeHead(path, session string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: JSESSIONID=" + session + "\r\n\r\n"
}

// TestUpgradeRefusedRelayed checks that a member's answer other than 101 reaches the
// client as a normal response, its Set-Cookie learned, and that the connection serves
// the next request; an h2c upgrade is served as a normal request, without Upgrade.
func TestUpgradeRefusedRelayed(t *testing.T) {
	s, addr, _, _ := wsGateway(t, zerolog.Nop(), nil)
	rc := dialRaw(t, addr)
	resp, body := rc.roundTrip(upgradeHead("/ws/refuse", "0000abcdefghijklmnopqrstuvw:clone2"))
	if resp.StatusCode != http.StatusForbidden || body != "no websocket here\n" {
		t.Fatalf("refused upgrade = %d %q, want 403 %q", resp.StatusCode, body, "no websocket here\n")
	}
	if resp.Header.Get("Upgrade") != "" || resp.Header.Get("Set-Cookie") == "" {
		t.Errorf("refused upgrade headers %v: want Set-Cookie, no Upgrade", resp.Header)
	}
	if s.openTunnels() != 0 {
		t.Errorf("open tunnels = %d after a refusal", s.openTunnels())
	}
	resp, body = rc.roundTrip("GET /ws/x HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade, HTTP2-Settings\r\n" +
		"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `upgrade=""`) {
		t.Fatalf("h2c upgrade = %d %q, want 200 from a member that saw no Upgrade", resp.StatusCode, body)
	}
}

// TestTunnelRawUpgrade tunnels a protocol other than WebSocket, and checks half-close:
// the client ends its side, the member sees the end, answers and closes, and the
// client reads the answer and then the end.
func TestTunnelRawUpgrade(t *testing.T) {
	member := startHTTPMember(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-echo\r\n\r\nready\n")
		brw.Flush()
		all, _ := io.ReadAll(brw) // until the client's end of stream
		conn.Write([]byte("got " + string(all)))
	}))
	cfg := gwConfig(gwGroup("raw", "/", gwMember("n1", member)))
	s, addr := startGateway(t, cfg, zerolog.Nop())
	conn, err := net.DialTimeout("tcp", addr, scaled(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(scaled(10 * time.Second)))
	io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x-echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "x-echo" {
		t.Fatalf("answer %d %v, want 101 with Upgrade: x-echo", resp.StatusCode, resp.Header)
	}
	line, err := br.ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("first line %q (%v), want ready", line, err)
	}
	io.WriteString(conn, "one\ntwo\n\n")
	conn.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "got one\ntwo\n\n" {
		t.Fatalf("after half-close: %q, %v; want %q then the end", rest, err, "got one\ntwo\n\n")
	}
	waitFor(t, "the tunnel to end", func() bool { return s.openTunnels() == 0 })
}

// TestWebSocketDrainKeepsTunnel drains the member a WebSocket is on: the WebSocket
// keeps working until the group's drain_timeout, then gets its close frame (1001).
func TestWebSocketDrainKeepsTunnel(t *testing.T) {
	s, addr, _, _ := wsGateway(t, zerolog.Nop(), func(cfg *config.Config) {
		cfg.TargetGroups[0].DrainTimeout = 3 * time.Second
	})
	c, hello := dialWS(t, wsClient(t), addr, "/ws/x", "0000abcdefghijklmnopqrstuvw:clone1")
	if hello != "member=n1" {
		t.Fatalf("greeting = %q, want member=n1", hello)
	}
	st := tableMember(t, s, "n1").State
	st.SetAdmin(router.AdminDrain)
	// Longer than watchTunnels' interval: a draining member keeps its tunnels.
	deadline := time.Now().Add(tunnelWatchInterval + 200*time.Millisecond)
	for time.Now().Before(deadline) {
		if err := echo(c, websocket.MessageText, []byte("still here")); err != nil {
			if st.DrainExpired() {
				t.Skip("drain_timeout passed before the check: the machine is too slow for this test")
			}
			t.Fatalf("while draining: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := readClose(t, c); got != websocket.StatusGoingAway {
		t.Fatalf("close status after drain_timeout = %v, want %v", got, websocket.StatusGoingAway)
	}
	if !st.DrainExpired() {
		t.Errorf("the tunnel closed before the drain expired")
	}
}

// TestTunnelIdleTimeout leaves a WebSocket idle past server.tunnel_idle_timeout: the
// gateway closes it (1001).
func TestTunnelIdleTimeout(t *testing.T) {
	s, addr, _, _ := wsGateway(t, zerolog.Nop(), func(cfg *config.Config) {
		cfg.Server.TunnelIdleTimeout = time.Second
	})
	c, _ := dialWS(t, wsClient(t), addr, "/ws/x", "")
	if got := readClose(t, c); got != websocket.StatusGoingAway {
		t.Fatalf("close status = %v, want %v", got, websocket.StatusGoingAway)
	}
	waitFor(t, "the tunnel to end", func() bool { return s.openTunnels() == 0 })
}

// TestTunnelShutdown shuts the gateway down with a WebSocket open: Shutdown waits for
// it (it keeps working), then closes it with 1001 once the timeout is over.
func TestTunnelShutdown(t *testing.T) {
	ws := startWSMember(t, "n1")
	cfg := gwConfig(gwGroup("ws", "/", gwMember("n1", ws.addr)))
	s, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	lns, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lns, nil) }()
	c, _ := dialWS(t, wsClient(t), lns[0].Addr().String(), "/x", "")

	timeout := scaled(time.Second)
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(timeout) }()
	waitFor(t, "Shutdown to wait for the tunnel", func() bool { return s.tunnelsOff.Load() })
	if err := echo(c, websocket.MessageText, []byte("during shutdown")); err != nil {
		t.Fatalf("the tunnel failed while Shutdown waited: %v", err)
	}
	if got := readClose(t, c); got != websocket.StatusGoingAway {
		t.Fatalf("close status = %v, want %v", got, websocket.StatusGoingAway)
	}
	select {
	case <-shut:
	case <-time.After(scaled(10 * time.Second)):
		t.Fatal("Shutdown did not return")
	}
	if n := s.openTunnels(); n != 0 {
		t.Errorf("open tunnels after Shutdown = %d", n)
	}
	if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve: %v", err)
	}
}

// readRequest parses a request head (and body) as the server would.
func readRequest(t *testing.T, raw string) *fasthttp.Request {
	t.Helper()
	if !strings.Contains(raw, "\r\n\r\n") {
		raw += "\r\n"
	}
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatalf("reading %q: %v", raw, err)
	}
	return &req
}

// TestRestartOnlyTunnelKeys checks that a reload changing only the tunnel settings,
// which apply when read, warns of no restart; another server key still does.
func TestRestartOnlyTunnelKeys(t *testing.T) {
	a := gwConfig(gwGroup("g", "/", gwMember("n1", "127.0.0.1:1")))
	b := *a
	b.Server.TunnelIdleTimeout, b.Server.CloseTunnelsOnDown = time.Minute, false
	if got := restartOnly(a, &b); len(got) != 0 {
		t.Errorf("restartOnly(tunnel keys) = %v, want none", got)
	}
	b.Server.IdleTimeout = time.Minute
	if got := restartOnly(a, &b); len(got) != 1 || got[0] != "server" {
		t.Errorf("restartOnly(server.idle_timeout) = %v, want [server]", got)
	}
}

// TestWebSocketTLSBothSides: wss through a TLS listener to members behind TLS, kept on
// its member by the signed affinity cookie, which the 101 sets.
func TestWebSocketTLSBothSides(t *testing.T) {
	ca := newTestCA(t)
	pairM, _, _ := ca.leaf(t, "member", false)
	memberConf := &tls.Config{Certificates: []tls.Certificate{pairM}}
	ms := [2]*wsMember{startWSMemberTLS(t, "n1", memberConf), startWSMemberTLS(t, "n2", memberConf)}
	cert, key := ca.issue("gw", false, "gw.example")
	g := gwGroup("ws", "/ws", gwMember("n1", ms[0].addr), gwMember("n2", ms[1].addr))
	g.TLS = &config.MemberTLS{CAFile: ca.file, ServerName: "members.internal"}
	cfg := gwConfig(g)
	cfg.Listeners = []config.Listener{tlsListenerCfg(pair(cert, key))}
	cfg.Session.Affinity = []string{"route", "cookie", "learned", "hash"}
	cfg.Session.Cookie.Keys = []string{"websocket-key-0123456789"}
	_, addrs := startListeners(t, cfg, zerolog.Nop())

	tr := &http.Transport{TLSClientConfig: ca.clientConfig("gw.example")}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: scaled(10 * time.Second)}
	dial := func(cookie string) (*websocket.Conn, string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), scaled(10*time.Second))
		defer cancel()
		h := http.Header{}
		if cookie != "" {
			h.Set("Cookie", cookie)
		}
		c, resp, err := websocket.Dial(ctx, "wss://"+addrs[0]+"/ws/chat", &websocket.DialOptions{HTTPClient: hc, HTTPHeader: h,
			CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			t.Fatalf("wss: %v", err)
		}
		_, hello, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		set := ""
		for _, ck := range resp.Cookies() {
			if ck.Name == "SGROUTE" {
				set = "SGROUTE=" + ck.Value
			}
		}
		return c, strings.TrimPrefix(string(hello), "member="), set
	}
	c, member, cookie := dial("")
	if cookie == "" {
		t.Fatal("the 101 set no affinity cookie")
	}
	for i := range 50 {
		if err := echo(c, websocket.MessageText, []byte(fmt.Sprintf("message %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	for range 6 {
		c, got, again := dial(cookie)
		if got != member || again != "" {
			t.Fatalf("reconnect with %s: member %s (cookie set again: %q), want %s", cookie, got, again, member)
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
}

// TestTunnelWatchClockRace: a tunnel that saw traffic after the watcher read the clock
// (at the next tick) is not idle, and one that opened then is not late to start.
func TestTunnelWatchClockRace(t *testing.T) {
	tn := &tunnel{idle: ticks(time.Hour), opened: 11}
	tn.last.Store(11)
	tn.started.Store(true)
	tn.watch(10) // the watcher read 10; the tunnel's traffic came at 11
	if tn.closing.Load() != 0 {
		t.Fatalf("a tunnel with traffic one tick after the watcher's clock read was closed (%s)", tunnelReasonNames[tn.closing.Load()])
	}
	if since(10, 11) != 0 || since(11, 10) != 1 {
		t.Fatal("since")
	}
}
