package gateway

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// raceEnabled reports whether the test binary was built with -race, so that deadlines
// can scale with the detector's slowdown.
var raceEnabled = func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}()

// scaled stretches a deadline under the race detector.
func scaled(d time.Duration) time.Duration {
	if raceEnabled {
		return 5 * d
	}
	return d
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(scaled(5 * time.Second))
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gwConfig is config.Default on loopback, admin off, with the given groups.
func gwConfig(groups ...config.Group) *config.Config {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = ""
	cfg.TargetGroups = groups
	return &cfg
}

// gwGroup is a group without active health checks.
func gwGroup(name, prefix string, members ...config.Member) config.Group {
	return config.NewGroup(name, prefix, members...)
}

// gwMember is a member whose route id is its id.
func gwMember(id, addr string) config.Member {
	return config.NewMember(id, addr)
}

// startGateway builds, listens and serves cfg; it returns the server and its client
// address. Cleanup shuts it down and checks that Serve returned.
func startGateway(t *testing.T, cfg *config.Config, log zerolog.Logger) (*Server, string) {
	t.Helper()
	withDataplane(cfg)
	s, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	lns, err := s.Listen()
	if err != nil {
		s.Shutdown(time.Second) //nolint:errcheck // nothing serves yet
		t.Fatalf("Listen: %v", err)
	}
	adminLn, err := s.ListenAdmin()
	if err != nil {
		s.Shutdown(time.Second) //nolint:errcheck // nothing serves yet
		t.Fatalf("ListenAdmin: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lns, adminLn) }()
	t.Cleanup(func() {
		if err := s.Shutdown(5 * time.Second); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(scaled(5 * time.Second)):
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return s, lns[0].Addr().String()
}

// tableMember returns the member with the given id from the server's table.
func tableMember(t *testing.T, s *Server, id string) *router.Member {
	t.Helper()
	for _, m := range s.Table().Members {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("no member %q in the table", id)
	return nil
}

// setDown marks a member down for the rest of the (sub)test.
func setDown(t *testing.T, s *Server, id string) {
	t.Helper()
	st := tableMember(t, s, id).State
	st.SetHealthy(false)
	t.Cleanup(func() { st.SetHealthy(true) })
}

// listenLoopback listens on a free loopback port.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return ln
}

// startHTTPMember serves h with net/http on a loopback port and returns the address.
func startHTTPMember(t *testing.T, h http.Handler) string {
	t.Helper()
	ln := listenLoopback(t)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// startFastMember serves h with fasthttp on a loopback port and returns the address.
func startFastMember(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln := listenLoopback(t)
	srv := &fasthttp.Server{Handler: h, DisablePreParseMultipartForm: true}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// idMember answers every request with "member=<id>\n" (fasthttp).
func idMember(id string) fasthttp.RequestHandler {
	body := "member=" + id + "\n"
	return func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBodyString(body)
	}
}

// closedAddr is the address of a loopback port that was just closed.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln := listenLoopback(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// newHTTPClient is a net/http client to the gateway: no proxy, no redirects followed.
func newHTTPClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       scaled(10 * time.Second),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// httpGet sends GET url with an optional JSESSIONID cookie and returns the response
// with its body read.
func httpGet(t *testing.T, c *http.Client, url, session string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("NewRequest(%q): %v", url, err)
	}
	if session != "" {
		req.Header.Set("Cookie", "JSESSIONID="+session)
	}
	return doHTTP(t, c, req)
}

func doHTTP(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, string(body)
}

// bodyField returns the value of "name=value" in a member's answer (values end at a
// space or a newline).
func bodyField(body, name string) string {
	for _, line := range strings.Split(body, "\n") {
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, name+"="); ok {
				return v
			}
		}
	}
	return ""
}

// rawConn is a raw TCP client connection to the gateway, for requests whose bytes
// must be exact.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, scaled(5*time.Second))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawConn{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// roundTrip writes raw and reads one response, body included.
func (c *rawConn) roundTrip(raw string) (*http.Response, string) {
	c.t.Helper()
	c.conn.SetDeadline(time.Now().Add(scaled(10 * time.Second)))
	if _, err := io.WriteString(c.conn, raw); err != nil {
		c.t.Fatalf("writing request %q: %v", trimForLog(raw), err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("reading response to %q: %v", trimForLog(raw), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading body of response to %q: %v", trimForLog(raw), err)
	}
	return resp, string(body)
}

// rawRoundTrip sends raw on a new connection and reads one response.
func rawRoundTrip(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	return dialRaw(t, addr).roundTrip(raw)
}

func trimForLog(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// newUUID is an opaque session id without route separators ('.', ':', '+').
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (the log) and reads (the test).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// testDataplane is the data path the suite runs its plain listeners on:
// SESSIONGATE_TEST_DATAPLANE (fasthttp or epoll; make test runs the suite on both).
var testDataplane = os.Getenv("SESSIONGATE_TEST_DATAPLANE")

// withDataplane puts cfg's plain listeners without the PROXY protocol on testDataplane.
func withDataplane(cfg *config.Config) {
	if testDataplane == "" || len(cfg.Session.Shared.Redis.Addresses) > 0 {
		return // (the epoll data path does not combine with session.shared)
	}
	if len(cfg.Listeners) == 0 {
		cfg.Listeners = cfg.ClientListeners()
	}
	for i := range cfg.Listeners {
		if l := &cfg.Listeners[i]; l.TLS == nil && !l.ProxyProtocol {
			l.Dataplane = testDataplane
		}
	}
}
