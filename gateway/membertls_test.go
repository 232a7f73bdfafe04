package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
)

// writeFile writes data into the test's temporary directory and returns the path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsMember is an HTTPS member (net/http) on a loopback port: it answers
// "member=<id> client=<CN of the client certificate, or ->", and /health with 200.
type tlsMember struct {
	addr   string
	srv    *http.Server
	conns  atomic.Int64 // connections accepted
	closed atomic.Int64 // and closed
}

func startTLSMember(t *testing.T, id string, cfg *tls.Config) *tlsMember {
	t.Helper()
	ln := tls.NewListener(listenLoopback(t), cfg)
	body := "member=" + id
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // refused handshakes are the point of some tests
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			client := "-"
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				client = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s client=%s tls=%t\n", body, client, r.TLS != nil)
		}),
	}
	m := &tlsMember{addr: ln.Addr().String(), srv: srv}
	srv.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			m.conns.Add(1)
		case http.StateClosed:
			m.closed.Add(1)
		}
	}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	return m
}

// memberServerTLS is a member's server side with cert; with clientCAs it requires
// and verifies a client certificate.
func memberServerTLS(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = clientCAs
	}
	return c
}

func TestMemberTLSProxyAndAffinity(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	cert, _, _ := ca.leaf(t, "members.internal", false)
	m1 := startTLSMember(t, "n1", memberServerTLS(cert, nil))
	m2 := startTLSMember(t, "n2", memberServerTLS(cert, nil))

	for _, tc := range []struct{ name, serverName string }{
		{"server_name", "members.internal"},
		{"ip from the address", ""}, // the certificate's IP SAN 127.0.0.1
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := gwGroup("g", "/", gwMember("n1", m1.addr), gwMember("n2", m2.addr))
			g.TLS = &config.MemberTLS{CAFile: caFile, ServerName: tc.serverName}
			var logs syncBuffer
			_, addr := startGateway(t, gwConfig(g), zerolog.New(&logs).Level(zerolog.WarnLevel))
			c := newHTTPClient(t)
			for _, route := range []string{"n1", "n2", "n1", "n2"} {
				resp, body := httpGet(t, c, "http://"+addr+"/x", "0000abcdefghijklmnopqrstuvw:"+route)
				if resp.StatusCode != http.StatusOK || bodyField(body, "member") != route || bodyField(body, "tls") != "true" {
					t.Fatalf("GET with route %s = %d %q, want 200 from member=%s over TLS; log:\n%s", route, resp.StatusCode, body, route, logs.String())
				}
			}
			// A POST with a body that streams through (doStreamed) goes over TLS too.
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/x", strings.NewReader(strings.Repeat("b", 100000)))
			req.Header.Set("Cookie", "JSESSIONID=0000abcdefghijklmnopqrstuvw:n2")
			resp, body := doHTTP(t, c, req)
			if resp.StatusCode != http.StatusOK || bodyField(body, "member") != "n2" {
				t.Fatalf("streamed POST = %d %q, want 200 from n2", resp.StatusCode, body)
			}
			if strings.Contains(logs.String(), `"level":"error"`) {
				t.Errorf("gateway logged errors:\n%s", logs.String())
			}
		})
	}
}

