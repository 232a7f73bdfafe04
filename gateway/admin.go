package gateway

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/pprof"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fasthttp/pprofhandler"
)

// The admin API, on the admin listener (JSON):
//
//	GET  /healthz                                   200 "ok" while the gateway runs
//	GET  /status                                    live HTML status page
//	GET  /metrics                                   Prometheus text format
//	GET  /api/groups                                groups, members, state, health, counts
//	POST /api/groups/{group}/members/{id}/state     {"state":"ready|drain|maint"}
//	POST /api/reload                                reload the configuration file
//	GET  /api/log-level, PUT /api/log-level         {"level":"debug|info|warn|error"}
//	GET  /debug/pprof/, /debug/pprof/...            Go profiles and their index (token required)
//
// Reads need no token; mutations and profiles need "Authorization: Bearer <admin.token>"
// and answer 401 without it. The token is never logged. Every path first checks the
// Host: only IP literals, localhost and the names in admin.hosts are served, anything
// else gets 421, so that a page whose name was rebound to the admin address cannot
// read it from an operator's browser.

// loadToken returns the admin token from admin.token or admin.token_file.
func loadToken(cfg config.Admin) (string, error) {
	if cfg.TokenFile == "" {
		return cfg.Token, nil
	}
	b, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("gateway: admin.token_file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("gateway: admin.token_file: %q: the file is empty", cfg.TokenFile)
	}
	return t, nil
}

// newAdminServer serves the admin listener.
func (s *Server) newAdminServer() *fasthttp.Server {
	cfg := s.snap.Load().cfg
	return &fasthttp.Server{
		Handler:               s.handleAdmin,
		Name:                  cfg.Server.ServerHeader, // "": no Server header
		NoDefaultServerHeader: true,
		ReadTimeout:           cfg.Server.ReadTimeout,
		WriteTimeout:          cfg.Server.WriteTimeout,
		MaxRequestBodySize:    64 << 10,
		CloseOnShutdown:       true, // a browser's keep-alive status page must not hold a shutdown
		Logger:                fasthttpLogger{s.log},
	}
}

func (s *Server) handleAdmin(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	if !s.adminHostAllowed(ctx.Request.Header.Host()) || !s.adminHostAllowed(ctx.Host()) {
		adminError(ctx, fasthttp.StatusMisdirectedRequest, "this Host is not served here (admin.hosts)")
		s.log.Warn().Str("remote", ctx.RemoteAddr().String()).Bytes("host", ctx.Request.Header.Host()).
			Str("path", path).Msg("admin: request for another host refused")
		return
	}
	switch {
	case path == "/healthz":
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
	case path == "/metrics":
		s.handleMetrics(ctx)
	case path == "/api/groups":
		if !ctx.IsGet() && !ctx.IsHead() {
			adminError(ctx, fasthttp.StatusMethodNotAllowed, "use GET")
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, s.groupsStatus())
	case strings.HasPrefix(path, "/api/groups/") && strings.HasSuffix(path, "/state"):
		s.handleSetState(ctx, path)
	case path == "/status":
		s.handleStatus(ctx)
	case path == "/api/series":
		s.handleSeries(ctx)
	case path == "/api/reload":
		s.handleReload(ctx)
	case path == "/api/log-level":
		s.handleLogLevel(ctx)
	case strings.HasPrefix(path, "/debug/pprof"):
		if !s.authorized(ctx) {
			s.unauthorized(ctx, path)
			return
		}
		if path == "/debug/pprof/" {
			pprofIndex(ctx) // pprofhandler answers 404 to every path ending in a slash
			return
		}
		pprofhandler.PprofHandler(ctx)
	default:
		adminError(ctx, fasthttp.StatusNotFound, "no such admin endpoint")
	}
}

// pprofIndex is net/http/pprof's index of the profiles, whose relative links resolve
// under /debug/pprof/.
var pprofIndex = fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Index)

