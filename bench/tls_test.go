package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/internal/demo"
)

// The certificate verifies for 127.0.0.1 and localhost against the CA alone, is an
// ECDSA P-256 key, and the combined file HAProxy reads holds the same pair.
func TestNewCerts(t *testing.T) {
	f, err := newCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatalf("LoadX509KeyPair(%s, %s): %v", f.Cert, f.Key, err)
	}
	leaf := pair.Leaf
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("leaf key %T, want ECDSA P-256", leaf.PublicKey)
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: f.pool}); err != nil {
			t.Errorf("leaf.Verify(%s): %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: f.pool}); err == nil {
		t.Error("leaf.Verify(example.com) = nil, want a name mismatch")
	}
	combined, err := os.ReadFile(f.CertKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(combined, combined); err != nil {
		t.Errorf("X509KeyPair(%s): %v", f.CertKey, err)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(caPEM); b == nil || b.Type != "CERTIFICATE" {
		t.Errorf("%s: no CERTIFICATE block", f.CA)
	}
}

// tlsTerminator accepts TLS 1.3 on loopback with the bench certificate and relays
// each connection to a member: a stand-in for a TLS proxy in front of one member.
type tlsTerminator struct {
	ln         net.Listener
	handshakes atomic.Int64
	resumed    atomic.Int64
	wg         sync.WaitGroup
}

func startTLSTerminator(t *testing.T, certs *certFiles, member string) *tlsTerminator {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certs.Cert, certs.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tt := &tlsTerminator{ln: ln}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}}
	tt.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tt.wg.Go(func() { tt.relay(tls.Server(c, cfg), member) })
		}
	})
	t.Cleanup(func() { ln.Close(); tt.wg.Wait() })
	return tt
}

func (tt *tlsTerminator) relay(c *tls.Conn, member string) {
	defer c.Close()
	if err := c.Handshake(); err != nil {
		return
	}
	tt.handshakes.Add(1)
	if c.ConnectionState().DidResume {
		tt.resumed.Add(1)
	}
	m, err := net.Dial("tcp", member)
	if err != nil {
		return
	}
	defer m.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(c, m) // the member's answers; ends when the member closes
		c.CloseWrite()       //nolint:errcheck // best effort
		close(done)
	}()
	_, _ = io.Copy(m, c)
	m.(*net.TCPConn).CloseWrite() //nolint:errcheck // best effort
	<-done
}

// The TLS load generator: keep-alive connections handshake once, in the warm-up; the
// handshake load makes one full handshake per request, never resumed.
func TestTLSLoad(t *testing.T) {
	certs, err := newCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m, err := demo.Start(demo.Options{ID: "n1", IDs: demo.Plain})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	members := []*demo.Member{m}
	tt := startTLSTerminator(t, certs, m.Addr())
	o := shortOptions()
	o.Duration, o.Requests = time.Minute, 300
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{LoadKeepAlive, LoadHandshake} {
		t.Run(kind, func(t *testing.T) {
			before := tt.handshakes.Load()
			ph, err := measure(context.Background(), o, "tls", tt.ln.Addr().String(), members, newSessions(o.Sessions, o.Mix, members, 0), inProcessProbe(), certs.clientConfig(), kind)
			if err != nil {
				t.Fatal(err)
			}
			if ph.Load != kind || ph.Requests < o.Requests || ph.ErrorCount != 0 || ph.StickyViolations != 0 {
				t.Fatalf("phase %q: %d requests, errors %v, sticky violations %d; want %q, %d requests, none, 0", ph.Load, ph.Requests, ph.Errors, ph.StickyViolations, kind, o.Requests)
			}
			served := tt.handshakes.Load() - before
			switch kind {
			case LoadKeepAlive:
				if ph.Handshakes != 0 || served > int64(o.Conns) {
					t.Errorf("keep-alive: %d measured handshakes, %d served; want 0 measured and at most %d (one per connection)", ph.Handshakes, served, o.Conns)
				}
			case LoadHandshake:
				if lo, hi := ph.Requests-int64(o.Conns), ph.Requests+int64(o.Conns); ph.Handshakes < lo || ph.Handshakes > hi {
					t.Errorf("handshake: %d measured handshakes for %d requests, want one per request", ph.Handshakes, ph.Requests)
				}
				if served < ph.Handshakes {
					t.Errorf("handshake: the server saw %d handshakes, the client measured %d", served, ph.Handshakes)
				}
			}
			if n := tt.resumed.Load(); n != 0 {
				t.Errorf("%d resumed sessions, want none (the client keeps no session cache)", n)
			}
		})
	}
	// The negotiated parameters: TLS 1.3 with X25519, and TLS 1.2 refused.
	s, err := tlsParams(tt.ln.Addr().String(), certs.clientConfig())
	if err != nil || !strings.Contains(s, "TLS 1.3") || !strings.Contains(s, "X25519") || !strings.Contains(s, "TLS 1.2 refused") {
		t.Errorf("tlsParams = %q, %v; want TLS 1.3, X25519 and TLS 1.2 refused", s, err)
	}
}

