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
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/valyala/fasthttp"
)

// startListeners is startGateway for a config with listeners: it returns the address of
// each configured listener, in order.
func startListeners(t *testing.T, cfg *config.Config, log zerolog.Logger) (*Server, []string) {
	t.Helper()
	s, _ := startGateway(t, cfg, log)
	addrs := make([]string, len(cfg.ClientListeners()))
	s.mu.Lock()
	for _, ln := range s.listeners {
		if bl, ok := ln.(*boundListener); ok && addrs[bl.info.index] == "" {
			addrs[bl.info.index] = bl.Addr().String()
		}
	}
	s.mu.Unlock()
	return s, addrs
}

// tlsListener is a TLS listener on a free loopback port serving certs.
func tlsListenerCfg(certs ...[2]string) config.Listener {
	l := config.Listener{Address: "127.0.0.1:0", HTTP2: true, TLS: &config.ListenerTLS{MinVersion: config.TLS12, ClientAuth: config.ClientAuthNone}}
	for _, c := range certs {
		l.TLS.Certificates = append(l.TLS.Certificates, config.Certificate{CertFile: c[0], KeyFile: c[1]})
	}
	return l
}

func pair(cert, key string) [2]string { return [2]string{cert, key} }

// httpsClient is a client over TLS trusting ca, for HTTP/1.1 (h2 false) or HTTP/2.
func httpsClient(t *testing.T, ca *testCA, serverName string, h2 bool) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: nil, TLSClientConfig: ca.clientConfig(serverName), DisableCompression: true, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: scaled(10 * time.Second),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// fwdMember answers "member=<id>" and the X-Forwarded-* headers it got.
func fwdMember(id string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		h := &ctx.Request.Header
		fmt.Fprintf(ctx, "member=%s proto=%s port=%s for=%s host=%s\n", id,
			h.Peek("X-Forwarded-Proto"), h.Peek("X-Forwarded-Port"), h.Peek("X-Forwarded-For"), h.Peek("X-Forwarded-Host"))
	}
}

// TestTLSListeners: a plain and a TLS listener side by side; each SNI name gets its
// certificate (exact, wildcard, the default for an unknown name and for none), and the
// member is told https and the TLS listener's port.
func TestTLSListeners(t *testing.T) {
	ca := newTestCA(t)
	a, ak := ca.issue("a", false, "a.example", "127.0.0.1")
	b, bk := ca.issue("b", false, "*.b.example")
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("m1", startFastMember(t, fwdMember("m1")))))
	cfg.Listeners = []config.Listener{{Address: "127.0.0.1:0", HTTP2: true}, tlsListenerCfg(pair(a, ak), pair(b, bk))}
	s, addrs := startListeners(t, cfg, zerolog.Nop())

	// The certificates on /metrics, /api/groups and the status page.
	var m bytes.Buffer
	s.writeMetrics(&m)
	series := `sessiongate_tls_certificate_expiry_seconds{listener="` + addrs[1] + `",file="` + a + `",name="a.example",names="a.example,127.0.0.1"} `
	if i := strings.Index(m.String(), series); i < 0 {
		t.Errorf("/metrics has no %s", series)
	} else if v, _ := strconv.ParseFloat(strings.Fields(m.String()[i+len(series):])[0], 64); v < 20*3600 || v > 24*3600 {
		t.Errorf("%s %v, want about a day", series, v)
	}
	ls := s.groupsStatus().Listeners
	if len(ls) != 2 || ls[0].TLS || !ls[1].TLS || len(ls[1].Certificates) != 2 || ls[1].Certificates[1].Names[0] != "*.b.example" {
		t.Errorf("listeners status = %+v", ls)
	}
	var sctx fasthttp.RequestCtx
	sctx.Request.Header.SetMethod("GET")
	s.handleStatus(&sctx)
	if page := string(sctx.Response.Body()); !strings.Contains(page, "a.example, 127.0.0.1") || !strings.Contains(page, "h left") {
		t.Errorf("status page shows no certificate names and expiry")
	}

	for _, tc := range []struct{ sni, want string }{
		{"a.example", "a.example"},
		{"A.Example.", "a.example"},
		{"x.b.example", "*.b.example"},
		{"y.x.b.example", "a.example"}, // a wildcard is one label: the default
		{"other.example", "a.example"},
		{"", "a.example"}, // no SNI (an IP literal): the certificate with that IP
	} {
		conf := &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true} //nolint:gosec // the test reads which certificate came
		c, err := tls.Dial("tcp", addrs[1], conf)
		if err != nil {
			t.Fatalf("SNI %q: %v", tc.sni, err)
		}
		got := c.ConnectionState().PeerCertificates[0]
		c.Close()
		if names := strings.Join(got.DNSNames, ","); !strings.Contains(names, tc.want) {
			t.Errorf("SNI %q: certificate for %s, want %s", tc.sni, names, tc.want)
		}
	}

	resp, body := httpGet(t, httpsClient(t, ca, "a.example", false), "https://"+addrs[1]+"/fb/x", "")
	_, port, _ := net.SplitHostPort(addrs[1])
	if resp.StatusCode != 200 || bodyField(body, "proto") != "https" || bodyField(body, "port") != port || resp.ProtoMajor != 1 {
		t.Errorf("https: %s %d %q, want HTTP/1.1 200 proto=https port=%s", resp.Proto, resp.StatusCode, body, port)
	}
	resp, body = httpGet(t, newHTTPClient(t), "http://"+addrs[0]+"/fb/x", "")
	_, port, _ = net.SplitHostPort(addrs[0])
	if resp.StatusCode != 200 || bodyField(body, "proto") != "http" || bodyField(body, "port") != port {
		t.Errorf("http: %d %q, want 200 proto=http port=%s", resp.StatusCode, body, port)
	}
}

