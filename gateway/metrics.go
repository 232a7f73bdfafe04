package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/health"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// GET /metrics on the admin listener serves every counter in the Prometheus text
// format (version 0.0.4), with the Go runtime and process metrics of
// VictoriaMetrics/metrics. Like the other reads it needs no token.
//
// The request path only adds to our own atomics (Server.stats, router.MemberState,
// the health checker's counts); a scrape reads them and formats them with the
// library's writers. Nothing of the library runs per request: its Histogram and
// Summary take a lock on every update.
//
// Every name starts with sessiongate_. Per member, the labels are group and member.
//
//	sessiongate_requests_total                          client requests received
//	sessiongate_errors_total{kind,status}               requests the gateway answered itself
//	sessiongate_affinity_total{outcome}                 proxied requests by how the member was chosen
//	sessiongate_moves_total{reason}                     requests whose session moved off its member (1)
//	sessiongate_strict_refusals_total{reason}           strict groups: 503 instead of a move
//	sessiongate_retries_total                           attempts sent again to another member
//	sessiongate_replays_total                           retries that sent the request body again
//	sessiongate_sessions_learned_total                  sessions learned from member responses
//	sessiongate_learned_{hits,misses,sets,refreshes,drops,rejections,evictions}_total
//	sessiongate_learned_entries                         learned-session cache size now
//	sessiongate_shared_store_up                         1, or 0 while degraded (with session.shared only)
//	sessiongate_shared_store_reads_total{result}        local misses read from Redis: hit, miss, timeout, error, skipped
//	sessiongate_shared_store_writes_total{result}       bindings written to Redis: ok, error, dropped, skipped
//	sessiongate_shared_store_client_cache_hits_total    reads answered without a round trip
//	sessiongate_shared_store_read_duration_seconds      histogram of the reads that asked
//	sessiongate_shared_store_{write_queue,invalidations_total,degradations_total}
//	sessiongate_open_connections                        client connections open now
//	sessiongate_inflight_requests                       requests being proxied now
//	sessiongate_tunnels_opened_total                    tunnels opened (upgrades answered 101)
//	sessiongate_config_reloads_total{result}            reloads, ok or failed
//	sessiongate_config_info{hash}                       1, labelled with the running config's hash
//	sessiongate_build_info{version,revision,goversion}  1, labelled with the binary's build (Version)
//	sessiongate_member_requests_total{class}            proxied responses by status class (1xx-5xx)
//	sessiongate_member_request_duration_seconds         histogram of proxied response times
//	sessiongate_member_attempts_total                   requests sent to the member (retries included)
//	sessiongate_member_failures_total                   attempts that got no response
//	sessiongate_member_route_mismatches_total           issued session ids whose route no member has
//	sessiongate_member_healthy, _ejected, _usable       0 or 1; usable: takes new sessions
//	sessiongate_member_admin_state{state}               1 for the current one of ready, drain, maint
//	sessiongate_member_bound_sessions                   estimated sessions served recently
//	sessiongate_member_inflight                         requests being proxied to it now
//	sessiongate_member_tunnels                          tunnels (WebSocket, other upgrades) open to it now
//	sessiongate_health_checks_total{result}             active check results, ok or fail
//	sessiongate_health_transitions_total{to}            changes to up, down or ejected
//
// (1) Counted per request decided as a move. Without switch_back only the first
// request of a session moves (on each gateway): its new member is learned, and the
// following requests count as affinity outcome "learned". With switch_back every
// request whose member is still out counts as a move.

// reloadStats are the configuration reload counters and the running configuration's
// hash, for metrics.
type reloadStats struct {
	ok, failed atomic.Uint64
	hash       atomic.Value // string: configHash of the running configuration
}