// The peers' TLS configuration: the same certificate, TLS 1.3 only, members over plain
// HTTP, and the session affinity of the plain configuration unchanged. When the peer
// is installed, it checks the file too.
func TestPeerTLSConfig(t *testing.T) {
	dir := t.TempDir()
	certs, err := newCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	members := []*demo.Member{{ID: "n1", Route: "n1"}, {ID: "n2", Route: "n2"}}
	addrs := []string{"127.0.0.1:9001", "127.0.0.1:9002"}
	haproxyCheck := func(file string) *exec.Cmd { return exec.Command("haproxy", "-c", "-q", "-f", file) }
	nginxCheck := func(file string) *exec.Cmd {
		return exec.Command("nginx", "-t", "-q", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", file)
	}
	for _, tc := range []struct {
		name  string
		conf  func(*certFiles) []byte
		want  []string
		check func(file string) *exec.Cmd
	}{
		{"haproxy", func(c *certFiles) []byte { return haproxyConfig("127.0.0.1:8443", members, addrs, c, false) },
			[]string{"bind 127.0.0.1:8443 ssl crt " + certs.CertKey + " ssl-min-ver TLSv1.3 alpn http/1.1 ", "server n1 127.0.0.1:9001\n"},
			haproxyCheck},
		{"haproxy/h2", func(c *certFiles) []byte { return haproxyConfig("127.0.0.1:8443", members, addrs, c, true) },
			[]string{"bind 127.0.0.1:8443 ssl crt " + certs.CertKey + " ssl-min-ver TLSv1.3 alpn h2,http/1.1 ", "server n1 127.0.0.1:9001\n"},
			haproxyCheck},
		{"nginx", func(c *certFiles) []byte { return nginxConfig("127.0.0.1:8443", dir, members, addrs, c, false) },
			[]string{"listen 127.0.0.1:8443 ssl;", "ssl_protocols TLSv1.3;", "ssl_certificate " + certs.Cert + ";", "ssl_certificate_key " + certs.Key + ";", "server 127.0.0.1:9001; keepalive"},
			nginxCheck},
		{"nginx/h2", func(c *certFiles) []byte { return nginxConfig("127.0.0.1:8443", dir, members, addrs, c, true) },
			[]string{"listen 127.0.0.1:8443 ssl http2;", "ssl_protocols TLSv1.3;", "ssl_certificate " + certs.Cert + ";", "server 127.0.0.1:9001; keepalive"},
			nginxCheck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain, withTLS := tc.conf(nil), tc.conf(certs)
			for _, w := range tc.want {
				if !bytes.Contains(withTLS, []byte(w)) {
					t.Errorf("config does not contain %q:\n%s", w, withTLS)
				}
			}
			if bytes.Contains(plain, []byte("ssl")) || bytes.Contains(plain, []byte("h2")) {
				t.Errorf("plain config mentions ssl or h2:\n%s", plain)
			}
			// The affinity rules are those of the plain configuration.
			affinity := func(b []byte) string {
				var keep []string
				for l := range strings.SplitSeq(string(b), "\n") {
					if strings.Contains(l, "JSESSIONID") || strings.Contains(l, "sg_") {
						keep = append(keep, l)
					}
				}
				return strings.Join(keep, "\n")
			}
			if a, b := affinity(plain), affinity(withTLS); a == "" || a != b {
				t.Errorf("affinity rules differ:\nplain:\n%s\ntls:\n%s", a, b)
			}
			bin, _, _ := strings.Cut(tc.name, "/")
			if _, err := exec.LookPath(bin); err != nil {
				t.Skipf("%s not installed: configuration file not checked", bin)
			}
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, "/", "-")+".conf")
			if err := os.WriteFile(file, withTLS, 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := tc.check(file).CombinedOutput(); err != nil {
				t.Errorf("%s rejects its TLS configuration: %v\n%s\n%s", bin, err, out, withTLS)
			}
		})
	}
}