// TestTLSAffinity: over https, HTTP/1.1 and HTTP/2, sessions behave as over http:
// WebSphere ids issued and kept, Tomcat routes, learned cookies and URL rewriting.
func TestTLSAffinity(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue("gw", false, "gw.example")
	dm := startDemoMembers(t, "ws1", "Node1", "ws2", "Node2")
	cfg := gwConfig(
		gwGroup("fb", "/fb", routed(gwMember("ws1", dm[0].Addr()), "Node1"), routed(gwMember("ws2", dm[1].Addr()), "Node2")),
		gwGroup("tc", "/tc", routed(gwMember("tc1", startHTTPMember(t, tomcatMember("tc1", "jvm1"))), "jvm1"),
			routed(gwMember("tc2", startHTTPMember(t, tomcatMember("tc2", "jvm2"))), "jvm2")),
		gwGroup("ln", "/ln", gwMember("l1", startHTTPMember(t, learnMember("l1"))), gwMember("l2", startHTTPMember(t, learnMember("l2")))),
	)
	cfg.Listeners = []config.Listener{tlsListenerCfg(pair(cert, key))}
	_, addrs := startListeners(t, cfg, zerolog.Nop())
	base := "https://" + addrs[0]
	for _, h2 := range []bool{false, true} {
		c := httpsClient(t, ca, "gw.example", h2)
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			wantProto := map[bool]int{false: 1, true: 2}[h2]
			// WebSphere: the id issued sticks, and its clone id routes.
			resp, body := httpGet(t, c, base+"/fb/app", "")
			id, member := sessionCookie(resp), bodyField(body, "member")
			if resp.ProtoMajor != wantProto || !webSphereCookie.MatchString(id) {
				t.Fatalf("%s: JSESSIONID=%q, want a WebSphere id over HTTP/%d", resp.Proto, id, wantProto)
			}
			for n := 2; n <= 5; n++ {
				_, body := httpGet(t, c, base+"/fb/app", id)
				if bodyField(body, "member") != member || bodyField(body, "counter") != fmt.Sprint(n) {
					t.Fatalf("request %d of %s: %q, want member %s counter %d", n, id, body, member, n)
				}
			}
			for i, want := range map[string]string{":Node2": "ws2", ":Node1": "ws1"} {
				_, body := httpGet(t, c, base+"/fb/app", "0000ABCDEFGHIJKLMNOPQRSTUVW"+i)
				if got := bodyField(body, "member"); got != want {
					t.Errorf("clone %s went to %s, want %s", i, got, want)
				}
			}
			// Tomcat: the jvmRoute routes.
			for _, route := range []string{"jvm1", "jvm2"} {
				_, body := httpGet(t, c, base+"/tc/x", "0123456789ABCDEF0123456789ABCDEF."+route)
				if got := bodyField(body, "member"); got != "tc"+route[3:] {
					t.Errorf("Tomcat .%s went to %q", route, got)
				}
			}
			// Learned: an id without a route sticks to the member that issued it, by
			// cookie and by URL rewriting.
			resp, body = httpGet(t, c, base+"/ln/start", "")
			sid, issuer := sessionCookie(resp), bodyField(body, "member")
			for range 5 {
				if _, body := httpGet(t, c, base+"/ln/x", sid); bodyField(body, "member") != issuer {
					t.Fatalf("learned %s: %q, want %s", sid, body, issuer)
				}
				if _, body := httpGet(t, c, base+"/ln/x;jsessionid="+sid, ""); bodyField(body, "member") != issuer {
					t.Fatalf("rewritten URL with %s: %q, want %s", sid, body, issuer)
				}
			}
		})
	}
}

