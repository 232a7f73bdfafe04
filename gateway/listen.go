package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/sessiongate/sessiongate/config"
)

// listenerInfo is what the request path knows of the listener a connection came in on:
// the port for X-Forwarded-Port, its TLS (nil: plain HTTP) and, on a plain listener
// with redirect_https, the port suffix of the https URL (":8443", or "" for 443).
type listenerInfo struct {
	index    int
	addr     string // the address it listens on
	port     []byte
	tls      *tlsListener
	redirect []byte // nil: no redirect
	proxy    bool
	epoll    bool // dataplane: epoll
}

// boundListener is one client listener socket, as Listen opened it.
type boundListener struct {
	net.Listener
	info *listenerInfo
}

// Listen opens the client listeners (cfg.ClientListeners) as configured: with
// reuseport, one SO_REUSEPORT socket per CPU for each. It returns every socket.
func (s *Server) Listen() ([]net.Listener, error) {
	cfg := s.snap.Load().cfg
	n := 1
	if cfg.ReusePort {
		n = max(1, runtime.GOMAXPROCS(0))
	}
	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	var infos []*listenerInfo
	for i, l := range cfg.ClientListeners() {
		info := &listenerInfo{index: i, proxy: l.ProxyProtocol, epoll: l.Dataplane == config.DataplaneEpoll}
		if l.TLS != nil {
			t, err := s.newTLSListener(cfg, i)
			if err != nil {
				closeAll()
				return nil, err
			}
			info.tls = t
		}
		addr := l.Address
		for range n {
			ln, err := listenTCP(cfg.ReusePort, addr)
			if err != nil {
				closeAll()
				return nil, errors.New("gateway: listen " + addr + ": " + err.Error())
			}
			lns = append(lns, &boundListener{Listener: ln, info: info})
			if info.port == nil {
				info.port = []byte(strconv.Itoa(portOf(ln.Addr())))
				info.addr = ln.Addr().String()
			}
			addr = ln.Addr().String() // an ephemeral port: all sockets of the listener share it
		}
		infos = append(infos, info)
	}
	// redirect_https goes to the first TLS listener's port.
	for i, l := range cfg.ClientListeners() {
		if !l.RedirectHTTPS {
			continue
		}
		for _, t := range infos {
			if t.tls != nil {
				infos[i].redirect = []byte{}
				if p := string(t.port); p != "443" {
					infos[i].redirect = []byte(":" + p)
				}
				break
			}
		}
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, lns...)
	s.infos = append(s.infos, infos...)
	s.mu.Unlock()
	return lns, nil
}

func portOf(a net.Addr) int {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Port
	}
	return 0
}

// Why an event loop hands a connection to fasthttp's path (sessiongate_epoll_handoffs_total).
const (
	handoffHead    = iota // a head fasthttp's path must answer: too large, bare LF, unparsed
	handoffVersion        // HTTP/1.0 (or another 1.x)
	handoffTarget         // a target not in origin-form
	handoffBody           // a chunked body, or one larger than the retry buffer
	handoffExpect         // Expect (100-continue)
	handoffUpgrade        // Upgrade (WebSocket)
	handoffGroup          // a group with TLS or host-name members
	numHandoffs
)

var handoffNames = [numHandoffs]string{"head", "version", "target", "body", "expect", "upgrade", "group"}

// serveListener serves one client socket: plain connections go to fasthttp as they are
// accepted; TLS ones are handshaken first, each in its own goroutine, then handed to
// fasthttp (HTTP/1.1) or the HTTP/2 server by their ALPN protocol. It returns how many
// results it sends on errc.
func (s *Server) serveListener(ln net.Listener, errc chan<- error) int {
	bl, ok := ln.(*boundListener)
	if !ok { // a listener of the caller's (tests): plain
		bl = &boundListener{Listener: ln, info: &listenerInfo{port: []byte(strconv.Itoa(portOf(ln.Addr())))}}
	}
	var src net.Listener = bl.Listener
	if bl.info.proxy {
		src = s.proxyListener(src, bl.info)
	}
	if bl.info.epoll {
		// The loops accept; the connections they hand over are served by fasthttp's
		// server (ServeConn). h1 only ends with it, for Serve's count.
		h1 := newChanListener(src.Addr())
		lp, err := s.startLoops()
		if err == nil {
			err = lp.addListener(src, bl.info)
		}
		if err != nil {
			go func() { errc <- err }()
			return 1
		}
		// Shutdown closes it with the sockets, so that Serve returns even when the
		// stop came before fasthttp had registered it.
		s.mu.Lock()
		s.listeners = append(s.listeners, h1)
		s.mu.Unlock()
		go func() { errc <- s.srv.Serve(h1) }()
		return 1
	}
	if bl.info.tls == nil {
		go func() { errc <- s.srv.Serve(&plainListener{Listener: src, s: s, info: bl.info}) }()
		return 1
	}
	h1 := newChanListener(src.Addr())
	var h2 *chanListener
	if bl.info.tls.http2 {
		h2 = newChanListener(src.Addr())
	}
	go s.handshakeLoop(src, bl.info, h1, h2)
	go func() { errc <- s.srv.Serve(h1) }()
	if h2 == nil {
		return 1
	}
	go func() { errc <- s.h2.Serve(h2) }()
	return 2
}

