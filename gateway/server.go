package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/health"
	"github.com/sessiongate/sessiongate/router"
	"github.com/sessiongate/sessiongate/sessioncache"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/reuseport"
)

// Server is the gateway: a fasthttp server proxying to target groups, an admin
// listener, the health checker and the learned-session cache. Build it with New,
// run it with Serve (or ListenAndServe), stop it with Shutdown.
type Server struct {
	log    zerolog.Logger
	access zerolog.Logger
	level  *levelSampler // the run-time level of log and access
	out    io.Writer     // the logger's raw output (rawOutput), for combined access lines; nil: none
	clock  *ticker       // member connections' idle clock, and the connections' coarse clock
	waits  *clientWaits  // the client connections' timeouts
	conns  sync.Map      // *router.MemberState -> *connSet: each member's open connections

	tunnels    sync.Map      // *router.MemberState -> *tunnelSet: each member's open tunnels (tunnel.go)
	tunnelsOff atomic.Bool   // Shutdown is closing them: a new one closes at once
	tunnelStop chan struct{} // ends watchTunnels
	tunnelDone chan struct{} // closed when it has ended
	tunnelOnce sync.Once     // stopTunnels runs once

	snap   atomic.Pointer[snapshot]
	states *router.States
	cache  *sessioncache.Cache
	// shared is the optional shared store (session.shared), sharedCfg its settings at
	// start, and store what the learned resolver reads: the cache, or bindings over
	// both.
	shared    *sessioncache.Shared
	sharedCfg config.Shared
	store     router.Store
	health    *health.Checker
	series    *series // the status page's samples (series.go)

	srv   *fasthttp.Server
	admin *fasthttp.Server

	accessN atomic.Uint64
	stats   counters
	reloads reloadStats
	token   string // admin bearer token; "" refuses every mutation

	reloadMu sync.Mutex                     // one reload at a time
	loader   func() (*config.Config, error) // reads the file again for ReloadFile; nil: no file

	h2      *http.Server // HTTP/2 of the TLS listeners (listen.go, h2.go)
	h2conns sync.Map     // *tls.Conn -> *h2Conn, from its handshake to its ConnContext
	perIP   perIPCount   // server.max_conns_per_ip
	lp      loops        // the event loops of epoll listeners (loop_linux.go)
	fhLog   fasthttp.Logger

	mu        sync.Mutex
	listeners []net.Listener
	infos     []*listenerInfo // one per configured listener (Listen)
}

// snapshot is everything the request path reads, built together and swapped together.
type snapshot struct {
	cfg     *config.Config
	table   *router.Table
	clients []*fasthttp.HostClient // by router.Member.Index
	// memberTLS is each member's TLS client config (nil: plain HTTP), by Member.Index,
	// for the connections of tunnels, which are not pooled.
	memberTLS []*tls.Config
	// tls are the members' TLS client configs by key (membertls.go), for the next build
	// to reuse: an unchanged tls block keeps its pools and active checks across reloads.
	tls map[memberTLSKey]*tls.Config

	byID        map[string]*router.Member // table.Members by id (shared bindings hold ids)
	keyHeader   []byte                    // session.header, nil when unset
	cookieNames []string                  // session.cookies, as strings for fasthttp's PeekCookie
	urlParam    []byte
	learn       bool            // the chain has the learned resolver
	tlsAffinity bool            // the chain has tls: keyless TLS requests are keyed by their TLS session
	cookie      *affinityCookie // the chain has cookie: the signed affinity cookie; nil: not
	routeFormat router.Format
	maxBody     int64
	retry       config.Retry
	replayMax   int // largest body kept for a retry: min(retry_buffer, buffer_body_bytes)
	// loopAddrs are the members' addresses for the event loops (loop_linux.go), by
	// Member.Index: the zero AddrPort for one they do not dial (TLS, a host name);
	// loopGroups says by Group.Index whether a group's members are all dialled there.
	loopAddrs   []netip.AddrPort
	loopGroups  []bool
	trusted     []netip.Prefix // forwarded.trusted_proxies
	pathReject  bool           // server.path_normalization: reject
	rejectSlash bool           // server.reject_encoded_slashes
	// targets are what the health checker watches, compiled with the table: each
	// member with its group's active check, passive ejection and drain settings.
	targets        []health.Target
	accessOn       bool
	accessSample   uint64
	accessCombined bool // log.access_format: combined
}