func TestMemberTLSActiveCheck(t *testing.T) {
	ca := newTestCA(t)
	caFile := writeFile(t, t.TempDir(), "ca.pem", ca.pem)
	cert, _, _ := ca.leaf(t, "members.internal", false)
	m1 := startTLSMember(t, "n1", memberServerTLS(cert, nil))
	m2 := startTLSMember(t, "n2", memberServerTLS(cert, nil))
	g := gwGroup("g", "/", gwMember("n1", m1.addr), gwMember("n2", m2.addr))
	g.TLS = &config.MemberTLS{CAFile: caFile, ServerName: "members.internal"}
	g.HealthCheck.Path = "/health"
	g.HealthCheck.Interval = 100 * time.Millisecond
	g.HealthCheck.Timeout = 90 * time.Millisecond
	g.HealthCheck.UnhealthyInterval = 100 * time.Millisecond
	g.HealthCheck.HealthyThreshold = 1
	g.HealthCheck.UnhealthyThreshold = 1
	g.HealthCheck.Start = "unhealthy" // up only once a check over TLS passed
	var logs syncBuffer
	s, addr := startGateway(t, gwConfig(g), zerolog.New(&logs).Level(zerolog.InfoLevel))
	n1, n2 := tableMember(t, s, "n1").State, tableMember(t, s, "n2").State
	waitFor(t, "both members up after checks over TLS", func() bool { return n1.Healthy() && n2.Healthy() })
	if r, ok := s.health.Last("n1"); !ok || !r.OK || r.Status != http.StatusOK {
		t.Errorf("last check of n1 = %+v, %v; want 200 OK", r, ok)
	}

	m2.srv.Close()
	waitFor(t, "n2 down once it stopped", func() bool { return !n2.Healthy() })
	if !n1.Healthy() {
		t.Errorf("n1 is down, want up")
	}
	resp, body := httpGet(t, newHTTPClient(t), "http://"+addr+"/x", "0000abcdefghijklmnopqrstuvw:n2")
	if resp.StatusCode != http.StatusOK || bodyField(body, "member") != "n1" {
		t.Errorf("GET bound to the stopped n2 = %d %q, want 200 from n1", resp.StatusCode, body)
	}
}

// accessLine returns the access line (a JSON object) of logs whose status is status.
func accessLine(t *testing.T, logs string, status int) map[string]any {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var v map[string]any
		if json.Unmarshal([]byte(line), &v) != nil || v["log"] != "access" {
			continue
		}
		if n, _ := v["status"].(float64); int(n) == status {
			return v
		}
	}
	t.Fatalf("no access line with status %d in:\n%s", status, logs)
	return nil
}

