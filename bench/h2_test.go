package bench

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/demo"
)

// h2Server is a TLS 1.3 server with HTTP/2 alone in front of one member, a stand-in for
// a proxy in the h2 load: it counts its connections and the most streams one of them
// had in flight at once, and answers a request that is not HTTP/2 with 505.
type h2Server struct {
	srv         *httptest.Server
	conns       atomic.Int64
	maxInFlight atomic.Int64
}

type inFlightKey struct{}

func startH2Server(t *testing.T, certs *certFiles, member string) *h2Server {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certs.Cert, certs.Key)
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse("http://" + member)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	rp := &httputil.ReverseProxy{Transport: tr, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host
	}}
	hs := &h2Server{}
	hs.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "HTTP/2 only", http.StatusHTTPVersionNotSupported)
			return
		}
		n := r.Context().Value(inFlightKey{}).(*atomic.Int64)
		cur := n.Add(1)
		defer n.Add(-1)
		for m := hs.maxInFlight.Load(); cur > m && !hs.maxInFlight.CompareAndSwap(m, cur); m = hs.maxInFlight.Load() {
		}
		rp.ServeHTTP(w, r)
	}))
	hs.srv.EnableHTTP2 = true
	hs.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}}
	hs.srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, inFlightKey{}, new(atomic.Int64))
	}
	hs.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			hs.conns.Add(1)
		}
	}
	hs.srv.StartTLS()
	t.Cleanup(hs.srv.Close)
	return hs
}

// The h2 load: Options.H2Conns connections, each carrying several streams at once, every
// request with its session's cookie and kept on its member; against a server that
// negotiates no h2, every request fails as not HTTP/2.
func TestH2Load(t *testing.T) {
	certs, err := newCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var members []*demo.Member
	for _, id := range []string{"n1", "n2"} {
		m, err := demo.Start(demo.Options{ID: id, IDs: demo.Plain})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		members = append(members, m)
	}
	o := shortOptions()
	o.Duration, o.Requests = time.Minute, 600
	o.H2Conns, o.H2Streams = 3, 8
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}

	t.Run("h2", func(t *testing.T) {
		// One member behind the server: every session is bound to it, learned ones by
		// their Set-Cookie, the others by their first answer.
		hs := startH2Server(t, certs, members[0].Addr())
		addr := hs.srv.Listener.Addr().String()
		ph, err := measure(context.Background(), o, "h2server", addr, members, newSessions(o.Sessions, o.Mix, members, 0), inProcessProbe(), certs.h2ClientConfig(), LoadH2)
		if err != nil {
			t.Fatal(err)
		}
		if ph.Load != LoadH2 || ph.Requests < o.Requests || ph.ErrorCount != 0 || ph.StickyViolations != 0 || ph.MemberForeign != 0 {
			t.Fatalf("h2: load %q, %d requests, errors %v, sticky violations %d, member foreign %d; want h2, %d requests, none", ph.Load, ph.Requests, ph.Errors, ph.StickyViolations, ph.MemberForeign, o.Requests)
		}
		if n := hs.conns.Load(); n != int64(o.H2Conns) {
			t.Errorf("h2: the server saw %d connections, want %d (H2Conns)", n, o.H2Conns)
		}
		if ph.Handshakes > int64(o.H2Conns) {
			t.Errorf("h2: %d handshakes measured, want at most %d", ph.Handshakes, o.H2Conns)
		}
		if n := hs.maxInFlight.Load(); n < 2 || n > int64(o.H2Streams) {
			t.Errorf("h2: at most %d streams in flight on one connection, want 2-%d (H2Streams)", n, o.H2Streams)
		}
	})

	t.Run("no h2", func(t *testing.T) {
		// The terminator offers no ALPN: the client falls back to HTTP/1.1, and the load
		// counts each answer as an error instead of measuring HTTP/1.1 as h2.
		tt := startTLSTerminator(t, certs, members[0].Addr())
		o := o
		o.Requests = 50
		ph, err := measure(context.Background(), o, "tls", tt.ln.Addr().String(), members, newSessions(o.Sessions, o.Mix, members, 0), inProcessProbe(), certs.h2ClientConfig(), LoadH2)
		if err != nil {
			t.Fatal(err)
		}
		if ph.Errors["not_h2"] == 0 || ph.ErrorCount != ph.Requests {
			t.Errorf("no h2: %d requests, errors %v; want every one not_h2", ph.Requests, ph.Errors)
		}
	})

	t.Run("needs TLS", func(t *testing.T) {
		if _, err := measure(context.Background(), o, "plain", members[0].Addr(), members, newSessions(o.Sessions, o.Mix, members, 0), inProcessProbe(), nil, LoadH2); err == nil {
			t.Error("h2 load without TLS: no error")
		}
	})
}