// counters are the gateway-wide outcome counters (per member ones are in router.MemberState).
type counters struct {
	requests atomic.Uint64
	outcomes [router.NumOutcomes]atomic.Uint64
	errors   [numErrKinds]atomic.Uint64
	learned  atomic.Uint64
	moves    [router.NumMoveReasons]atomic.Uint64 // sessions moved, by reason
	refused  [router.NumMoveReasons]atomic.Uint64 // strict groups: 503 instead of a move
	retries  atomic.Uint64                        // attempts sent to another member
	replays  atomic.Uint64                        // retries that sent a request body again
	tunnels  atomic.Uint64                        // tunnels opened (101 answers)

	perIPRefused     atomic.Uint64                   // connections past server.max_conns_per_ip
	certReloadFailed atomic.Uint64                   // certificate files that changed but did not load
	redirects        atomic.Uint64                   // redirect_https answers
	cookies          [numCookieResults]atomic.Uint64 // affinity cookies of requests, by how they verified
	cookiesSet       atomic.Uint64                   // affinity cookies set in answers
	h2Requests       atomic.Uint64                   // requests over HTTP/2
	proxyRefused     atomic.Uint64                   // connections without a valid PROXY protocol header
	loopRequests     atomic.Uint64                   // requests the event loops served
	handoffs         [numHandoffs]atomic.Uint64      // connections the loops handed to fasthttp's path, by why
}