func TestMemberTLSWrongCA(t *testing.T) {
	memberCA, otherCA := newTestCA(t), newTestCA(t)
	caFile := writeFile(t, t.TempDir(), "ca.pem", otherCA.pem)
	cert, _, _ := memberCA.leaf(t, "members.internal", false)
	m1 := startTLSMember(t, "n1", memberServerTLS(cert, nil))
	g := gwGroup("g", "/", gwMember("n1", m1.addr))
	g.TLS = &config.MemberTLS{CAFile: caFile, ServerName: "members.internal"}
	var logs syncBuffer
	s, addr := startGateway(t, gwConfig(g), zerolog.New(&logs).Level(zerolog.InfoLevel))
	c := newHTTPClient(t)
	for range 3 {
		resp, body := httpGet(t, c, "http://"+addr+"/x", "")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("GET via a member whose certificate does not verify = %d %q, want 502", resp.StatusCode, body)
		}
	}
	out := logs.String()
	a := accessLine(t, out, http.StatusBadGateway)
	errText, _ := a["error"].(string)
	if a["member"] != "n1" || a["error_kind"] != "connect" || !strings.Contains(errText, "member n1") ||
		!strings.Contains(errText, "x509: certificate signed by unknown authority") {
		t.Errorf("access line %v: want member n1, error_kind connect and the x509 reason", a)
	}
	if n := strings.Count(out, `"message":"member TLS handshake failed"`); n != 1 {
		t.Errorf("%d handshake failure lines for one run of failures, want 1:\n%s", n, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"member TLS handshake failed"`) &&
			(!strings.Contains(line, `"member":"n1"`) || !strings.Contains(line, "x509: certificate signed by unknown authority")) {
			t.Errorf("handshake failure line %s: want the member and the x509 reason", line)
		}
	}
	// A connect failure: it counts against the member's passive health.
	if n := tableMember(t, s, "n1").State.Consecutive.Load(); n != 3 {
		t.Errorf("n1 has %d failures in a row, want 3", n)
	}
}

func TestMemberTLSClientCertificate(t *testing.T) {
	ca := newTestCA(t)
	clientCA := newTestCA(t)
	dir := t.TempDir()
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	_, clientPEM, clientKey := clientCA.leaf(t, "sessiongate", true)
	certFile := writeFile(t, dir, "client.pem", clientPEM)
	keyFile := writeFile(t, dir, "client-key.pem", clientKey)
	serverCert, _, _ := ca.leaf(t, "members.internal", false)
	m1 := startTLSMember(t, "n1", memberServerTLS(serverCert, clientCA.pool))

	t.Run("shown", func(t *testing.T) {
		g := gwGroup("g", "/", gwMember("n1", m1.addr))
		g.TLS = &config.MemberTLS{CAFile: caFile, ServerName: "members.internal", CertFile: certFile, KeyFile: keyFile}
		_, addr := startGateway(t, gwConfig(g), zerolog.Nop())
		resp, body := httpGet(t, newHTTPClient(t), "http://"+addr+"/x", "")
		if resp.StatusCode != http.StatusOK || bodyField(body, "client") != "sessiongate" {
			t.Errorf("GET via a member that requires a client certificate = %d %q, want 200 with client=sessiongate", resp.StatusCode, body)
		}
	})
	t.Run("missing", func(t *testing.T) {
		g := gwGroup("g", "/", gwMember("n1", m1.addr))
		g.TLS = &config.MemberTLS{CAFile: caFile, ServerName: "members.internal"}
		_, addr := startGateway(t, gwConfig(g), zerolog.Nop())
		resp, body := httpGet(t, newHTTPClient(t), "http://"+addr+"/x", "")
		// With TLS 1.3 the client learns of the refusal only when it reads: the request
		// went out, and the member closed the connection (502 either way).
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("GET without the client certificate the member requires = %d %q, want 502", resp.StatusCode, body)
		}
	})
}

func TestMemberTLSHandshakeTimeout(t *testing.T) {
	ln := listenLoopback(t) // accepts (the kernel does) and never speaks TLS
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	g := gwGroup("g", "/", gwMember("n1", ln.Addr().String()))
	g.TLS = &config.MemberTLS{}
	cfg := gwConfig(g)
	cfg.Client.DialTimeout = 200 * time.Millisecond
	var logs syncBuffer
	_, addr := startGateway(t, cfg, zerolog.New(&logs).Level(zerolog.InfoLevel))
	resp, body := httpGet(t, newHTTPClient(t), "http://"+addr+"/x", "")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("GET via a member that never answers the handshake = %d %q, want 502 (a connect failure)", resp.StatusCode, body)
	}
	a := accessLine(t, logs.String(), http.StatusBadGateway)
	if errText, _ := a["error"].(string); a["error_kind"] != "connect" || !strings.Contains(errText, "no handshake within client.dial_timeout") {
		t.Errorf("access line %v: want error_kind connect and the handshake timeout", a)
	}
}

func TestMemberTLSReload(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	cert, _, _ := ca.leaf(t, "members.internal", false)
	m1 := startTLSMember(t, "n1", memberServerTLS(cert, nil))
	plain := startHTTPMember(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "member=p1 tls=false") }))
	group := func(serverName string) []config.Group {
		g := gwGroup("g", "/", gwMember("n1", m1.addr))
		g.TLS = &config.MemberTLS{CAFile: caFile, ServerName: serverName}
		return []config.Group{g, gwGroup("plain", "/plain", gwMember("p1", plain))}
	}
	s, addr := startGateway(t, gwConfig(group("members.internal")...), zerolog.Nop())
	client := func() any { return s.snap.Load().clients[tableMember(t, s, "n1").Index] }
	get := func(path, want string) {
		t.Helper()
		resp, body := httpGet(t, newHTTPClient(t), "http://"+addr+path, "")
		if resp.StatusCode != http.StatusOK || bodyField(body, "member") != want {
			t.Fatalf("GET %s = %d %q, want 200 from %s", path, resp.StatusCode, body, want)
		}
	}
	get("/x", "n1")
	get("/plain/x", "p1")
	first := client()

	if err := s.Reload(gwConfig(group("members.internal")...)); err != nil {
		t.Fatalf("Reload(same) = %v", err)
	}
	if client() != first {
		t.Errorf("reload with the same tls block made a new pool, want it kept")
	}
	if err := s.Reload(gwConfig(group("")...)); err != nil {
		t.Fatalf("Reload(server_name changed) = %v", err)
	}
	second := client()
	if second == first {
		t.Errorf("reload with another server_name kept the pool, want a new one")
	}
	get("/x", "n1")

	// Renewed files (the same path): a new config, used by new connections.
	other := newTestCA(t)
	writeFile(t, dir, "ca.pem", append(append([]byte{}, ca.pem...), other.pem...))
	if err := s.Reload(gwConfig(group("")...)); err != nil {
		t.Fatalf("Reload(renewed ca_file) = %v", err)
	}
	if client() == second {
		t.Errorf("reload with a renewed ca_file kept the pool, want a new one")
	}
	get("/x", "n1")

	// A file that no longer parses refuses the reload; the running snapshot stays.
	writeFile(t, dir, "ca.pem", []byte("not a certificate\n"))
	err := s.Reload(gwConfig(group("")...))
	if err == nil || !strings.Contains(err.Error(), `target_groups[0].tls.ca_file: "`+caFile+`": no PEM certificate found`) {
		t.Fatalf("Reload(broken ca_file) = %v, want the ca_file error", err)
	}
	get("/x", "n1")
}

func TestKindOfMemberTLS(t *testing.T) {
	cause := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	for _, err := range []error{
		&memberTLSError{member: "n1", addr: "a:1", err: cause},
		&memberTLSError{member: "n1", addr: "a:1", err: fmt.Errorf("no handshake: %w", os.ErrDeadlineExceeded)},
	} {
		if k := kindOf(err); k != kindConnect {
			t.Errorf("kindOf(%v) = %s, want connect", err, errKindNames[k])
		}
		if f, ok := memberFault(err, kindOf(err)); !ok || f.String() != "connect" {
			t.Errorf("memberFault(%v) = %v, %v; want connect, counted", err, f, ok)
		}
	}
	var ve *tls.CertificateVerificationError
	if err := error(&memberTLSError{err: cause}); !errors.As(err, &ve) {
		t.Errorf("errors.As(%v, *tls.CertificateVerificationError) = false, want the cause", err)
	}
}

// TestMemberTLSIdleReuse checks the memberConn under TLS: a pooled connection that sat
// idle is checked (one raw read) and used again, not taken for stale, and a member that
// closed it while idle (close_notify, then FIN) is replaced without a failed request.
func TestMemberTLSIdleReuse(t *testing.T) {
	ca := newTestCA(t)
	caFile := writeFile(t, t.TempDir(), "ca.pem", ca.pem)
	cert, _, _ := ca.leaf(t, "members.internal", false)
	m1 := startTLSMember(t, "n1", memberServerTLS(cert, nil))
	conns := &m1.conns
	g := gwGroup("g", "/", gwMember("n1", m1.addr))
	g.TLS = &config.MemberTLS{CAFile: caFile, ServerName: "members.internal"}
	s, addr := startGateway(t, gwConfig(g), zerolog.Nop())
	c := newHTTPClient(t)
	get := func() {
		t.Helper()
		resp, body := httpGet(t, c, "http://"+addr+"/x", "")
		if resp.StatusCode != http.StatusOK || bodyField(body, "member") != "n1" {
			t.Fatalf("GET = %d %q, want 200 from n1", resp.StatusCode, body)
		}
	}
	get()
	s.clock.Add(10) // the pooled connection has been idle: checked before it is used
	get()
	if n := conns.Load(); n != 1 {
		t.Errorf("member saw %d connections for two requests a pause apart, want 1 (reused)", n)
	}
	m1.srv.SetKeepAlivesEnabled(false) // closes the idle connection: close_notify, then FIN
	waitFor(t, "the member to close the idle connection", func() bool { return m1.closed.Load() == 1 })
	s.clock.Add(10)
	get() // the idle check finds the connection closed: a fresh one, no failure
	if n := conns.Load(); n != 2 {
		t.Errorf("member saw %d connections, want 2 (the closed one replaced)", n)
	}
}