// TestHTTP2: 100 concurrent streams on one HTTP/2 connection all get their own
// member's answer; curl --http2 with a cookie jar stays on its member for 20 requests.
func TestHTTP2(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue("gw", false, "localhost", "127.0.0.1")
	dm := startDemoMembers(t, "m1", "Node1", "m2", "Node2")
	cfg := gwConfig(gwGroup("fb", "/fb", routed(gwMember("m1", dm[0].Addr()), "Node1"), routed(gwMember("m2", dm[1].Addr()), "Node2")))
	cfg.Listeners = []config.Listener{tlsListenerCfg(pair(cert, key))}
	s, addrs := startListeners(t, cfg, zerolog.Nop())
	url := "https://" + addrs[0] + "/fb/app"

	tr := &http.Transport{TLSClientConfig: ca.clientConfig("localhost"), ForceAttemptHTTP2: true, MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: scaled(20 * time.Second)}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Go(func() {
			clone := []string{"Node1", "Node2"}[i%2]
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s?i=%d", url, i), nil)
			req.Header.Set("Cookie", fmt.Sprintf("JSESSIONID=0000stream%017d:%s", i, clone))
			resp, err := c.Do(req)
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 || bodyField(string(body), "clone") != clone {
				errs <- fmt.Errorf("stream %d: %s %d %q, want HTTP/2 200 from %s", i, resp.Proto, resp.StatusCode, body, clone)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.stats.requests.Load(); n < 100 {
		t.Errorf("requests counted: %d, want 100", n)
	}

	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	if out, _ := exec.Command(curl, "--version").Output(); !strings.Contains(string(out), "HTTP2") {
		t.Skip("curl without HTTP/2")
	}
	jar := filepath.Join(t.TempDir(), "jar")
	member := ""
	for n := 1; n <= 20; n++ {
		out, err := exec.Command(curl, "-sS", "--http2", "--cacert", ca.file, "-c", jar, "-b", jar,
			"-w", "\nproto=%{http_version}\n", url).CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v: %s", err, out)
		}
		body := string(out)
		if bodyField(body, "proto") != "2" {
			t.Fatalf("curl request %d: %q, want HTTP/2", n, body)
		}
		if n == 1 {
			member = bodyField(body, "member")
		}
		if bodyField(body, "member") != member || bodyField(body, "counter") != fmt.Sprint(n) {
			t.Fatalf("curl request %d: %q, want member %s counter %d", n, body, member, n)
		}
	}
}

// TestTLSCertificateReload: a certificate replaced on disk is served to new connections
// (watched file, and a reload), an open connection keeps working, and a broken pair is
// refused with the old one serving on.
func TestTLSCertificateReload(t *testing.T) {
	old := certWatchInterval
	certWatchInterval = 20 * time.Millisecond
	t.Cleanup(func() { certWatchInterval = old })
	ca := newTestCA(t)
	cert, key := ca.issue("gw", false, "one.example")
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("m1", startFastMember(t, idMember("m1")))))
	cfg.Listeners = []config.Listener{tlsListenerCfg(pair(cert, key))}
	var logs syncBuffer
	s, addrs := startListeners(t, cfg, zerolog.New(&logs))

	served := func() string {
		c, err := tls.Dial("tcp", addrs[0], &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the name
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].DNSNames[0]
	}
	if got := served(); got != "one.example" {
		t.Fatalf("served %s", got)
	}
	// An open keep-alive connection, from before the change.
	keep, err := tls.Dial("tcp", addrs[0], &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	br := bufio.NewReader(keep)
	get := func() int {
		t.Helper()
		code, err := tryGet(keep, br, "/fb/x")
		if err != nil {
			t.Fatalf("open connection: %v", err)
		}
		return code
	}
	if get() != 200 {
		t.Fatal("open connection: not 200")
	}

	ca.issue("gw", false, "two.example") // renewed in place
	waitFor(t, "the renewed certificate", func() bool { return served() == "two.example" })
	if get() != 200 {
		t.Fatal("open connection after the renewal: not 200")
	}

	os.WriteFile(cert, []byte("broken"), 0o600) //nolint:errcheck // checked by what is served
	waitFor(t, "the refusal logged", func() bool { return strings.Contains(logs.String(), "certificate reload rejected") })
	if got := served(); got != "two.example" {
		t.Errorf("after a broken file: served %s, want the old two.example", got)
	}
	if err := s.Reload(cfg); err == nil || !strings.Contains(err.Error(), "listeners[0].tls.certificates[0].cert_file") {
		t.Errorf("Reload with a broken certificate = %v, want an error naming the field", err)
	}
	ca.issue("gw", false, "three.example")
	if err := s.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := served(); got != "three.example" {
		t.Errorf("after Reload: served %s, want three.example", got)
	}
	if get() != 200 {
		t.Fatal("open connection at the end: not 200")
	}
}

// TestTLSSessionAffinity: with [route, learned, tls, hash], a client without cookies
// that resumes its TLS session reaches the member its first connection reached, through
// two gateway instances sharing a ticket keys file; TLS 1.2 and 1.3; fresh sessions
// spread over the members.
func TestTLSSessionAffinity(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue("gw", false, "gw.example")
	keys := filepath.Join(t.TempDir(), "ticket.keys")
	os.WriteFile(keys, []byte(strings.Repeat("1f", 32)+"\n"), 0o600) //nolint:errcheck // read by New
	var members []config.Member
	for _, id := range []string{"m1", "m2", "m3", "m4"} {
		members = append(members, gwMember(id, startFastMember(t, idMember(id))))
	}
	var gws []string
	for range 2 {
		cfg := gwConfig(gwGroup("fb", "/fb", members...))
		l := tlsListenerCfg(pair(cert, key))
		l.TLS.TicketKeysFile = keys
		cfg.Listeners = []config.Listener{l}
		cfg.Session.Affinity = []string{"route", "learned", "tls", "hash"}
		_, addrs := startListeners(t, cfg, zerolog.Nop())
		gws = append(gws, addrs[0])
	}
	get := func(addr string, conf *tls.Config) (string, bool) {
		t.Helper()
		c, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		defer c.Close()
		code, body, err := getBody(c, "/fb/x")
		if err != nil || code != 200 {
			t.Fatalf("GET: %d %v", code, err)
		}
		return bodyField(body, "member"), c.ConnectionState().DidResume
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		firsts := map[string]bool{}
		for client := range 8 {
			conf := ca.clientConfig("gw.example")
			conf.MinVersion, conf.MaxVersion = v, v
			conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			first, _ := get(gws[client%2], conf)
			firsts[first] = true
			for n := range 6 {
				got, resumed := get(gws[n%2], conf)
				if !resumed {
					t.Fatalf("TLS %x client %d connection %d: not resumed", v, client, n)
				}
				if got != first {
					t.Fatalf("TLS %x client %d: resumed session on gateway %d reached %s, first connection %s", v, client, n%2, got, first)
				}
			}
		}
		if len(firsts) < 2 {
			t.Errorf("TLS %x: 8 new TLS sessions all reached %v", v, firsts)
		}
	}

	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	sess := filepath.Join(t.TempDir(), "sess")
	sclient := func(addr string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), scaled(10*time.Second))
		defer cancel()
		cmd := exec.CommandContext(ctx, openssl, append([]string{"s_client", "-connect", addr, "-servername", "gw.example",
			"-CAfile", ca.file, "-ign_eof", "-quiet"}, args...)...)
		cmd.Stdin = strings.NewReader("GET /fb/x HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n")
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	first := bodyField(sclient(gws[0], "-sess_out", sess), "member")
	if first == "" {
		t.Fatal("openssl s_client: no member in the answer")
	}
	for n := range 4 {
		out := sclient(gws[n%2], "-sess_in", sess)
		if got := bodyField(out, "member"); got != first {
			t.Fatalf("openssl -sess_in through gateway %d: %q, want member %s", n%2, out, first)
		}
	}
}