// plainListener hands fasthttp plain connections, each wrapped in a clientConn, past
// the per-client connection limit.
type plainListener struct {
	net.Listener
	s    *Server
	info *listenerInfo
}

func (l *plainListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		if !l.s.perIP.add(ip) {
			l.s.refuseConn(c, true)
			continue
		}
		cc := newClientConn(c)
		cc.info, cc.perIP, cc.s = l.info, ip, l.s
		cc.keep(l.s.waits)
		return cc, nil
	}
}

// handshakeLoop accepts TLS connections and handshakes each in a goroutine of its own,
// so that a slow or silent client holds up no other; the handshake has
// server.header_timeout. Done connections go to h1 or, when they chose h2, to h2.
func (s *Server) handshakeLoop(ln net.Listener, info *listenerInfo, h1, h2 *chanListener) {
	defer h1.Close()
	if h2 != nil {
		defer h2.Close()
	}
	// The handshakes under way: closed when the listener is, so that a shutdown does
	// not wait for silent clients' handshake timeouts.
	var wg sync.WaitGroup
	var mu sync.Mutex
	pending := map[net.Conn]struct{}{}
	defer func() {
		mu.Lock()
		for c := range pending {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return
		}
		ip := remoteIP(c.RemoteAddr())
		if !s.perIP.add(ip) {
			s.refuseConn(c, false)
			continue
		}
		mu.Lock()
		pending[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handshake(c, ip, info, h1, h2)
			mu.Lock()
			delete(pending, c)
			mu.Unlock()
		}()
	}
}

// handshake runs the TLS handshake of c and delivers it.
func (s *Server) handshake(c net.Conn, ip netip.Addr, info *listenerInfo, h1, h2 *chanListener) {
	t := info.tls
	t.pending.Add(1)
	defer t.pending.Add(-1)
	var ac *affinityConn
	inner := c
	if t.affinity.Load() {
		ac = newAffinityConn(c)
		inner = ac
	}
	tc := tls.Server(inner, t.outer)
	timeout := min(s.snap.Load().cfg.Server.HeaderTimeout, s.snap.Load().cfg.Server.ReadTimeout)
	tc.SetDeadline(time.Now().Add(timeout)) //nolint:errcheck // a failed set fails the handshake
	err := tc.Handshake()
	if err != nil {
		t.errors.Add(1)
		var rec tls.RecordHeaderError
		if errors.As(err, &rec) && rec.Conn != nil && looksLikeHTTP(rec.RecordHeader[:]) {
			// Plain HTTP on the TLS port: say so, as Go's net/http does.
			rec.Conn.SetWriteDeadline(time.Now().Add(time.Second))                                                      //nolint:errcheck // best effort
			rec.Conn.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")) //nolint:errcheck // best effort
		}
		s.log.Warn().Int("listener", info.index).Str("remote", c.RemoteAddr().String()).Str("reason", handshakeError(err)).
			Err(err).Msg("TLS handshake failed")
		c.Close()
		s.perIP.remove(ip)
		return
	}
	tc.SetDeadline(time.Time{}) //nolint:errcheck // fasthttp and net/http set their own
	hc := &tlsClientConn{tc: tc}
	if ac != nil {
		hc.id, hc.hasID = ac.id, true
	}
	if h2 != nil && tc.ConnectionState().NegotiatedProtocol == "h2" {
		s.h2conns.Store(tc, &h2Conn{Conn: tc, tc: tc, info: info, id: hc.id, hasID: hc.hasID, perIP: ip})
		if !h2.deliver(tc) {
			s.h2conns.Delete(tc)
			tc.Close()
			s.perIP.remove(ip)
		}
		return
	}
	hc.clientConn = clientConn{Conn: tc, inHead: true, info: info, perIP: ip, s: s}
	hc.keep(s.waits)
	if !h1.deliver(hc) {
		hc.Close()
	}
}

// looksLikeHTTP reports whether the first bytes of a connection are an HTTP method.
func looksLikeHTTP(b []byte) bool {
	switch string(b) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE":
		return true
	}
	return false
}