// Sessiongate's ratios are to the peer with the most req/s of the same load, and the
// table says whether each target is met.
func TestBestPeerRatios(t *testing.T) {
	ph := func(name, load string, rps float64, cpu time.Duration) Phase {
		return Phase{Name: name, Load: load, RPS: rps, P50: time.Millisecond, P99: 2 * time.Millisecond, CPUPerRequest: cpu, CPUScope: "proxy process"}
	}
	r := &Report{TLS: true, Conns: 16, H2Conns: 4, H2Streams: 16, Phases: []Phase{
		ph("sessiongate", LoadKeepAlive, 1000, 30*time.Microsecond),
		ph("sessiongate", LoadHandshake, 170, 300*time.Microsecond),
		ph("haproxy", LoadKeepAlive, 900, 30*time.Microsecond),
		ph("haproxy", LoadHandshake, 200, 250*time.Microsecond),
		ph("nginx", LoadKeepAlive, 950, 20*time.Microsecond),
		ph("nginx", LoadHandshake, 180, 200*time.Microsecond),
		ph("sessiongate", LoadH2, 800, 45*time.Microsecond),
		ph("haproxy", LoadH2, 1000, 33*time.Microsecond),
		ph("nginx", LoadH2, 900, 25*time.Microsecond),
	}}
	r.computeRatios()
	for _, tc := range []struct {
		load, best string
		rps        float64
		target     float64
	}{
		{LoadKeepAlive, "nginx", 1000.0 / 950, TargetKeepAliveTLS},
		{LoadHandshake, "haproxy", 170.0 / 200, TargetHandshake},
		{LoadH2, "haproxy", 800.0 / 1000, 0},
	} {
		p := r.PhaseLoad("sessiongate", tc.load)
		if p.BestPeer != tc.best || p.VsBestPeer == nil || p.VsBestPeer.RPS != tc.rps || p.Target != tc.target {
			t.Errorf("sessiongate %s: best peer %q, ratios %+v, target %v; want %q, req/s %.3f, %v", tc.load, p.BestPeer, p.VsBestPeer, p.Target, tc.best, tc.rps, tc.target)
		}
		if p.VsDirect != nil || p.VsHAProxy != nil {
			t.Errorf("sessiongate %s: ratios to direct %+v and haproxy %+v, want none in the TLS bench", tc.load, p.VsDirect, p.VsHAProxy)
		}
	}
	if p := r.PhaseLoad("haproxy", LoadKeepAlive); p.VsBestPeer != nil {
		t.Errorf("haproxy: ratios to the best peer %+v, want none (sessiongate only)", p.VsBestPeer)
	}
	// h2 against keep-alive on the same proxy, for every proxy.
	for _, tc := range []struct {
		name string
		cpu  float64
	}{{"sessiongate", 1.5}, {"haproxy", 1.1}, {"nginx", 1.25}} {
		if p := r.PhaseLoad(tc.name, LoadH2); p.VsKeepAlive == nil || p.VsKeepAlive.CPU < tc.cpu-1e-9 || p.VsKeepAlive.CPU > tc.cpu+1e-9 {
			t.Errorf("%s h2: ratios to keep-alive %+v, want CPU/req %.2f", tc.name, p.VsKeepAlive, tc.cpu)
		}
		if p := r.PhaseLoad(tc.name, LoadKeepAlive); p.VsKeepAlive != nil {
			t.Errorf("%s keep-alive: ratios to keep-alive %+v, want none", tc.name, p.VsKeepAlive)
		}
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"sessiongate/nginx keep-alive (best peer): req/s 1.05 (target >= 1.00: met)",
		"sessiongate/haproxy handshake (best peer): handshakes/s 0.85 (target >= 0.90: missed)",
		"sessiongate/haproxy h2 (best peer): req/s 0.80, p50 1.00x, p99 1.00x, CPU/req 1.36x\n",
		"sessiongate h2/http1.1 (h2 over keep-alive, same proxy): CPU/req 1.50x, req/s 0.80 (64 streams in flight against 16 connections)",
		"nginx h2/http1.1 (h2 over keep-alive, same proxy): CPU/req 1.25x",
		"handshakes",
		", h2 4 conns x 16 streams\n",
		"h2: HTTP/2 (ALPN h2) on 4 kept TLS 1.3 connections, 16 concurrent streams each",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteTable does not contain %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| path | load | req/s | p50 |",
		"| --- | --- |",
		"| sessiongate | handshake | 170 |",
		"- sessiongate/haproxy handshake (best peer): handshakes/s 0.85",
		"| sessiongate | h2 | 800 |",
		"- sessiongate h2/http1.1 (h2 over keep-alive, same proxy): CPU/req 1.50x",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteMarkdown does not contain %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"load": "h2"`, `"vs_keep_alive": {`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteJSON does not contain %q:\n%s", want, b.String())
		}
	}
}

// A TLS run with HAProxy and NGINX when installed: the three loads of each, h2
// included, without errors, HAProxy keeps every session, and sessiongate has its
// ratios to the best peer.
func TestRunTLSPeers(t *testing.T) {
	o := shortOptions()
	o.TLS = true
	for _, name := range []string{"haproxy", "nginx"} {
		if _, err := exec.LookPath(name); err == nil {
			o.Peers = append(o.Peers, name)
		}
	}
	if len(o.Peers) == 0 {
		t.Skip("neither haproxy nor nginx is installed")
	}
	r := run(t, o)
	for _, name := range o.Peers {
		for _, load := range []string{LoadKeepAlive, LoadHandshake, LoadH2} {
			p := r.PhaseLoad(name, load)
			if p == nil {
				t.Fatalf("no phase %s %s; notes %q", name, load, r.Notes)
			}
			if p.Requests == 0 || p.ErrorCount != 0 || name == "haproxy" && p.StickyViolations != 0 {
				t.Errorf("%s %s: %d requests, errors %v, sticky violations %d", name, load, p.Requests, p.Errors, p.StickyViolations)
			}
		}
	}
	for _, load := range []string{LoadKeepAlive, LoadHandshake, LoadH2} {
		p := r.PhaseLoad("sessiongate", load)
		if p == nil || p.VsBestPeer == nil || !slices.Contains(o.Peers, p.BestPeer) {
			t.Errorf("sessiongate %s: %+v, want ratios to one of %q", load, p, o.Peers)
		}
	}
}

// The gateway's TLS configuration file means what the bench intends: one TLS 1.3
// listener with the bench certificate, HTTP/2 off but for the h2 load, the plain
// listen shorthand unused, and the same members as the plain bench.
func TestGatewayTLSYAML(t *testing.T) {
	certs, err := newCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	members := []*demo.Member{{ID: "n1", Route: "n1"}, {ID: "n2", Route: "n2"}}
	addrs := []string{"127.0.0.1:9001", "127.0.0.1:9002"}
	yml := gatewayYAML("127.0.0.1:8443", false, "", members, addrs, certs, false)
	cfg, err := config.Parse(yml)
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, yml)
	}
	if len(cfg.Listeners) != 1 {
		t.Fatalf("%d listeners, want 1\n%s", len(cfg.Listeners), yml)
	}
	l := cfg.Listeners[0]
	if l.Address != "127.0.0.1:8443" || l.HTTP2 || l.ProxyProtocol || l.TLS == nil {
		t.Fatalf("listener %+v, want 127.0.0.1:8443 with TLS, no HTTP/2, no PROXY protocol", l)
	}
	if l.TLS.MinVersion != "1.3" || len(l.TLS.Certificates) != 1 || l.TLS.Certificates[0] != (config.Certificate{CertFile: certs.Cert, KeyFile: certs.Key}) {
		t.Errorf("listener TLS %+v, want min_version 1.3 and the certificate %s, %s", *l.TLS, certs.Cert, certs.Key)
	}
	h2, err := config.Parse(gatewayYAML("127.0.0.1:8443", false, "", members, addrs, certs, true))
	if err != nil {
		t.Fatal(err)
	}
	if l := h2.Listeners[0]; !l.HTTP2 || l.TLS == nil || l.TLS.MinVersion != "1.3" || l.Address != "127.0.0.1:8443" {
		t.Errorf("h2 listener %+v, want 127.0.0.1:8443 with TLS 1.3 and HTTP/2", l)
	}
	plain, err := config.Parse(gatewayYAML("127.0.0.1:8080", false, "", members, addrs, nil, false))
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.Listeners) != 0 || plain.Listen != "127.0.0.1:8080" {
		t.Errorf("plain: listen %q, %d listeners; want 127.0.0.1:8080 and none", plain.Listen, len(plain.Listeners))
	}
	if len(cfg.TargetGroups) != 1 || len(cfg.TargetGroups[0].Members) != 2 || cfg.TargetGroups[0].Members[1].Address != addrs[1] {
		t.Errorf("target groups %+v, want one group with the two members", cfg.TargetGroups)
	}
}

// The gateway behind its TLS listener, in-process: the three loads clean, connections
// kept in keep-alive and h2, one handshake per request in handshake, TLS 1.3
// negotiated, and h2 on the listener restarted with HTTP/2.
func TestRunTLSGateway(t *testing.T) {
	o := shortOptions()
	o.TLS = true
	o.Duration, o.Requests = time.Minute, 300
	r := run(t, o)
	for _, load := range []string{LoadKeepAlive, LoadHandshake, LoadH2} {
		p := r.PhaseLoad("sessiongate", load)
		if p == nil {
			t.Fatalf("no phase sessiongate %s; notes %q", load, r.Notes)
		}
		if p.Requests < o.Requests || p.ErrorCount != 0 || p.StickyViolations != 0 || p.MemberForeign != 0 {
			t.Errorf("sessiongate %s: %d requests, errors %v, sticky violations %d, member foreign %d; want %d, none", load, p.Requests, p.Errors, p.StickyViolations, p.MemberForeign, o.Requests)
		}
		want := int64(0)
		if load == LoadHandshake {
			want = p.Requests
		}
		if d := p.Handshakes - want; d < -int64(o.Conns) || d > int64(o.Conns) {
			t.Errorf("sessiongate %s: %d handshakes for %d requests, want about %d", load, p.Handshakes, p.Requests, want)
		}
		if p.VsBestPeer != nil || (p.Target == 0) != (load == LoadH2) {
			t.Errorf("sessiongate %s: ratios %+v with no peer, target %v", load, p.VsBestPeer, p.Target)
		}
		if (p.VsKeepAlive != nil) != (load == LoadH2) {
			t.Errorf("sessiongate %s: ratios to keep-alive %+v, want them for h2 alone", load, p.VsKeepAlive)
		}
	}
	for _, want := range []string{"sessiongate: TLS 1.3, ", "sessiongate h2: TLS 1.3, "} {
		found := false
		for _, n := range r.Notes {
			found = found || strings.HasPrefix(n, want) && strings.HasSuffix(n, "TLS 1.2 refused")
		}
		if !found {
			t.Errorf("notes %q, want %q...TLS 1.2 refused", r.Notes, want)
		}
	}
	if !slices.ContainsFunc(r.Notes, func(n string) bool {
		return strings.HasPrefix(n, "sessiongate h2: ") && strings.Contains(n, `ALPN "h2"`)
	}) {
		t.Errorf("notes %q, want h2 negotiated with sessiongate's HTTP/2 listener", r.Notes)
	}
}