// getBody sends GET path on c (Connection: close) and reads the answer.
func getBody(c net.Conn, path string) (int, string, error) {
	c.SetDeadline(time.Now().Add(scaled(5 * time.Second))) //nolint:errcheck // test
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n", path); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestTLSRedirectAndHSTS: a redirect_https listener answers 308 to the TLS listener's
// port; the TLS listener's answers, the gateway's own included, carry HSTS.
func TestTLSRedirectAndHSTS(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue("gw", false, "gw.example")
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("m1", startFastMember(t, idMember("m1")))))
	l := tlsListenerCfg(pair(cert, key))
	l.TLS.HSTS = config.HSTS{MaxAge: 365 * 24 * time.Hour, IncludeSubdomains: true}
	cfg.Listeners = []config.Listener{{Address: "127.0.0.1:0", RedirectHTTPS: true}, l}
	_, addrs := startListeners(t, cfg, zerolog.Nop())
	_, port, _ := net.SplitHostPort(addrs[1])

	resp, _ := httpGet(t, newHTTPClient(t), "http://"+addrs[0]+"/fb/x;jsessionid=1?q=1", "")
	if want := "https://127.0.0.1:" + port + "/fb/x;jsessionid=1?q=1"; resp.StatusCode != 308 || resp.Header.Get("Location") != want {
		t.Errorf("redirect: %d Location %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	c := httpsClient(t, ca, "gw.example", false)
	for _, path := range []string{"/fb/x", "/nogroup"} {
		resp, _ := httpGet(t, c, "https://"+addrs[1]+path, "")
		if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000; includeSubDomains" {
			t.Errorf("%s: %d HSTS %q", path, resp.StatusCode, got)
		}
	}
}