// adminHostAllowed reports whether host (a Host header, port optional) names the admin
// listener in a way a DNS-rebinding page cannot: an IPv4 literal, a bracketed IPv6
// literal, localhost, or one of admin.hosts (case-insensitive, port ignored). Empty
// and malformed values are refused. admin.hosts is read from the running snapshot, so
// a reload changes it.
func (s *Server) adminHostAllowed(host []byte) bool {
	name, ok := hostWithoutPort(string(host))
	if !ok {
		return false
	}
	if name[0] == '[' {
		a, err := netip.ParseAddr(name[1 : len(name)-1])
		return err == nil && a.Is6()
	}
	if a, err := netip.ParseAddr(name); err == nil {
		return a.Is4()
	}
	if strings.EqualFold(name, "localhost") {
		return true
	}
	for _, h := range s.snap.Load().cfg.Admin.Hosts {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// hostWithoutPort cuts an optional ":port" (digits only) off a Host value; a bracketed
// IPv6 literal keeps its brackets. It refuses an empty name and a colon outside brackets.
func hostWithoutPort(h string) (string, bool) {
	name, port := h, ""
	if strings.HasPrefix(h, "[") {
		i := strings.IndexByte(h, ']')
		if i < 0 {
			return "", false
		}
		name, port = h[:i+1], h[i+1:]
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		name, port = h[:i], h[i:]
	}
	if port != "" {
		if port[0] != ':' || len(port) > 6 {
			return "", false
		}
		for _, c := range port[1:] {
			if c < '0' || c > '9' {
				return "", false
			}
		}
	}
	if name == "" || strings.IndexByte(name[1:], '[') >= 0 || (name[0] != '[' && strings.IndexByte(name, ':') >= 0) {
		return "", false
	}
	return name, true
}

// authorized checks the bearer token in constant time.
func (s *Server) authorized(ctx *fasthttp.RequestCtx) bool {
	if s.token == "" {
		return false
	}
	h := string(ctx.Request.Header.Peek("Authorization"))
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(h[len(prefix):]), []byte(s.token)) == 1
}

// unauthorized answers 401 and logs the refusal (never the token).
func (s *Server) unauthorized(ctx *fasthttp.RequestCtx, path string) {
	ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="sessiongate"`)
	adminError(ctx, fasthttp.StatusUnauthorized, "a valid admin token is required (Authorization: Bearer <token>)")
	s.log.Warn().Str("remote", ctx.RemoteAddr().String()).Str("path", path).Msg("admin: unauthorized mutation refused")
}

// handleReload is POST /api/reload: reload the configuration file now.
func (s *Server) handleReload(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		adminError(ctx, fasthttp.StatusMethodNotAllowed, "use POST")
		return
	}
	if !s.authorized(ctx) {
		s.unauthorized(ctx, "/api/reload")
		return
	}
	switch err := s.ReloadFile(); {
	case errors.Is(err, errNoConfigFile):
		adminError(ctx, fasthttp.StatusConflict, err.Error())
	case err != nil:
		// The operator's own file: its error names the field and the line.
		adminError(ctx, fasthttp.StatusUnprocessableEntity, err.Error())
	default:
		writeJSON(ctx, fasthttp.StatusOK, map[string]string{"result": "reloaded"})
	}
}

// handleLogLevel is GET /api/log-level and PUT or POST /api/log-level {"level":"debug"}.
func (s *Server) handleLogLevel(ctx *fasthttp.RequestCtx) {
	if ctx.IsGet() {
		writeJSON(ctx, fasthttp.StatusOK, map[string]string{"level": s.LogLevel().String()})
		return
	}
	if !ctx.IsPut() && !ctx.IsPost() {
		adminError(ctx, fasthttp.StatusMethodNotAllowed, "use GET, PUT or POST")
		return
	}
	if !s.authorized(ctx) {
		s.unauthorized(ctx, "/api/log-level")
		return
	}
	var body struct {
		Level string `json:"level"`
	}
	if err := json.Unmarshal(ctx.PostBody(), &body); err != nil {
		adminError(ctx, fasthttp.StatusBadRequest, `want a JSON body {"level":"debug|info|warn|error"}`)
		return
	}
	switch body.Level {
	case "debug", "info", "warn", "error":
	default:
		adminError(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("level %q: want debug, info, warn or error", body.Level))
		return
	}
	l, _ := zerolog.ParseLevel(body.Level)
	from := s.LogLevel()
	s.SetLogLevel(l)
	s.log.WithLevel(zerolog.NoLevel).Str("from", from.String()).Str("to", l.String()).Msg("admin: log level changed")
	writeJSON(ctx, fasthttp.StatusOK, map[string]string{"level": l.String()})
}

func (s *Server) handleSetState(ctx *fasthttp.RequestCtx, path string) {
	if !ctx.IsPost() {
		adminError(ctx, fasthttp.StatusMethodNotAllowed, "use POST")
		return
	}
	if !s.authorized(ctx) {
		s.unauthorized(ctx, path)
		return
	}
	// /api/groups/{group}/members/{id}/state
	parts := strings.Split(strings.TrimPrefix(path, "/api/groups/"), "/")
	if len(parts) != 4 || parts[1] != "members" || parts[3] != "state" {
		adminError(ctx, fasthttp.StatusNotFound, "want /api/groups/{group}/members/{id}/state")
		return
	}
	var body struct {
		State string `json:"state"`
	}
	if q := ctx.QueryArgs().Peek("state"); len(q) > 0 {
		body.State = string(q)
	} else if err := json.Unmarshal(ctx.PostBody(), &body); err != nil {
		adminError(ctx, fasthttp.StatusBadRequest, `want a JSON body {"state":"ready|drain|maint"}`)
		return
	}
	a, ok := router.ParseAdmin(body.State)
	if !ok {
		adminError(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("state %q: want ready, drain or maint", body.State))
		return
	}
	snap := s.snap.Load()
	g := snap.table.Group(parts[0])
	if g == nil {
		adminError(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no group %q", parts[0]))
		return
	}
	for _, m := range g.Members {
		if m.ID != parts[2] {
			continue
		}
		from := m.State.Admin()
		m.State.SetAdmin(a)
		if a == router.AdminMaint && snap.cfg.Server.CloseTunnelsOnDown {
			s.closeTunnels(m.State, tunnelMaint)
		}
		s.log.Info().Str("group", g.Name).Str("member", m.ID).Str("from", from.String()).Str("to", a.String()).
			Str("remote", ctx.RemoteAddr().String()).Msg("admin: member state changed")
		writeJSON(ctx, fasthttp.StatusOK, s.memberStatus(snap, g, m))
		return
	}
	adminError(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no member %q in group %q", parts[2], parts[0]))
}

// GroupsStatus is the body of GET /api/groups.
type GroupsStatus struct {
	Groups   []GroupStatus     `json:"groups"`
	Outcomes map[string]uint64 `json:"affinity_outcomes"`
	Moves    map[string]uint64 `json:"moves"`
	Refused  map[string]uint64 `json:"strict_refusals"`
	Errors   map[string]uint64 `json:"errors"`
	Requests uint64            `json:"requests"`
	Retries  uint64            `json:"retries"`
	Replays  uint64            `json:"replays"`
	// TunnelsOpened counts the upgrades (WebSocket and others) members answered with 101.
	TunnelsOpened uint64        `json:"tunnels_opened"`
	Learned       LearnedStatus `json:"learned_sessions"`
	// Shared is the shared store (session.shared); absent without one.
	Shared *SharedStatus `json:"shared_store,omitempty"`
	// Listeners are the client listeners, with their certificates.
	Listeners []ListenerStatus `json:"listeners"`
}

// ListenerStatus is one client listener.
type ListenerStatus struct {
	Address         string              `json:"address"`
	TLS             bool                `json:"tls"`
	HTTP2           bool                `json:"http2"`
	ProxyProtocol   bool                `json:"proxy_protocol"`
	RedirectHTTPS   bool                `json:"redirect_https"`
	HandshakeErrors uint64              `json:"handshake_errors"`
	Certificates    []CertificateStatus `json:"certificates,omitempty"`
}

// CertificateStatus is one certificate a TLS listener serves.
type CertificateStatus struct {
	File      string    `json:"file"`
	Names     []string  `json:"names"`
	NotAfter  time.Time `json:"not_after"`
	ExpiresIn int64     `json:"expires_in_seconds"` // negative once expired
}

// listenersStatus describes the listeners Listen opened.
func (s *Server) listenersStatus() []ListenerStatus {
	s.mu.Lock()
	infos := append([]*listenerInfo(nil), s.infos...)
	s.mu.Unlock()
	now := time.Now()
	out := make([]ListenerStatus, 0, len(infos))
	for _, i := range infos {
		ls := ListenerStatus{Address: i.addr, ProxyProtocol: i.proxy, RedirectHTTPS: i.redirect != nil}
		if t := i.tls; t != nil {
			ls.TLS, ls.HTTP2, ls.HandshakeErrors = true, t.http2, t.errors.Load()
			for _, c := range t.state.Load().certs.infos {
				ls.Certificates = append(ls.Certificates, CertificateStatus{File: c.File, Names: c.Names,
					NotAfter: c.NotAfter.UTC(), ExpiresIn: int64(c.NotAfter.Sub(now) / time.Second)})
			}
		}
		out = append(out, ls)
	}
	return out
}

// LearnedStatus is the learned-session cache's counters.
type LearnedStatus struct {
	Hits       uint64 `json:"hits"`
	Misses     uint64 `json:"misses"`
	Sets       uint64 `json:"sets"`
	Refreshes  uint64 `json:"refreshes"`
	Drops      uint64 `json:"drops"`
	Rejections uint64 `json:"rejections"`
	Evictions  uint64 `json:"evictions"`
	Entries    uint64 `json:"entries"`
}

// GroupStatus is one group in GET /api/groups.
type GroupStatus struct {
	Name       string         `json:"name"`
	Hosts      []string       `json:"hosts"`
	PathPrefix string         `json:"path_prefix"`
	SwitchBack bool           `json:"switch_back"`
	Strict     bool           `json:"strict"`
	Members    []MemberStatus `json:"members"`
}

// MemberStatus is one member in GET /api/groups.
type MemberStatus struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Route   string `json:"route"`
	Weight  int    `json:"weight"`
	// State is the administrative state: ready, drain or maint.
	State string `json:"state"`
	// Health is up or down (active checks); Ejected is set by passive failures.
	Health       string     `json:"health"`
	Ejected      bool       `json:"ejected"`
	DrainSince   *time.Time `json:"drain_since,omitempty"`
	DrainExpired bool       `json:"drain_expired"`
	// Usable says whether it takes new sessions (usable_new) and bound ones (usable_bound).
	UsableNew   bool         `json:"usable_new"`
	UsableBound bool         `json:"usable_bound"`
	LastCheck   *CheckStatus `json:"last_check,omitempty"`
	Inflight    int64        `json:"inflight"`
	// Tunnels is the number of WebSocket (and other upgraded) connections open to it.
	Tunnels  int64  `json:"tunnels"`
	Requests uint64 `json:"requests"`
	Failures uint64 `json:"failures"`
	// BoundSessions estimates the distinct sessions served in the last two
	// session.bound_window windows: a draining member is empty when it reaches 0.
	BoundSessions int `json:"bound_sessions"`
	// RouteMismatches counts the session ids the member issued with a route that no
	// member has; RouteSeen is the first such route (the fix: make the member's route
	// that, exactly).
	RouteMismatches uint64 `json:"route_mismatches"`
	RouteSeen       string `json:"route_seen,omitempty"`
}

// CheckStatus is a member's latest active check.
type CheckStatus struct {
	At        time.Time `json:"at"`
	OK        bool      `json:"ok"`
	Status    int       `json:"status,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	LatencyMS float64   `json:"latency_ms"`
}

// GroupsStatus returns what GET /api/groups shows.
func (s *Server) groupsStatus() GroupsStatus {
	snap := s.snap.Load()
	out := GroupsStatus{
		Outcomes: map[string]uint64{},
		Moves:    map[string]uint64{},
		Refused:  map[string]uint64{},
		Errors:   map[string]uint64{},
		Requests: s.stats.requests.Load(),
		Retries:  s.stats.retries.Load(),
		Replays:  s.stats.replays.Load(),

		TunnelsOpened: s.stats.tunnels.Load(),
	}
	for o := router.OutcomeRoute; o <= router.OutcomeMoved; o++ {
		out.Outcomes[o.String()] = s.stats.outcomes[o].Load()
	}
	for r := router.MoveMemberDown; r < router.NumMoveReasons; r++ {
		out.Moves[r.String()] = s.stats.moves[r].Load()
		out.Refused[r.String()] = s.stats.refused[r].Load()
	}
	for k := kindNoGroup; k < numErrKinds; k++ {
		out.Errors[errKindNames[k]] = s.stats.errors[k].Load()
	}
	cs := s.cache.Stats()
	out.Learned = LearnedStatus(cs)
	out.Shared = s.sharedStatus()
	out.Listeners = s.listenersStatus()
	for _, g := range snap.table.Groups {
		gs := GroupStatus{
			Name: g.Name, Hosts: append([]string{}, g.Hosts...), PathPrefix: string(g.Prefix),
			SwitchBack: g.SwitchBack, Strict: g.Strict(),
		}
		for _, m := range g.Members {
			gs.Members = append(gs.Members, s.memberStatus(snap, g, m))
		}
		out.Groups = append(out.Groups, gs)
	}
	return out
}

func (s *Server) memberStatus(_ *snapshot, _ *router.Group, m *router.Member) MemberStatus {
	st := m.State
	ms := MemberStatus{
		ID: m.ID, Address: m.Addr, Route: string(m.Route), Weight: m.Weight,
		State: st.Admin().String(), Health: "up", Ejected: st.Ejected(), DrainExpired: st.DrainExpired(),
		UsableNew: st.UsableNew(), UsableBound: st.UsableBound(),
		Inflight: st.Inflight.Load(), Requests: st.Requests.Load(), Failures: st.Failures.Load(),
		Tunnels:         s.tunnelCount(st),
		BoundSessions:   st.BoundSessions(),
		RouteMismatches: st.RouteMismatches.Load(),
		RouteSeen:       st.RouteSeen(),
	}
	if !st.Healthy() {
		ms.Health = "down"
	}
	if st.Admin() == router.AdminDrain {
		t := st.DrainSince()
		ms.DrainSince = &t
	}
	if r, ok := s.health.Last(m.ID); ok {
		ms.LastCheck = &CheckStatus{At: r.At, OK: r.OK, Status: r.Status, Reason: r.Reason,
			LatencyMS: float64(r.Latency.Microseconds()) / 1000}
	}
	return ms
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		adminError(ctx, fasthttp.StatusInternalServerError, "encoding failed")
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}

func adminError(ctx *fasthttp.RequestCtx, status int, msg string) {
	writeJSON(ctx, status, map[string]string{"error": msg})
}