// New builds a Server from a validated config.Config. It starts the learned-session cache and
// the health checker; it opens no listener.
func New(cfg *config.Config, log zerolog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cache, err := sessioncache.New(sessioncache.Config{
		MaxSessions: int64(cfg.Session.Learned.MaxSessions),
		TTL:         cfg.Session.Learned.TTL,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: session.learned: %w", err)
	}
	token, err := loadToken(cfg.Admin)
	if err != nil {
		cache.Close()
		return nil, err
	}
	level, err := zerolog.ParseLevel(cfg.Log.Level)
	if err != nil {
		cache.Close()
		return nil, fmt.Errorf("gateway: log.level: %w", err)
	}
	// The Server's loggers take its own run-time level (levelSampler): the caller's
	// logger is opened wide, and the sampler decides.
	sampler := newLevelSampler(level)
	if log.GetLevel() != zerolog.Disabled { // a Nop logger stays off
		log = log.Level(zerolog.TraceLevel).Sample(sampler)
	}
	s := &Server{
		token:  token,
		level:  sampler,
		clock:  newTicker(),
		log:    log,
		access: log.With().Str("log", "access").Logger(),
		out:    rawOutput(log),
		states: router.NewStates(),
		cache:  cache,
		store:  cache,
	}
	b := &bindings{local: cache, snap: &s.snap}
	if s.shared, err = s.newShared(cfg, cache, b); err != nil {
		cache.Close()
		s.clock.Stop()
		return nil, err
	}
	if s.shared != nil {
		s.sharedCfg = cfg.Session.Shared
		b.shared = s.shared
		s.store = b
	}
	snap, err := s.build(cfg)
	if err != nil {
		s.closeShared()
		cache.Close()
		s.clock.Stop()
		return nil, err
	}
	s.snap.Store(snap)
	s.reloads.hash.Store(configHash(cfg))
	applyAdminStates(cfg, snap.table, nil)
	s.health = health.New(log, cfg.Session.BoundWindow)
	s.health.SetOnOut(s.shutdownSessions)
	s.health.Update(snap.targets)
	s.fhLog = fasthttpLogger{s.log}
	s.waits = newClientWaits(s.clock, cfg.Server.HeaderTimeout, cfg.Server.ReadTimeout, cfg.Server.WriteTimeout, cfg.Server.IdleTimeout)
	s.perIP.init(cfg.Server.MaxConnsPerIP)
	s.srv = s.newServer(cfg)
	s.h2 = s.newH2Server(cfg)
	if cfg.Admin.Listen != "" {
		s.admin = s.newAdminServer()
	}
	s.series = newSeries(seriesLen)
	s.series.start(seriesInterval, s.seriesReading)
	s.tunnelStop, s.tunnelDone = make(chan struct{}), make(chan struct{})
	go s.watchTunnels(s.tunnelStop, s.tunnelDone)
	return s, nil
}

// build compiles a config.Config into a snapshot, reusing the member clients of the current
// snapshot whose address and TLS config are unchanged, so that a reload keeps connection pools.
func (s *Server) build(cfg *config.Config) (*snapshot, error) {
	spec := router.Spec{
		Key: router.KeySpec{URLParam: []byte(cfg.Session.URLParam)},
	}
	for _, c := range cfg.Session.Cookies {
		spec.Key.Cookies = append(spec.Key.Cookies, []byte(c))
	}
	if cfg.Session.Query != "" {
		spec.Key.Query = []byte(cfg.Session.Query)
	}
	if cfg.Session.Header != "" {
		spec.Key.Header = []byte(cfg.Session.Header)
	}
	// The config is validated: every name parses.
	spec.Balance, _ = router.ParseBalance(cfg.Session.Balance)
	format, _ := router.ParseFormat(cfg.Session.RouteFormat)
	learn, withCookie := false, false
	tlsAt := -1
	for _, name := range cfg.Session.Affinity {
		switch r, _ := router.ParseResolver(name); r {
		case router.ResolveRoute:
			spec.Chain = append(spec.Chain, router.RouteResolver(format))
		case router.ResolveLearned:
			spec.Chain = append(spec.Chain, router.LearnedResolver(s.store))
			learn = true
		case router.ResolveHash:
			spec.Chain = append(spec.Chain, router.HashResolver())
		case router.ResolveTLS:
			tlsAt = len(spec.Chain) // the links after it resolve TLS session keys
		case router.ResolveCookie:
			spec.Chain = append(spec.Chain, router.CookieResolver())
			withCookie = true
		}
	}
	if tlsAt >= 0 {
		spec.TLSChain = append([]router.Link(nil), spec.Chain[tlsAt:]...)
	}
	for _, g := range cfg.TargetGroups {
		gs := router.GroupSpec{Name: g.Name, Hosts: g.Hosts, PathPrefix: g.PathPrefix, SwitchBack: g.SwitchBack, Strict: g.Strict}
		for _, m := range g.Members {
			gs.Members = append(gs.Members, router.MemberSpec{ID: m.ID, Addr: m.Address, Route: m.Route, Weight: m.Weight})
		}
		spec.Groups = append(spec.Groups, gs)
	}
	table, err := router.NewTable(spec, s.states)
	if err != nil {
		return nil, err
	}
	var prevTLS map[memberTLSKey]*tls.Config
	cur := s.snap.Load()
	if cur != nil {
		prevTLS = cur.tls
	}
	memberTLS, tlsByKey, err := s.memberTLS(cfg, table, prevTLS)
	if err != nil {
		return nil, err
	}
	// A pool is kept for the same member at the same address with the same TLS config
	// (memberTLS returns the previous pointer when nothing changed).
	type clientKey struct {
		id, addr string
		tls      *tls.Config
	}
	old := map[clientKey]*fasthttp.HostClient{}
	if cur != nil && cur.cfg.Client == cfg.Client && cur.cfg.Server.MaxHeaderBytes == cfg.Server.MaxHeaderBytes {
		for _, m := range cur.table.Members {
			c := cur.clients[m.Index]
			old[clientKey{m.ID, m.Addr, c.TLSConfig}] = c
		}
	}
	snap := &snapshot{
		cfg:            cfg,
		table:          table,
		clients:        make([]*fasthttp.HostClient, len(table.Members)),
		tls:            tlsByKey,
		keyHeader:      spec.Key.Header,
		urlParam:       spec.Key.URLParam,
		learn:          learn,
		tlsAffinity:    tlsAt >= 0,
		routeFormat:    format,
		maxBody:        cfg.Server.MaxBodyBytes,
		retry:          cfg.Retry,
		replayMax:      min(cfg.Retry.RetryBuffer, cfg.Server.BufferBodyBytes),
		accessOn:       cfg.Log.Access,
		accessSample:   uint64(max(cfg.Log.AccessSample, 1)),
		accessCombined: cfg.Log.AccessFormat == "combined",
	}
	snap.byID = make(map[string]*router.Member, len(table.Members))
	for _, m := range table.Members {
		snap.byID[m.ID] = m
	}
	snap.cookieNames = append(snap.cookieNames, cfg.Session.Cookies...)
	snap.pathReject = cfg.Server.PathNormalization == config.PathReject
	snap.rejectSlash = cfg.Server.RejectEncodedSlashes
	for _, p := range cfg.Forwarded.TrustedProxies {
		prefix, err := config.ParsePrefix(p) // validated
		if err != nil {
			return nil, err
		}
		snap.trusted = append(snap.trusted, prefix)
	}
	if withCookie {
		if snap.cookie, err = buildCookie(cfg.Session.Cookie, table); err != nil {
			return nil, fmt.Errorf("gateway: session.cookie: %w", err)
		}
	}
	snap.memberTLS = memberTLS
	snap.loopAddrs = make([]netip.AddrPort, len(table.Members))
	for _, m := range table.Members {
		if ap, err := netip.ParseAddrPort(m.Addr); err == nil && memberTLS[m.Index] == nil {
			snap.loopAddrs[m.Index] = ap
		}
	}
	snap.loopGroups = make([]bool, len(table.Groups))
	for _, g := range table.Groups {
		ok := true
		for _, m := range g.Members {
			ok = ok && snap.loopAddrs[m.Index].IsValid()
		}
		snap.loopGroups[g.Index] = ok
	}
	snap.targets = healthTargets(cfg, table, memberTLS)
	for _, g := range table.Groups {
		for _, m := range g.Members {
			if c, ok := old[clientKey{m.ID, m.Addr, memberTLS[m.Index]}]; ok {
				snap.clients[m.Index] = c
				continue
			}
			d := &memberDialer{member: m, group: g.Name, timeout: cfg.Client.DialTimeout, wait: cfg.Client.ReadTimeout, write: cfg.Client.WriteTimeout,
				clock: s.clock, set: s.connSet(m.State), tls: memberTLS[m.Index], log: s.log}
			snap.clients[m.Index] = newMemberClient(cfg, m, d)
		}
	}
	return snap, nil
}

// connSet returns the set of open connections of the member with state st.
func (s *Server) connSet(st *router.MemberState) *connSet {
	if v, ok := s.conns.Load(st); ok {
		return v.(*connSet)
	}
	v, _ := s.conns.LoadOrStore(st, &connSet{})
	return v.(*connSet)
}

// shutdownSessions closes the connections of a member that active checks marked down,
// so that the requests in flight on it end now: idempotent ones are retried on the
// successor at once instead of waiting for client.read_timeout (HAProxy's
// on-marked-down shutdown-sessions). Health calls it, once per transition.
func (s *Server) shutdownSessions(st *router.MemberState) {
	snap := s.snap.Load()
	for _, m := range snap.table.Members {
		if m.State == st {
			snap.clients[m.Index].CloseIdleConnections() // not handed out again when it is back
		}
	}
	s.lp.memberOut(st)
	if n := s.connSet(st).closeAll(); n > 0 {
		s.log.Info().Str("member", st.ID()).Int("connections", n).
			Msg("member out: its connections closed, requests in flight go elsewhere")
	}
	if snap.cfg.Server.CloseTunnelsOnDown {
		s.closeTunnels(st, tunnelMemberDown) // does not block: the closes run in the tunnels
	}
}

// newMemberClient is the connection pool of one member, dialling through d (plain, or
// TLS with the handshake bounded by client.dial_timeout: memberDialer). The proxy does
// its own error mapping and retries, so fasthttp retries only a request that met a
// pooled connection the member had closed (memberRetry); paths go out byte-exact and
// bodies stream. client.read_timeout and write_timeout are kept by the memberConn
// (coarse deadlines, deadline.go), not by fasthttp, which would set two deadlines per
// request.
func newMemberClient(cfg *config.Config, m *router.Member, d *memberDialer) *fasthttp.HostClient {
	dialTimeout := cfg.Client.DialTimeout
	return &fasthttp.HostClient{
		Addr:                      m.Addr,
		Dial:                      d.dial,
		IsTLS:                     d.tls != nil,
		TLSConfig:                 d.tls, // fasthttp's own handshake never runs: d.dial returns a *tls.Conn
		MaxConns:                  memberMaxConns(cfg.Client.MaxConns),
		MaxConnWaitTimeout:        dialTimeout,
		MaxIdleConnDuration:       cfg.Client.IdleTimeout,
		MaxIdemponentCallAttempts: memberAttempts, // only for stale pooled connections
		RetryIfErr:                memberRetry,
		ReadBufferSize:            max(cfg.Server.MaxHeaderBytes, 8192),
		DisablePathNormalizing:    true,
		NoDefaultUserAgentHeader:  true,
		StreamResponseBody:        true,
		SecureErrorLogMessage:     true,
	}
}

// memberMaxConns maps client.max_conns to fasthttp's: 0 means unlimited here, but
// fasthttp's own default (512) there.
func memberMaxConns(n int) int {
	if n == 0 {
		return math.MaxInt32
	}
	return n
}

// newServer is the client-facing fasthttp server.
//
// Deadlines on a client connection are the clientConn's (clientWaits), not
// fasthttp's, which would set four per request: header_timeout (cut to read_timeout)
// runs from a new connection's accept and, on a keep-alive one, from the first byte of
// each later request (the wait for that byte is idle_timeout); once the head is in,
// the body has read_timeout from then on, and the answer write_timeout.
//
// Name is server.server_header: the Server header of the gateway's own answers (fail,
// fasthttp's ErrorHandler path and its 429/503 refusals). fasthttp writes it only into
// an answer that has none, so a member's own Server header is kept; "" writes none.
func (s *Server) newServer(cfg *config.Config) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      s.handle,
		ErrorHandler:                 s.handleParseError,
		ConnState:                    clientConnState,
		Name:                         cfg.Server.ServerHeader,
		NoDefaultServerHeader:        true,
		NoDefaultDate:                true,
		NoDefaultContentType:         true,
		ReadBufferSize:               cfg.Server.MaxHeaderBytes,
		Concurrency:                  cfg.Server.MaxConns,
		MaxRequestBodySize:           cfg.Server.BufferBodyBytes,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true,
		Logger:                       s.fhLog,
	}
}