// TestTLSBadClients: plain HTTP sent to the TLS port gets a 400 and a close, garbage a
// close, a silent client the handshake timeout, each with one log line, while another
// client is served all along; client_auth require refuses a client without a
// certificate and serves one with.
func TestTLSBadClients(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue("gw", false, "gw.example")
	ccert, ckey := ca.issue("client", true, "client.example")
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("m1", startFastMember(t, idMember("m1")))))
	cfg.Server.HeaderTimeout = 300 * time.Millisecond
	l := tlsListenerCfg(pair(cert, key))
	strict := tlsListenerCfg(pair(cert, key))
	strict.TLS.ClientAuth, strict.TLS.ClientCAFile = config.ClientAuthRequire, ca.file
	cfg.Listeners = []config.Listener{l, strict}
	var logs syncBuffer
	s, addrs := startListeners(t, cfg, zerolog.New(&logs))

	good := httpsClient(t, ca, "gw.example", true)
	check := func(when string) {
		if resp, body := httpGet(t, good, "https://"+addrs[0]+"/fb/x", ""); resp.StatusCode != 200 {
			t.Fatalf("%s: good client got %d %q", when, resp.StatusCode, body)
		}
	}
	check("before")
	silent, _ := net.Dial("tcp", addrs[0])
	defer silent.Close()

	raw := dialRaw(t, addrs[0])
	resp, body := raw.roundTrip("GET /fb/x HTTP/1.1\r\nHost: gw\r\n\r\n")
	if resp.StatusCode != 400 || !strings.Contains(body, "HTTPS") {
		t.Errorf("plain HTTP to the TLS port: %d %q, want 400", resp.StatusCode, body)
	}
	check("after plain HTTP")
	g, _ := net.Dial("tcp", addrs[0])
	g.Write([]byte("\x16\x03\x01\x00\x05hello garbage")) //nolint:errcheck // test
	g.SetReadDeadline(time.Now().Add(scaled(5 * time.Second)))
	if n, err := g.Read(make([]byte, 64)); err == nil && n > 0 {
		// an alert is fine; then the close
		_, err = io.ReadAll(g)
		_ = err
	}
	g.Close()
	check("after garbage")
	silent.SetReadDeadline(time.Now().Add(scaled(5 * time.Second)))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Errorf("a silent client was not closed at the handshake timeout")
	}
	check("after the silent client")
	waitFor(t, "three handshake failures logged", func() bool { return strings.Count(logs.String(), "TLS handshake failed") >= 3 })
	for _, reason := range []string{"not TLS", "handshake timeout"} {
		if !strings.Contains(logs.String(), reason) {
			t.Errorf("log has no %q: %s", reason, logs.String())
		}
	}
	if n := s.tlsListeners()[0].errors.Load(); n < 3 {
		t.Errorf("handshake errors counted: %d", n)
	}

	// client_auth: require
	conf := ca.clientConfig("gw.example")
	if c, err := tls.Dial("tcp", addrs[1], conf); err == nil {
		_, _, err = getBody(c, "/fb/x")
		c.Close()
		if err == nil {
			t.Errorf("client_auth require: served without a client certificate")
		}
	}
	pairC, err := tls.LoadX509KeyPair(ccert, ckey)
	if err != nil {
		t.Fatal(err)
	}
	conf.Certificates = []tls.Certificate{pairC}
	c, err := tls.Dial("tcp", addrs[1], conf)
	if err != nil {
		t.Fatalf("client_auth require with a certificate: %v", err)
	}
	defer c.Close()
	if code, body, err := getBody(c, "/fb/x"); err != nil || code != 200 || bodyField(body, "member") != "m1" {
		t.Errorf("client_auth require with a certificate: %d %q %v", code, body, err)
	}
}