// configHash is a short fingerprint of cfg, to tell which configuration each gateway
// runs: the first 16 hex digits of the SHA-256 of its JSON form. The admin token and
// the Redis password are left out, so that the fingerprint does not help guessing them.
func configHash(cfg *config.Config) string {
	c := *cfg
	c.Admin.Token = ""
	c.Session.Shared.Redis.Password = ""
	b, err := json.Marshal(&c)
	if err != nil {
		panic("BUG: gateway: config.Config does not encode as JSON: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// handleMetrics serves GET /metrics.
func (s *Server) handleMetrics(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		adminError(ctx, fasthttp.StatusMethodNotAllowed, "use GET")
		return
	}
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	s.writeMetrics(ctx)
	metrics.WriteProcessMetrics(ctx)
	metrics.WriteFDMetrics(ctx)
}

// memberMetrics is what a scrape reads of one member, once.
type memberMetrics struct {
	group   string
	m       *router.Member
	counts  health.Counts
	latency router.Latency
}

// writeMetrics writes the gateway's own metrics to w.
func (s *Server) writeMetrics(w io.Writer) {
	p := &promWriter{w: w}
	snap := s.snap.Load()

	p.family("sessiongate_requests_total", "counter", "Client requests received.")
	p.counter(s.stats.requests.Load(), "sessiongate_requests_total")

	p.family("sessiongate_errors_total", "counter", "Requests the gateway answered itself, by error kind and status.")
	for k := kindNoGroup; k < numErrKinds; k++ {
		p.counter(s.stats.errors[k].Load(), "sessiongate_errors_total", "kind", errKindNames[k], "status", strconv.Itoa(statusOf(k)))
	}

	p.family("sessiongate_affinity_total", "counter", "Proxied requests by how their member was chosen.")
	for o := router.OutcomeRoute; o <= router.OutcomeMoved; o++ {
		p.counter(s.stats.outcomes[o].Load(), "sessiongate_affinity_total", "outcome", o.String())
	}
	p.family("sessiongate_moves_total", "counter", "Requests whose session moved off the member it was bound to, by reason.")
	for r := router.MoveMemberDown; r < router.NumMoveReasons; r++ {
		p.counter(s.stats.moves[r].Load(), "sessiongate_moves_total", "reason", r.String())
	}
	p.family("sessiongate_strict_refusals_total", "counter", "Requests of strict groups refused (503) instead of moving their session, by reason.")
	for r := router.MoveMemberDown; r < router.NumMoveReasons; r++ {
		p.counter(s.stats.refused[r].Load(), "sessiongate_strict_refusals_total", "reason", r.String())
	}

	p.family("sessiongate_affinity_cookie_total", "counter", "Requests by their signed affinity cookie (cookie resolver): absent, valid, old_key (valid, re-signed) or invalid (ignored).")
	for r := range numCookieResults {
		p.counter(s.stats.cookies[r].Load(), "sessiongate_affinity_cookie_total", "result", cookieResultNames[r])
	}
	p.family("sessiongate_affinity_cookies_set_total", "counter", "Answers that set the signed affinity cookie.")
	p.counter(s.stats.cookiesSet.Load(), "sessiongate_affinity_cookies_set_total")

	p.family("sessiongate_retries_total", "counter", "Attempts sent again to another member.")
	p.counter(s.stats.retries.Load(), "sessiongate_retries_total")
	p.family("sessiongate_replays_total", "counter", "Retries that sent the request body again.")
	p.counter(s.stats.replays.Load(), "sessiongate_replays_total")
	p.family("sessiongate_sessions_learned_total", "counter", "Sessions learned from member responses.")
	p.counter(s.stats.learned.Load(), "sessiongate_sessions_learned_total")

	cs := s.cache.Stats()
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"hits", "Learned-session cache lookups that found a binding.", cs.Hits},
		{"misses", "Learned-session cache lookups that found none.", cs.Misses},
		{"sets", "Bindings offered to the learned-session cache.", cs.Sets},
		{"refreshes", "Bindings offered again because they are in use.", cs.Refreshes},
		{"drops", "Learned-session cache writes dropped (buffers full).", cs.Drops},
		{"rejections", "Learned-session cache writes refused by admission.", cs.Rejections},
		{"evictions", "Bindings evicted from the learned-session cache for room.", cs.Evictions},
	} {
		name := "sessiongate_learned_" + c.name + "_total"
		p.family(name, "counter", c.help)
		p.counter(c.v, name)
	}
	p.family("sessiongate_learned_entries", "gauge", "Bindings held in the learned-session cache (approximate).")
	p.gauge(cs.Entries, "sessiongate_learned_entries")
	s.writeSharedMetrics(p)

	p.family("sessiongate_open_connections", "gauge", "Client connections open now.")
	p.gauge(uint64(max(int64(s.srv.GetOpenConnectionsCount()), 0)+s.lp.open()), "sessiongate_open_connections")
	var inflight int64
	for _, m := range snap.table.Members {
		inflight += m.State.Inflight.Load()
	}
	p.family("sessiongate_inflight_requests", "gauge", "Requests being proxied to members now.")
	p.gauge(uint64(max(inflight, 0)), "sessiongate_inflight_requests")
	p.family("sessiongate_tunnels_opened_total", "counter", "Tunnels opened: upgrade requests (WebSocket and others) a member answered with 101.")
	p.counter(s.stats.tunnels.Load(), "sessiongate_tunnels_opened_total")

	p.family("sessiongate_config_reloads_total", "counter", "Configuration reloads, by result.")
	p.counter(s.reloads.ok.Load(), "sessiongate_config_reloads_total", "result", "ok")
	p.counter(s.reloads.failed.Load(), "sessiongate_config_reloads_total", "result", "failed")
	hash, _ := s.reloads.hash.Load().(string)
	p.family("sessiongate_config_info", "gauge", "Always 1; hash identifies the running configuration.")
	p.gauge(1, "sessiongate_config_info", "hash", hash)
	v := Version()
	p.family("sessiongate_build_info", "gauge", "Always 1; the labels identify the running binary's build.")
	p.gauge(1, "sessiongate_build_info", "version", v.Version, "revision", v.Revision, "goversion", v.GoVersion)

	s.writeListenerMetrics(p)

	var ms []memberMetrics
	for _, g := range snap.table.Groups {
		for _, m := range g.Members {
			ms = append(ms, memberMetrics{group: g.Name, m: m, counts: s.health.Counts(m.ID), latency: m.State.Latency()})
		}
	}
	s.writeMemberMetrics(p, ms)
}

