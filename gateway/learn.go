package gateway

import (
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// learn records the session a member issued in its response (Set-Cookie, or a
// ";jsessionid=" in a rewritten Location) as bound to that member, unless the key's own
// route already names it. It runs only when a member sets a session, so the copy of the
// key that the cache write implies is off the steady-state path.
func (s *Server) learn(snap *snapshot, g *router.Group, m *router.Member, resp *fasthttp.Response, reqKey []byte, outcome router.Outcome) {
	key := issuedKey(snap, resp)
	if len(key) == 0 {
		return
	}
	// A member that re-sends the key it was asked with changes nothing already known.
	if string(key) == string(reqKey) && (outcome == router.OutcomeRoute || outcome == router.OutcomeLearned) {
		return
	}
	if list := router.PeekRoutes(key, snap.routeFormat); list != nil {
		first, _ := router.NextRoute(list)
		if string(first) == string(m.Route) {
			return // the route resolver finds this member from the key alone
		}
		if routeShaped(first) && !g.HasRoute(first) && !hasRoute(list, m.Route) && m.State.NoteRouteMismatch(first) {
			// The member writes a route no member has: its sessions stick only while
			// learned, and after a restart every one is moved (unknown_route).
			s.log.Warn().Str("group", g.Name).Str("member", m.ID).Bytes("route_seen", first).
				Bytes("route_configured", m.Route).
				Msg("member issues session ids with a route that is not its configured route: set the member's route to the application server's jvmRoute or clone id exactly (case-sensitive)")
		}
	}
	keyHash := router.HashKey(key)
	s.cache.Learn(keyHash, m.State.Num())
	s.share(keyHash, m)
	// ristretto applies writes asynchronously: without waiting, the client's next
	// request can arrive first and be hashed to another member (TestLearnedBindingVisibleAtOnce
	// saw 102-139 of 1,600 new sessions misrouted). This costs a wait only on the
	// response that issues a session.
	s.cache.Wait()
	s.stats.learned.Add(1)
}

// issuedKey returns the session key the response issues, or nil.
func issuedKey(snap *snapshot, resp *fasthttp.Response) []byte {
	for i, name := range snap.cookieNames {
		if raw := resp.Header.PeekCookie(name); len(raw) > 0 {
			if v, ok := router.PeekCookie(cookiePair(raw), snap.table.Key.Cookies[i]); ok && len(v) > 0 {
				return v
			}
		}
	}
	if len(snap.urlParam) > 0 {
		if loc := resp.Header.PeekBytes(strLocation); len(loc) > 0 {
			return router.PeekPathParam(router.PeekPath(loc), snap.urlParam)
		}
	}
	return nil
}

// cookiePair cuts the attributes off a raw Set-Cookie value: "n=v; Path=/" -> "n=v".
func cookiePair(raw []byte) []byte {
	for i, c := range raw {
		if c == ';' {
			return raw[:i]
		}
	}
	return raw
}

// hasRoute reports whether the route list names r anywhere.
func hasRoute(list, r []byte) bool {
	for len(list) > 0 {
		var id []byte
		id, list = router.NextRoute(list)
		if string(id) == string(r) {
			return true
		}
	}
	return false
}

// routeShaped reports whether b looks like a route id (a jvmRoute or clone id: letters,
// digits, '-', '_', '.'), not like the tail of an opaque or signed id.
func routeShaped(b []byte) bool {
	if len(b) == 0 || len(b) > 64 {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