// TestHTTPSInChromium loads a page through the TLS listener in headless Chromium, which
// speaks HTTP/2 there: the member's answer arrives, and over HTTP/2.
func TestHTTPSInChromium(t *testing.T) {
	bin := chromiumPath()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; CI installs it (.ci/run)")
		}
		t.Skip("chromium is not installed (apt-get install chromium); skipping the browser test")
	}
	ca := newTestCA(t)
	cert, key := ca.issue("gw", false, "localhost", "127.0.0.1")
	dm := startDemoMembers(t, "m1", "Node1")
	cfg := gwConfig(gwGroup("fb", "/fb", routed(gwMember("m1", dm[0].Addr()), "Node1")))
	cfg.Listeners = []config.Listener{tlsListenerCfg(pair(cert, key))}
	s, addrs := startListeners(t, cfg, zerolog.Nop())
	dom := string(runChromium(t, bin, "--ignore-certificate-errors", "--dump-dom", "https://"+addrs[0]+"/fb/app"))
	if !strings.Contains(dom, "member=m1 clone=Node1") {
		t.Fatalf("Chromium over https: %q, want the member's answer", trimForLog(dom))
	}
	if s.stats.h2Requests.Load() == 0 {
		t.Errorf("Chromium's request did not come over HTTP/2")
	}
}

// TestTLSShutdownWithPendingHandshake: a client that connected and said nothing does
// not hold up a shutdown, and its connection is closed with it, not at its handshake
// timeout.
func TestTLSShutdownWithPendingHandshake(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue("gw", false, "gw.example")
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("m1", startFastMember(t, idMember("m1")))))
	cfg.Server.HeaderTimeout = time.Hour
	cfg.Server.ReadTimeout = time.Hour
	cfg.Listeners = []config.Listener{tlsListenerCfg(pair(cert, key))}
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
	silent, err := net.Dial("tcp", lns[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitFor(t, "the silent client's handshake to start", func() bool { return s.tlsListeners()[0].pending.Load() == 1 })
	if err := s.Shutdown(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(scaled(5 * time.Second)):
		t.Fatal("Serve did not return: a pending handshake held up the shutdown")
	}
	silent.SetReadDeadline(time.Now().Add(scaled(5 * time.Second))) //nolint:errcheck // test
	if _, err := silent.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the pending handshake's connection outlived the shutdown")
	}
}

// TestForwardedPortReplaced: the client's own X-Forwarded-Port (any number of them) is
// replaced by the listener's port, one header.
func TestForwardedPortReplaced(t *testing.T) {
	addr := startHTTPMember(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ports=%s\n", strings.Join(r.Header.Values("X-Forwarded-Port"), ","))
	}))
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("m1", addr)))
	_, gw := startGateway(t, cfg, zerolog.Nop())
	_, port, _ := net.SplitHostPort(gw)
	resp, body := rawRoundTrip(t, gw, "GET /fb/x HTTP/1.1\r\nHost: app\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Port: 2\r\n\r\n")
	if resp.StatusCode != 200 || bodyField(body, "ports") != port {
		t.Fatalf("member saw X-Forwarded-Port %q, want %s alone", bodyField(body, "ports"), port)
	}
}
