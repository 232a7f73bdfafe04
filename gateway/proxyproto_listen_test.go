package gateway

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
)

// TestProxyProtocolListener: on a proxy_protocol listener the address of a v1 or v2
// header is the client's in X-Forwarded-For and the access log, over plain HTTP and
// TLS; a connection without a header is closed with one log line while others are
// served; v2 LOCAL (a balancer's own health check) keeps the peer's address; and
// server.max_conns_per_ip counts the header's address.
func TestProxyProtocolListener(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue("gw", false, "gw.example")
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("m1", startFastMember(t, fwdMember("m1")))))
	plain := config.Listener{Address: "127.0.0.1:0", ProxyProtocol: true}
	secure := tlsListenerCfg(pair(cert, key))
	secure.ProxyProtocol = true
	cfg.Listeners = []config.Listener{plain, secure}
	cfg.Server.MaxConnsPerIP = 1
	var logs syncBuffer
	s, addrs := startListeners(t, cfg, zerolog.New(&logs))

	send := func(addr string, header []byte, useTLS bool) (*http.Response, string, net.Conn) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, scaled(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(scaled(5 * time.Second))) //nolint:errcheck // test
		if _, err := c.Write(header); err != nil {
			t.Fatal(err)
		}
		var conn net.Conn = c
		if useTLS {
			conn = tls.Client(c, ca.clientConfig("gw.example"))
		}
		if _, err := conn.Write([]byte("GET /fb/x HTTP/1.1\r\nHost: gw.example\r\n\r\n")); err != nil {
			return nil, err.Error(), conn
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return nil, err.Error(), conn
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp, b.String(), conn
	}

	resp, body, c1 := send(addrs[0], []byte("PROXY TCP4 203.0.113.7 192.0.2.1 51000 80\r\n"), false)
	if resp == nil || bodyField(body, "for") != "203.0.113.7" {
		t.Fatalf("v1 over http: %v %q, want X-Forwarded-For 203.0.113.7", resp, body)
	}
	resp, body, c2 := send(addrs[1], proxyV2(0x21, 0x21, v2Inet6("2001:db8::9", "2001:db8::1", 51000, 443), tlv(0x04, []byte("x"))), true)
	if resp == nil || bodyField(body, "for") != "2001:db8::9" || bodyField(body, "proto") != "https" {
		t.Fatalf("v2 over https: %v %q, want X-Forwarded-For 2001:db8::9 and https", resp, body)
	}
	waitFor(t, "the access lines", func() bool {
		return strings.Contains(logs.String(), `"client":"203.0.113.7"`) && strings.Contains(logs.String(), `"client":"2001:db8::9"`)
	})

	// A second connection from 203.0.113.7 while the first is open: past the limit of 1.
	resp, _, c3 := send(addrs[0], []byte("PROXY TCP4 203.0.113.7 192.0.2.1 51001 80\r\n"), false)
	if resp != nil && resp.StatusCode != 429 {
		t.Errorf("second connection of 203.0.113.7: %d, want 429 or closed", resp.StatusCode)
	}
	c3.Close()
	// Another address is served.
	resp, body, c4 := send(addrs[0], []byte("PROXY TCP4 198.51.100.4 192.0.2.1 51002 80\r\n"), false)
	if resp == nil || bodyField(body, "for") != "198.51.100.4" {
		t.Errorf("another client: %v %q", resp, body)
	}
	c4.Close()

	// No header: closed, one log line, others unaffected.
	raw, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte("GET /fb/x HTTP/1.1\r\nHost: gw\r\n\r\n")) //nolint:errcheck // test
	raw.SetReadDeadline(time.Now().Add(scaled(5 * time.Second)))
	if n, err := raw.Read(make([]byte, 64)); err == nil {
		t.Errorf("no PROXY header: %d bytes answered, want the connection closed", n)
	}
	raw.Close()
	waitFor(t, "the refusal logged", func() bool { return strings.Contains(logs.String(), "PROXY protocol header missing or invalid") })
	if s.stats.proxyRefused.Load() != 1 {
		t.Errorf("refusals counted: %d, want 1", s.stats.proxyRefused.Load())
	}
	// v2 LOCAL: the peer's own address.
	resp, body, c5 := send(addrs[0], proxyV2(0x20, 0x00), false)
	if resp == nil || bodyField(body, "for") != "127.0.0.1" {
		t.Errorf("v2 LOCAL: %v %q, want the peer's address", resp, body)
	}
	c5.Close()
	c1.Close()
	c2.Close()
}