func listenTCP(reusePort bool, addr string) (net.Listener, error) {
	if reusePort {
		return reuseport.Listen("tcp4", addr)
	}
	return net.Listen("tcp", addr)
}

// Serve serves client connections on lns (from Listen) and, if configured, the admin
// listener adminLn, until Shutdown. It returns the first serving error, or nil after
// Shutdown.
func (s *Server) Serve(lns []net.Listener, adminLn net.Listener) error {
	errc := make(chan error, 2*len(lns)+1)
	n := 0
	for _, ln := range lns {
		n += s.serveListener(ln, errc)
	}
	if adminLn != nil && s.admin != nil {
		n++
		go func() { errc <- s.admin.Serve(adminLn) }()
	}
	stop := make(chan struct{})
	defer close(stop)
	if len(s.tlsListeners()) > 0 {
		go s.watchCerts(certWatchInterval, stop)
	}
	var first error
	for range n {
		if err := <-errc; err != nil && first == nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
			first = err
		}
	}
	return first
}

// certWatchInterval is how often certificate files are looked at (tests shorten it).
var certWatchInterval = 2 * time.Second

// ListenAdmin opens the admin listener; nil when admin is disabled.
func (s *Server) ListenAdmin() (net.Listener, error) {
	addr := s.snap.Load().cfg.Admin.Listen
	if addr == "" || s.admin == nil {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: admin.listen %s: %w", addr, err)
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	return ln, nil
}

// Shutdown stops accepting, waits for in-flight requests and open tunnels up to
// timeout, closes the tunnels still open (a WebSocket client gets a close frame 1001)
// and idle connections, and stops the health checker and the cache.
func (s *Server) Shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The loops stop accepting before the listening sockets close, then drain beside
	// fasthttp's server.
	s.lp.stopAccepting(ctx.Done())
	loopsDone := make(chan struct{})
	go func() { s.lp.shutdown(ctx.Done()); close(loopsDone) }()
	err := s.srv.ShutdownWithContext(ctx)
	if e := s.h2.Shutdown(ctx); err == nil && e != nil {
		err = e
	}
	if s.admin != nil {
		if e := s.admin.ShutdownWithContext(ctx); err == nil {
			err = e
		}
	}
	// fasthttp closes only the listeners its Serve has registered; a Shutdown that wins
	// the race with Serve (a stop right at startup) would leave Serve accepting forever.
	s.mu.Lock()
	for _, ln := range s.listeners {
		ln.Close() //nolint:errcheck // most are closed already
	}
	s.mu.Unlock()
	// fasthttp does not wait for the connections it handed over (Hijack).
	s.tunnelOnce.Do(func() { s.stopTunnels(ctx.Done()) })
	s.health.Stop()
	s.series.close()
	<-loopsDone
	for _, c := range s.snap.Load().clients {
		c.CloseIdleConnections()
	}
	s.closeShared()
	s.cache.Close()
	s.clock.Stop()
	if err != nil {
		return fmt.Errorf("gateway: shutdown: %w", err)
	}
	return nil
}