// statusClasses are the label values of MemberState.Responses, by index.
var statusClasses = [len(router.MemberState{}.Responses)]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// writeMemberMetrics writes the per-member families, each family's series together.
func (s *Server) writeMemberMetrics(p *promWriter, ms []memberMetrics) {
	const reqs = "sessiongate_member_requests_total"
	p.family(reqs, "counter", "Responses proxied from the member, by status class.")
	for _, x := range ms {
		for c := range x.m.State.Responses {
			n := x.m.State.Responses[c].Load()
			if c == 0 && n == 0 {
				continue // "other": statuses outside 100-599, shown once there is one
			}
			p.counter(n, reqs, "group", x.group, "member", x.m.ID, "class", statusClasses[c])
		}
	}

	const dur = "sessiongate_member_request_duration_seconds"
	p.family(dur, "histogram", "Time from handling a request to having the member's response head (retries included), for proxied responses.")
	for _, x := range ms {
		l := &x.latency
		for i, n := range l.Cumulative {
			le := "+Inf"
			if i < len(l.Bounds) {
				le = strconv.FormatFloat(l.Bounds[i].Seconds(), 'g', -1, 64)
			}
			p.counter(n, dur+"_bucket", "group", x.group, "member", x.m.ID, "le", le)
		}
		metrics.WriteCounterFloat64(p.w, p.series(dur+"_sum", "group", x.group, "member", x.m.ID), l.Sum)
		p.counter(l.Count(), dur+"_count", "group", x.group, "member", x.m.ID)
	}

	p.memberCounter(ms, "sessiongate_member_attempts_total", "Requests sent to the member, retries included.",
		func(x *memberMetrics) uint64 { return x.m.State.Requests.Load() })
	p.memberCounter(ms, "sessiongate_member_failures_total", "Requests sent to the member that got no response.",
		func(x *memberMetrics) uint64 { return x.m.State.Failures.Load() })
	p.memberCounter(ms, "sessiongate_member_route_mismatches_total", "Session ids the member issued with a route no member of its group has (its configured route differs from the application server's).",
		func(x *memberMetrics) uint64 { return x.m.State.RouteMismatches.Load() })
	p.memberGauge(ms, "sessiongate_member_healthy", "1 while the member passes its active checks.",
		func(x *memberMetrics) uint64 { return b2u(x.m.State.Healthy()) })
	p.memberGauge(ms, "sessiongate_member_ejected", "1 while passive failures keep the member out.",
		func(x *memberMetrics) uint64 { return b2u(x.m.State.Ejected()) })
	p.memberGauge(ms, "sessiongate_member_usable", "1 while the member takes new sessions.",
		func(x *memberMetrics) uint64 { return b2u(x.m.State.UsableNew()) })

	const admin = "sessiongate_member_admin_state"
	p.family(admin, "gauge", "1 for the member's administrative state (ready, drain or maint), 0 for the others.")
	for _, x := range ms {
		cur := x.m.State.Admin()
		for a := router.AdminReady; a <= router.AdminMaint; a++ {
			p.gauge(b2u(a == cur), admin, "group", x.group, "member", x.m.ID, "state", a.String())
		}
	}

	p.memberGauge(ms, "sessiongate_member_bound_sessions", "Estimated distinct sessions the member served in the last two session.bound_window.",
		func(x *memberMetrics) uint64 { return uint64(x.m.State.BoundSessions()) })
	p.memberGauge(ms, "sessiongate_member_inflight", "Requests being proxied to the member now.",
		func(x *memberMetrics) uint64 { return uint64(max(x.m.State.Inflight.Load(), 0)) })
	p.memberGauge(ms, "sessiongate_member_tunnels", "Tunnels (WebSocket and other upgrades) open to the member now.",
		func(x *memberMetrics) uint64 { return uint64(max(s.tunnelCount(x.m.State), 0)) })

	const checks = "sessiongate_health_checks_total"
	p.family(checks, "counter", "Active health check results, ok or fail.")
	for _, x := range ms {
		p.counter(x.counts.OK, checks, "group", x.group, "member", x.m.ID, "result", "ok")
		p.counter(x.counts.Fail, checks, "group", x.group, "member", x.m.ID, "result", "fail")
	}
	const trans = "sessiongate_health_transitions_total"
	p.family(trans, "counter", "Member health changes, by the state entered: up, down or ejected.")
	for _, x := range ms {
		p.counter(x.counts.Up, trans, "group", x.group, "member", x.m.ID, "to", "up")
		p.counter(x.counts.Down, trans, "group", x.group, "member", x.m.ID, "to", "down")
		p.counter(x.counts.Ejected, trans, "group", x.group, "member", x.m.ID, "to", "ejected")
	}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// promWriter writes metric families: the HELP and TYPE lines here, once per family,
// and each sample through the library's writers. Those would add their own metadata
// line to every sample if metrics.ExposeMetadata were turned on, so it stays off (its
// default; nothing in the gateway turns it on).
type promWriter struct {
	w   io.Writer
	buf []byte
}

func (p *promWriter) family(name, typ, help string) {
	fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (p *promWriter) counter(v uint64, name string, labels ...string) {
	metrics.WriteCounterUint64(p.w, p.series(name, labels...), v)
}

func (p *promWriter) gauge(v uint64, name string, labels ...string) {
	metrics.WriteGaugeUint64(p.w, p.series(name, labels...), v)
}

func (p *promWriter) memberCounter(ms []memberMetrics, name, help string, v func(*memberMetrics) uint64) {
	p.family(name, "counter", help)
	for i := range ms {
		p.counter(v(&ms[i]), name, "group", ms[i].group, "member", ms[i].m.ID)
	}
}

func (p *promWriter) memberGauge(ms []memberMetrics, name, help string, v func(*memberMetrics) uint64) {
	p.family(name, "gauge", help)
	for i := range ms {
		p.gauge(v(&ms[i]), name, "group", ms[i].group, "member", ms[i].m.ID)
	}
}

// series returns name{k="v",...} from key, value pairs, the values escaped as the text
// format wants (backslash, double quote, newline).
func (p *promWriter) series(name string, labels ...string) string {
	b := append(p.buf[:0], name...)
	if len(labels) > 0 {
		b = append(b, '{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, labels[i]...)
			b = append(b, '=', '"')
			for _, c := range []byte(labels[i+1]) {
				switch c {
				case '\\':
					b = append(b, '\\', '\\')
				case '"':
					b = append(b, '\\', '"')
				case '\n':
					b = append(b, '\\', 'n')
				default:
					b = append(b, c)
				}
			}
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	p.buf = b
	return string(b)
}

// writeListenerMetrics writes the listeners' and their certificates' series.
func (s *Server) writeListenerMetrics(p *promWriter) {
	p.family("sessiongate_http2_requests_total", "counter", "Requests received over HTTP/2.")
	p.counter(s.stats.h2Requests.Load(), "sessiongate_http2_requests_total")
	p.family("sessiongate_proxy_protocol_refused_total", "counter", "Connections closed for a missing or invalid PROXY protocol header.")
	p.counter(s.stats.proxyRefused.Load(), "sessiongate_proxy_protocol_refused_total")
	p.family("sessiongate_epoll_requests_total", "counter", "Requests served by the event loops of dataplane: epoll listeners.")
	p.counter(s.stats.loopRequests.Load(), "sessiongate_epoll_requests_total")
	p.family("sessiongate_epoll_handoffs_total", "counter", "Connections the event loops handed to fasthttp's data path, by the request that made them.")
	for i, name := range handoffNames {
		p.counter(s.stats.handoffs[i].Load(), "sessiongate_epoll_handoffs_total", "reason", name)
	}
	p.family("sessiongate_https_redirects_total", "counter", "Requests answered with a redirect to https (redirect_https).")
	p.counter(s.stats.redirects.Load(), "sessiongate_https_redirects_total")
	p.family("sessiongate_conns_per_ip_refused_total", "counter", "Connections refused by server.max_conns_per_ip.")
	p.counter(s.stats.perIPRefused.Load(), "sessiongate_conns_per_ip_refused_total")
	p.family("sessiongate_tls_certificate_reload_failures_total", "counter", "Certificate files that changed on disk but did not load (the old ones serve on).")
	p.counter(s.stats.certReloadFailed.Load(), "sessiongate_tls_certificate_reload_failures_total")
	ls := s.listenersStatus()
	p.family("sessiongate_tls_handshake_errors_total", "counter", "Failed TLS handshakes, by listener.")
	for _, l := range ls {
		if l.TLS {
			p.counter(l.HandshakeErrors, "sessiongate_tls_handshake_errors_total", "listener", l.Address)
		}
	}
	p.family("sessiongate_tls_handshakes_in_progress", "gauge", "TLS handshakes under way, by listener.")
	for _, t := range s.tlsListeners() {
		p.gauge(uint64(max(t.pending.Load(), 0)), "sessiongate_tls_handshakes_in_progress", "listener", s.listenerAddr(t.index))
	}
	p.family("sessiongate_tls_certificate_expiry_seconds", "gauge", "Seconds until each served certificate expires (negative once expired).")
	for _, l := range ls {
		for _, c := range l.Certificates {
			name := ""
			if len(c.Names) > 0 {
				name = c.Names[0]
			}
			metrics.WriteGaugeFloat64(p.w, p.series("sessiongate_tls_certificate_expiry_seconds",
				"listener", l.Address, "file", c.File, "name", name, "names", strings.Join(c.Names, ",")), float64(c.ExpiresIn))
		}
	}
}

// listenerAddr is the address listener i listens on.
func (s *Server) listenerAddr(i int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, info := range s.infos {
		if info.index == i {
			return info.addr
		}
	}
	return ""
}