// refuseConn turns away a connection past server.max_conns_per_ip: a plain one with
// 429, as fasthttp does, a TLS one by closing it (it has not said hello yet).
func (s *Server) refuseConn(c net.Conn, plain bool) {
	s.stats.perIPRefused.Add(1)
	if plain {
		c.SetWriteDeadline(time.Now().Add(time.Second)) //nolint:errcheck // best effort
		c.Write(resp429)                                //nolint:errcheck // best effort
	}
	c.Close()
}

// resp429 is the answer to a plain connection past server.max_conns_per_ip.
var resp429 = func() []byte {
	body := "429 Too many connections from your address\n"
	return []byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body)
}()

// chanListener is a net.Listener fed by deliver: the handshaken connections of one
// protocol.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// deliver hands c to Accept; false once the listener is closed.
func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// newH2Server is the HTTP/2 server of the TLS listeners: the standard library's, fed
// handshaken connections that chose h2, each request bridged to the request path
// (serveH2).
func (s *Server) newH2Server(cfg *config.Config) *http.Server {
	return &http.Server{
		Handler:           http.HandlerFunc(s.serveH2),
		ReadHeaderTimeout: min(cfg.Server.HeaderTimeout, cfg.Server.ReadTimeout),
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          newStdLogger(s.log),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:      250,
			MaxReceiveBufferPerStream: 1 << 20,
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if v, ok := s.h2conns.LoadAndDelete(c); ok {
				return context.WithValue(ctx, h2ConnKey{}, v)
			}
			return ctx
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				if a := remoteIP(c.RemoteAddr()); a.IsValid() {
					s.perIP.remove(a)
				}
			}
		},
	}
}

// tlsListeners returns the TLS listeners.
func (s *Server) tlsListeners() []*tlsListener {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*tlsListener
	for _, i := range s.infos {
		if i.tls != nil {
			out = append(out, i.tls)
		}
	}
	return out
}

// reloadTLS loads every TLS listener's certificates and settings again from cfg. The
// first error leaves every listener as it was.
func (s *Server) reloadTLS(cfg *config.Config) error {
	ls := cfg.ClientListeners()
	type job struct {
		t *tlsListener
		l config.Listener
	}
	var jobs []job
	for _, t := range s.tlsListeners() {
		if t.index >= len(ls) || ls[t.index].TLS == nil {
			continue // the listener set changes at the next restart
		}
		jobs = append(jobs, job{t, ls[t.index]})
	}
	// Load all first, so that one bad file changes nothing.
	states := make([]*tlsState, len(jobs))
	keys := make([][][32]byte, len(jobs))
	for i, j := range jobs {
		st, k, err := loadTLSState("listeners["+strconv.Itoa(j.t.index)+"].tls", *j.l.TLS, j.t.http2)
		if err != nil {
			return err
		}
		states[i], keys[i] = st, k
	}
	for i, j := range jobs {
		if keys[i] != nil {
			j.t.outer.SetSessionTicketKeys(keys[i])
		}
		j.t.state.Store(states[i])
		j.t.affinity.Store(hasTLSResolver(cfg))
	}
	return nil
}

// watchCerts reloads the TLS of the listeners whose files changed, polling every
// interval, until stop.
func (s *Server) watchCerts(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, l := range s.tlsListeners() {
			if !l.changed() {
				continue
			}
			cfg := s.snap.Load().cfg
			ls := cfg.ClientListeners()
			if l.index >= len(ls) || ls[l.index].TLS == nil {
				continue
			}
			if err := l.reload(cfg, ls[l.index]); err != nil {
				s.stats.certReloadFailed.Add(1)
				s.log.Error().Err(err).Msg("certificate reload rejected: the running certificates stay")
				continue
			}
			s.log.Info().Int("listener", l.index).Msg("certificates reloaded: a file changed")
		}
	}
}

// proxyListener reads the PROXY protocol header of every connection of a
// proxy_protocol listener (server.header_timeout, each in its own goroutine) before the
// connection is served; one without a valid header is closed, logged and counted.
func (s *Server) proxyListener(ln net.Listener, info *listenerInfo) net.Listener {
	cfg := s.snap.Load().cfg
	timeout := min(cfg.Server.HeaderTimeout, cfg.Server.ReadTimeout)
	return newProxyListener(ln, timeout, func(remote net.Addr, err error) {
		s.stats.proxyRefused.Add(1)
		addr := ""
		if remote != nil {
			addr = remote.String()
		}
		s.log.Warn().Int("listener", info.index).Str("remote", addr).Err(err).
			Msg("PROXY protocol header missing or invalid: connection closed")
	})
}