// Cache returns the learned-session cache (for the admin API and tests).
func (s *Server) Cache() *sessioncache.Cache { return s.cache }

// Table returns the routing table now in use.
func (s *Server) Table() *router.Table { return s.snap.Load().table }

// healthTargets lists what the checker watches: every member of every group, with
// that group's active check, passive ejection and drain settings, and the member's TLS
// config (by router.Member.Index; nil: plain HTTP), so that checks go the way requests
// go. It is the one place that reads a group's config beside its compiled group
// (t.Groups[gi] is cfg.TargetGroups[gi]); everything after reads the snapshot.
func healthTargets(cfg *config.Config, t *router.Table, memberTLS []*tls.Config) []health.Target {
	var ts []health.Target
	for gi, g := range t.Groups {
		gc := &cfg.TargetGroups[gi]
		hc := gc.HealthCheck
		lo, hi, _ := config.ParseStatusRange(hc.ExpectedStatus)
		start, _ := router.ParseStart(hc.Start)
		check := health.Check{
			Path:              hc.Path,
			Interval:          hc.Interval,
			UnhealthyInterval: hc.UnhealthyInterval,
			Timeout:           hc.Timeout,
			Jitter:            hc.Jitter,
			Rise:              hc.HealthyThreshold,
			Fall:              hc.UnhealthyThreshold,
			StatusLo:          lo,
			StatusHi:          hi,
			HostValue:         hc.Host,
			StartUnhealthy:    start == router.StartUnhealthy,
		}
		passive := health.Passive{
			Failures:    gc.Passive.ConsecutiveFailures,
			Eject5xx:    gc.Passive.Eject5xx,
			Ejection:    gc.Passive.Ejection,
			MaxEjection: gc.Passive.MaxEjection,
		}
		peers := make([]*router.MemberState, 0, len(g.Members))
		for _, m := range g.Members {
			peers = append(peers, m.State)
		}
		for _, m := range g.Members {
			ts = append(ts, health.Target{
				Group: g.Name, Member: m.ID, Addr: m.Addr, State: m.State, Peers: peers,
				Check: check, Passive: passive, DrainTimeout: gc.DrainTimeout, TLS: memberTLS[m.Index],
			})
		}
	}
	return ts
}

// applyAdminStates sets each member's administrative state from the config: all of
// them at start (old nil), and on a reload only those whose configured state changed,
// so that a state set through the admin API survives reloads that do not touch it.
func applyAdminStates(cfg *config.Config, t *router.Table, old *config.Config) {
	prev := map[string]string{}
	if old != nil {
		for _, g := range old.TargetGroups {
			for _, m := range g.Members {
				prev[m.ID] = m.State
			}
		}
	}
	byID := make(map[string]*router.Member, len(t.Members))
	for _, m := range t.Members {
		byID[m.ID] = m
	}
	for _, g := range cfg.TargetGroups {
		for _, mc := range g.Members {
			if p, ok := prev[mc.ID]; ok && p == mc.State {
				continue
			}
			a, _ := router.ParseAdmin(mc.State) // validated
			byID[mc.ID].State.SetAdmin(a)
		}
	}
}

// fasthttpLogger sends fasthttp's own rare messages to zerolog.
type fasthttpLogger struct{ log zerolog.Logger }

// They are at debug level: what they report (a connection that failed to parse, a
// timeout) already has its one line from handleParseError or the access log.
func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug().Str("component", "fasthttp").Msgf(format, args...)
}
