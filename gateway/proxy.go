package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sessiongate/sessiongate/health"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// handle is the request path: match, extract, pick (router, no allocation), proxy
// (fasthttp's client), learn, log. Every failure goes through fail. Its steps (begin,
// again, answer) are shared with the event-loop data path (loop_linux.go), which does
// the member's I/O itself.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	f := flights.Get().(*flight)
	defer releaseFlight(f)
	if !s.begin(ctx, f) {
		return
	}
	req := &ctx.Request
	// The member's answer is read into a response of its own, so that its streamed
	// body can be handed to the client's through sentBody (which counts what is sent).
	mr := fasthttp.AcquireResponse()
	var err error
	for {
		f.tried.Add(f.m)
		if f.hostless {
			req.Header.SetHost(f.m.Addr) // name the member, as nginx does
		}
		err = s.forward(f.snap, f.m, req, mr)
		if err == nil || !s.again(f, req, err) {
			break
		}
	}
	if err != nil {
		fasthttp.ReleaseResponse(mr)
		s.failed(ctx, f, err)
		return
	}
	s.answer(ctx, f, mr)
	resp := &ctx.Response
	snap, m := f.snap, f.m
	// An HTTP/1.0 client cannot read a chunked body: one of unknown length is read
	// whole first (fasthttp would write chunked to it).
	if mr.IsBodyStream() && (req.Header.IsHTTP11() || mr.Header.ContentLength() >= 0) {
		// The body goes to the client after handle returns: sentBody logs when it has.
		b := sentBodies.Get().(*sentBody)
		*b = sentBody{mr: mr, r: mr.BodyStream(), s: s, ctx: ctx, snap: snap, a: f.access()}
		resp.SetBodyStream(b, mr.Header.ContentLength())
		return
	}
	if mr.IsBodyStream() { // an HTTP/1.0 client, a body of unknown length: read it whole, capped
		n, err := io.Copy(resp.BodyWriter(), io.LimitReader(mr.BodyStream(), maxHTTP10Body+1))
		fasthttp.ReleaseResponse(mr)
		if err != nil || n > maxHTTP10Body {
			if err != nil {
				s.health.Observe(m.State, health.Closed)
			}
			s.fail(ctx, snap, f.access(), errMemberBody)
			return
		}
	} else {
		resp.SetBody(mr.Body())
		fasthttp.ReleaseResponse(mr)
	}
	a := f.access()
	a.status, a.sent = resp.StatusCode(), int64(len(resp.Body()))
	s.logAccess(ctx, snap, &a)
}

// flight is one request on its way to a member: what routing decided and what the
// attempts (retries) changed, from begin to the answer. Both data paths carry it.
type flight struct {
	snap      *snapshot
	start     time.Time
	info      *listenerInfo
	g         *router.Group
	m         *router.Member
	outcome   router.Outcome
	reason    router.MoveReason // why the session moved, counted with the outcome
	key       []byte
	keyHash   uint64
	pinnedM   *router.Member // the member the affinity cookie names
	cookieRes int
	first     *router.Member // the member a retry left (access log: tried)
	firstKind errKind        // and why (retry_reason)
	tried     router.Tried
	// clientClose: the client asked to close after this request; hostless: an HTTP/1.0
	// request without Host, which gets the member's address; replay: the request may
	// be sent again (its body is in memory, the group lets it leave its member).
	clientClose, hostless, replay bool
}

var flights = sync.Pool{New: func() any { return new(flight) }}

func releaseFlight(f *flight) {
	*f = flight{}
	flights.Put(f)
}

// access is the flight's access log record so far.
func (f *flight) access() access {
	return access{start: f.start, g: f.g, m: f.m, outcome: f.outcome, tried: f.first, retryKind: f.firstKind}
}

// begin routes the request in ctx into f: checks, group, session key, affinity and
// member, the request turned into the member's (prepareRequest) and its body made one
// that can be sent again (bufferBody). It reports whether the request goes to f.m;
// false when it was answered here (a failure, a redirect) or went up as an upgrade.
func (s *Server) begin(ctx *fasthttp.RequestCtx, f *flight) bool {
	f.start = ctx.Time() // read by fasthttp when the request came in: one clock read fewer
	snap := s.snap.Load()
	f.snap = snap
	s.stats.requests.Add(1)
	req := &ctx.Request

	if err := checkRequest(ctx, req); err != nil {
		s.fail(ctx, snap, f.access(), err)
		return false
	}
	info, tlsID := connInfo(ctx.Conn())
	f.info = info
	if info != nil && info.redirect != nil {
		s.redirectHTTPS(ctx, snap, info, f.start)
		return false
	}
	rawURI := req.Header.RequestURI()
	path := router.PeekPath(rawURI)
	if snap.pathReject {
		if dot, slash := router.CheckPath(path); dot || slash && snap.rejectSlash {
			s.fail(ctx, snap, f.access(), errBadPath)
			return false
		}
	}
	g := snap.table.Match(req.Header.Host(), path)
	if g == nil {
		s.fail(ctx, snap, f.access(), errNoGroup)
		return false
	}
	f.g = g
	var hdrVal []byte
	if snap.keyHeader != nil {
		hdrVal = req.Header.PeekBytes(snap.keyHeader)
	}
	// PeekAll returns the raw Cookie values; RequestHeader.Cookie would parse them and
	// make fasthttp re-serialize the forwarded header.
	key, _ := snap.table.Key.Extract(req.Header.PeekAll(fasthttp.HeaderCookie), rawURI, hdrVal)
	pinned := -1
	f.cookieRes = cookieAbsent
	if snap.cookie != nil {
		pinned, f.pinnedM, f.cookieRes = snap.cookie.pinnedIndex(g, req.Header.PeekAll(fasthttp.HeaderCookie))
		s.stats.cookies[f.cookieRes].Add(1)
	}
	fromTLS := false
	if len(key) == 0 && tlsID != nil && snap.tlsAffinity {
		// No session key: the TLS session is the session (session.affinity: tls).
		key, fromTLS = tlsID, true
	}
	if len(key) > 0 {
		f.keyHash = router.HashKey(key)
	}
	f.key = key
	d := g.DecideHint(key, f.keyHash, pinned, fromTLS)
	f.m, f.outcome, f.reason = d.Member, d.Outcome, d.Reason
	if f.m == nil {
		if d.Bound != nil && g.Strict() {
			s.stats.refused[d.Reason].Add(1) // a strict group keeps the session on its member
		}
		s.fail(ctx, snap, f.access(), errNoMember)
		return false
	}
	if cl := req.Header.ContentLength(); int64(cl) > snap.maxBody {
		s.fail(ctx, snap, f.access(), errBodyTooLarge)
		return false
	}
	if f.outcome == router.OutcomeMoved && len(key) > 0 {
		s.rebind(snap, f.keyHash, f.m)
	}
	if isUpgrade(req) { // WebSocket and other upgrades (tunnel.go)
		s.upgrade(ctx, snap, g, f.m, f.outcome, f.reason, key, f.keyHash, f.start, cookieHint{f.pinnedM, f.cookieRes})
		return false
	}

	f.clientClose = req.Header.ConnectionClose()
	prepareRequest(ctx, req, snap.trusted)
	kept, err := bufferBody(req, snap.replayMax)
	if err != nil {
		s.fail(ctx, snap, f.access(), err)
		return false
	}
	// A strict group's session never leaves its member, not even for a retry.
	f.replay = snap.retry.MaxRetries > 0 && kept && !(g.Strict() && len(key) > 0)
	f.hostless = len(req.Header.Host()) == 0 // HTTP/1.0 only (checkRequest)
	return true
}

// again decides, after an attempt on f.m failed with err, whether the request goes to
// another member, and if so moves f there (retryMove).
func (s *Server) again(f *flight, req *fasthttp.Request, err error) bool {
	snap := f.snap
	if f.tried.Len() > snap.retry.MaxRetries || !f.replay || !retryable(err, req, snap.retry.IdempotentOnTimeout) {
		return false
	}
	next := f.g.Retry(f.keyHash, len(f.key) > 0, &f.tried)
	if next == nil {
		return false
	}
	if req.Header.ContentLength() > 0 {
		s.stats.replays.Add(1)
	}
	if f.first == nil {
		f.first, f.firstKind = f.m, kindOf(err)
	}
	f.outcome, f.reason = s.retryMove(snap, f.g, f.m, next, f.key, f.keyHash, err, f.outcome, f.reason)
	f.m = next
	return true
}

// failed answers a request whose last attempt failed with err.
func (s *Server) failed(ctx *fasthttp.RequestCtx, f *flight, err error) {
	if kindOf(err) == kindHeaderTooLarge {
		err = errMemberHeaderTooLarge // the member's answer, not the client's request: 502, not 431
	}
	s.fail(ctx, f.snap, f.access(), err)
}

// answer turns the head of the member's answer mr into the client's (ctx.Response's
// header): counted, hop-by-hop headers dropped, HSTS, the affinity cookie, the session
// learned and the member's latency observed. The body is the caller's to pass on. mr
// may be &ctx.Response itself (the event loops read the head there): then nothing is
// copied.
func (s *Server) answer(ctx *fasthttp.RequestCtx, f *flight, mr *fasthttp.Response) {
	snap, m := f.snap, f.m
	s.stats.outcomes[f.outcome].Add(1)
	if f.outcome == router.OutcomeMoved {
		s.stats.moves[f.reason].Add(1) // so that moves by reason add up to moved outcomes
	}
	if len(f.key) > 0 && f.outcome != router.OutcomeBalanced {
		m.State.SeeSession(f.keyHash)
	}
	resp := &ctx.Response
	if mr != resp {
		mr.Header.CopyTo(&resp.Header)
	}
	removeHopHeaders(&resp.Header, hopsOfResponse(&resp.Header))
	resp.Header.ResetConnectionClose()
	if f.info != nil && f.info.tls != nil {
		addHSTS(resp, f.info)
	}
	if snap.cookie != nil && snap.cookie.setFor(resp, m, f.pinnedM, f.cookieRes) {
		s.stats.cookiesSet.Add(1)
	}
	if f.clientClose {
		ctx.SetConnectionClose()
	}
	if snap.learn {
		s.learn(snap, f.g, m, resp, f.key, f.outcome)
	}
	m.State.Observe(resp.StatusCode(), time.Since(f.start))
}

// retryMove is what a retry from m to next does, for a request and for an upgrade
// alike: it is counted and logged, and a keyed request's session moves, for this
// request only unless m is now out (down, or ejected by this failure): then its binding
// goes to next. A passing fault, or a full pool, leaves the binding alone. It returns
// the request's outcome and move reason.
func (s *Server) retryMove(snap *snapshot, g *router.Group, m, next *router.Member, key []byte, keyHash uint64, err error,
	outcome router.Outcome, reason router.MoveReason) (router.Outcome, router.MoveReason) {
	s.stats.retries.Add(1)
	s.log.Debug().Str("group", g.Name).Str("from", m.ID).Str("to", next.ID).
		Str("error_kind", errKindNames[kindOf(err)]).Msg("retrying on another member")
	if len(key) == 0 {
		return outcome, reason
	}
	outcome, reason = router.OutcomeMoved, router.MoveRetry
	if r := m.State.Reason(); r != router.MoveNone {
		reason = r
		s.rebind(snap, keyHash, next)
	}
	return outcome, reason
}

// maxHTTP10Body caps the member body of unknown length read whole for an HTTP/1.0
// client (which cannot read chunked): past it the client gets 502.
const maxHTTP10Body = 16 << 20

// forward sends req to m once and records the result in m's passive health.
func (s *Server) forward(snap *snapshot, m *router.Member, req *fasthttp.Request, resp *fasthttp.Response) error {
	st := m.State
	st.Requests.Add(1)
	st.Inflight.Add(1)
	var err error
	c := snap.clients[m.Index]
	if cl := req.Header.ContentLength(); (cl > 0 || cl == -1) && req.IsBodyStream() {
		err = doStreamed(c, req, resp, snap.maxBody)
	} else {
		memberScheme(req.URI(), c.IsTLS) // https for a TLS member, whatever the client spoke
		if snap.retry.TryTimeout > 0 && idempotent(req.Header.Method()) {
			err = c.DoTimeout(req, resp, snap.retry.TryTimeout)
		} else {
			err = c.Do(req, resp)
		}
	}
	return s.settle(st, err, resp.StatusCode())
}

// settle records the result of an attempt on the member with state st (begun with
// Requests and Inflight counted) in its passive health, and returns the error the
// request path goes on with: errMemberRefused for a write cut short, else err.
func (s *Server) settle(st *router.MemberState, err error, status int) error {
	st.Inflight.Add(-1)
	if err != nil {
		if writeCut(err) {
			return errMemberRefused // tells nothing of the member's health (memberFault)
		}
		if f, ok := memberFault(err, kindOf(err)); ok {
			s.health.Observe(st, f)
		}
		// Anything else arose from the client's request or in the gateway before the
		// member could answer: never the member's failure.
		return err
	}
	f := health.OK
	if status >= 500 {
		f = health.Status5xx // answered, so not retried; a failure where the group ejects on 5xx
	}
	s.health.Observe(st, f)
	return nil
}

// rebind remembers a moved session's new member, so that the following requests go
// there directly (and, without switch_back, stay there).
func (s *Server) rebind(snap *snapshot, keyHash uint64, m *router.Member) {
	if !snap.learn {
		return
	}
	// While a session keeps moving (switch_back, original still down) its binding is
	// already there: look before writing, as a write costs more than a read.
	if num, ok := s.cache.Lookup(keyHash); !ok || num != m.State.Num() {
		s.cache.Learn(keyHash, m.State.Num())
		s.share(keyHash, m)
	}
}

// bufferBody makes req's body one that can be sent again, and reports whether it did:
// no body, or one of at most limit bytes, which it reads into memory (fasthttp hands
// every body over as a stream). A body shorter than its Content-Length, from a client
// that stopped sending, is errClientBody: it must not reach a member as if complete.
// Chunked and larger bodies stream through once (see doStreamed).
func bufferBody(req *fasthttp.Request, limit int) (bool, error) {
	cl := req.Header.ContentLength()
	switch {
	case cl == 0, cl == -2: // -2: neither Content-Length nor chunked, no body (fasthttp leaves GET and HEAD so)
		return true, nil
	case cl < 0 || cl > limit:
		return false, nil
	}
	if req.IsBodyStream() {
		// Read the stream here, not through req.Body(): when a stream fails, fasthttp
		// makes the body the error's text, which can be as long as Content-Length (an
		// HTTP/2 stream that ended short: "request declared a Content-Length of 62 but
		// only wrote 5 bytes") and would reach the member as the body.
		bp := bodyBufs.Get().(*[]byte)
		if cap(*bp) < cl {
			*bp = make([]byte, cl)
		}
		b := (*bp)[:cl]
		_, err := io.ReadFull(req.BodyStream(), b)
		if err == nil {
			req.SetBody(b) // copies; closes the stream
		}
		bodyBufs.Put(bp)
		if err != nil {
			return false, errClientBody
		}
	}
	return !req.IsBodyStream(), nil
}

// bodyBufs are the buffers bufferBody reads request bodies into.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// checkRequest refuses what fasthttp's parser lets through but no member should be
// sent: an HTTP version other than 1.x (505; a later 1.x is answered as 1.1, RFC 9110
// section 2.5), a method with lower-case letters (400, as nginx: "get" is not GET, and
// fasthttp's client would add a Content-Length to it), an HTTP/1.1 request without
// Host (400, RFC 9112 section 3.2), a Host or absolute-form target with userinfo (400:
// fasthttp's client would turn it into an Authorization header of the client's
// choosing), and what the client connection saw in the head (clientConn: bare LF, both
// Content-Length and Transfer-Encoding). An absolute-form target's authority becomes
// the Host (RFC 9112 section 3.2.2): the group is matched on it, and the member gets it
// with the target in origin-form. It does not allocate.
func checkRequest(ctx *fasthttp.RequestCtx, req *fasthttp.Request) error {
	h := &req.Header
	if cc := clientOf(ctx.Conn()); cc != nil {
		if err := cc.refused(); err != nil {
			return err
		}
	}
	proto := h.Protocol()
	switch {
	case string(proto) == "HTTP/1.1", string(proto) == "HTTP/1.0":
	case len(proto) == 8 && string(proto[:7]) == "HTTP/1.":
		h.SetProtocolBytes(strHTTP11)
	default:
		return errBadVersion
	}
	for _, c := range h.Method() {
		if 'a' <= c && c <= 'z' {
			return errBadMethod
		}
	}
	raw := h.RequestURI()
	if len(raw) > 0 && raw[0] != '/' && !(len(raw) == 1 && raw[0] == '*') {
		// Absolute-form: http or https only; anything else would be matched on one path
		// and sent with another.
		rest, ok := cutScheme(raw)
		if !ok {
			return errBadTarget
		}
		if targetUserinfo(raw) {
			return errBadHost
		}
		auth, origin := rest, strSlash
		if i := bytes.IndexAny(rest, "/?#"); i >= 0 {
			auth, origin = rest[:i], rest[i:]
			if origin[0] != '/' {
				origin = append([]byte{'/'}, origin...) // "?q" right after the authority: rare, allocates
			}
		}
		if len(auth) == 0 {
			return errBadHost
		}
		h.SetHostBytes(auth)
		req.SetRequestURIBytes(origin) // the member gets origin-form; the parsed URI is made anew
	}
	host := h.Host()
	if len(host) == 0 && !h.IsHTTP11() {
		return nil // HTTP/1.0 may omit Host; the member gets its own address (forward)
	}
	if len(host) == 0 || bytes.IndexByte(host, '@') >= 0 {
		return errBadHost
	}
	return nil
}

// cutScheme returns what follows "http://" or "https://" (any case) in raw.
func cutScheme(raw []byte) ([]byte, bool) {
	switch {
	case len(raw) >= 7 && equalFoldASCII(raw[:7], strHTTPScheme7):
		return raw[7:], true
	case len(raw) >= 8 && equalFoldASCII(raw[:8], strHTTPSScheme8):
		return raw[8:], true
	}
	return nil, false
}

// targetUserinfo reports whether an absolute-form target ("http://u:p@host/...")
// carries userinfo.
func targetUserinfo(raw []byte) bool {
	i := bytes.Index(raw, strSchemeSep)
	if i < 0 || (len(raw) > 0 && raw[0] == '/') {
		return false
	}
	auth := raw[i+3:]
	for j, c := range auth {
		switch c {
		case '/', '?', '#':
			auth = auth[:j]
			return bytes.IndexByte(auth, '@') >= 0
		}
	}
	return bytes.IndexByte(auth, '@') >= 0
}

// memberFault says what a failed attempt tells of its member's health, and whether it
// tells anything. The member's own doing counts: it refused or did not accept the
// connection, did not answer in time, closed or reset a connection it had accepted
// the request on, or answered with a head too large or a broken chunked body. Our full
// pool, or a pooled connection the member had closed while idle, is a failed attempt
// that never ejects (Busy). Everything else (a body the client stopped sending or made
// too large, a request fasthttp would not write) tells nothing, so that no client can
// eject a member by what it sends.
//
// A TLS handshake that fails (a certificate that does not verify) or times out is a
// Connect fault like a refused connection: that member can serve no request until it
// is fixed, so ejecting it moves its sessions to members that can serve them. When the
// gateway's side is wrong (a bad ca_file), every member of the group fails alike and
// panic mode keeps them all in: ejection changes nothing there, and is not worse.
func memberFault(err error, k errKind) (health.Fault, bool) {
	switch k {
	case kindConnect:
		return health.Connect, true
	case kindMemberTimeout:
		return health.Timeout, true
	case kindHeaderTooLarge:
		return health.Broken, true
	case kindMemberBusy:
		return health.Busy, true
	case kindMemberClosed:
		switch {
		case errors.Is(err, errMarkedDown):
			return health.OK, false // the gateway closed it: the member is already out
		case errors.Is(err, errStaleConn):
			return health.Busy, true
		}
		return health.Closed, true
	case kindMemberError:
		var broken fasthttp.ErrBrokenChunk
		if errors.As(err, &broken) {
			return health.Broken, true
		}
	}
	return health.OK, false
}

// writeCut reports whether a member connection was closed or reset while the request
// was still being written (a write that failed with EPIPE or ECONNRESET). A member that
// refuses a request (a head larger than its limit, a body it will not take) answers 4xx
// and closes without reading the rest, so the write fails before its answer is read:
// the request's doing, not a failing member's, and it must not count against the
// member (a member that died fails its next connect or check). errStaleConn (a pooled
// connection the member had closed while idle) is not this: fasthttp retries it.
func writeCut(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "write" && !errors.Is(err, errStaleConn) &&
		(errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET))
}

// retryable reports whether a failed attempt may go to another member: always when the
// request provably never reached the member (it could not connect, or no connection
// was free), and for idempotent methods also when the member timed out or closed the
// connection before answering.
func retryable(err error, req *fasthttp.Request, idempotentOnTimeout bool) bool {
	switch kindOf(err) {
	case kindConnect, kindMemberBusy:
		return true
	case kindMemberTimeout, kindMemberClosed:
		return idempotentOnTimeout && idempotent(req.Header.Method())
	}
	return false
}

func idempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

// prepareRequest turns the client's request into the member's, in place: it drops the
// hop-by-hop headers and every X-Forwarded-For/-Proto/-Host the client sent, then writes
// one of each: X-Forwarded-For is the peer's address, after the client's values when
// the peer is a trusted proxy (forwarded.trusted_proxies). The path and query are left
// byte-exact (the member clients set DisablePathNormalizing).
func prepareRequest(ctx *fasthttp.RequestCtx, req *fasthttp.Request, trusted []netip.Prefix) {
	// The member connection is ours to keep alive, whatever the client asked for.
	req.Header.ResetConnectionClose()
	hops := hopsOfRaw(req.Header.RawHeaders())
	removeHopHeaders(&req.Header, hops)
	keepTarget(req)

	var buf [256]byte
	b := buf[:0]
	peer := remoteIP(ctx.RemoteAddr())
	if trustedPeer(peer, trusted) {
		for _, v := range req.Header.PeekAll(fasthttp.HeaderXForwardedFor) {
			if v = trimList(v); len(v) > 0 {
				b = append(b, v...)
				b = append(b, strCommaSpace...)
			}
		}
	}
	if peer.IsValid() {
		b = peer.AppendTo(b)
	}
	// Each is deleted (every occurrence) only if the client sent it, then added: Add
	// does not look for one to replace.
	for i, name := range forwardedHeaders {
		if hops&(hopXForwardedFor<<i) != 0 {
			req.Header.DelBytes(name)
		}
	}
	req.Header.AddBytesKV(strXForwardedFor, b)
	if ctx.IsTLS() {
		req.Header.AddBytesKV(strXForwardedProto, strHTTPSScheme)
	} else {
		req.Header.AddBytesKV(strXForwardedProto, strHTTP)
	}
	if host := req.Header.Host(); len(host) > 0 {
		req.Header.AddBytesKV(strXForwardedHost, host)
	}
	if info, _ := connInfo(ctx.Conn()); info != nil {
		req.Header.AddBytesKV(strXForwardedPort, info.port)
	} else if p := portOf(ctx.LocalAddr()); p > 0 {
		var pb [8]byte
		req.Header.AddBytesKV(strXForwardedPort, strconv.AppendInt(pb[:0], int64(p), 10))
	}
}

// addHSTS adds the listener's Strict-Transport-Security header, if it has one.
func addHSTS(resp *fasthttp.Response, info *listenerInfo) {
	if v := info.tls.state.Load().hsts; v != nil {
		resp.Header.SetBytesKV(strStrictTransportSecurity, v)
	}
}

// redirectHTTPS answers a request of a redirect_https listener: 308 to the same host
// (its port replaced by the TLS listener's) and target over https.
func (s *Server) redirectHTTPS(ctx *fasthttp.RequestCtx, snap *snapshot, info *listenerInfo, start time.Time) {
	host := ctx.Request.Header.Host()
	if len(host) == 0 {
		s.fail(ctx, snap, access{start: start}, errBadHost)
		return
	}
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[i:], ']') < 0 {
		host = host[:i]
	}
	var buf [512]byte
	loc := append(buf[:0], strHTTPSScheme8...)
	loc = append(loc, host...)
	loc = append(loc, info.redirect...)
	loc = append(loc, ctx.Request.Header.RequestURI()...)
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(fasthttp.StatusPermanentRedirect)
	resp.Header.SetBytesKV(strLocation, loc)
	resp.Header.SetContentTypeBytes(strTextPlain)
	resp.SetBodyRaw(strRedirectBody)
	s.stats.redirects.Add(1)
	s.logAccess(ctx, snap, &access{start: start, status: fasthttp.StatusPermanentRedirect, sent: int64(len(strRedirectBody))})
}

// trustedPeer reports whether ip is in one of the trusted prefixes.
func trustedPeer(ip netip.Addr, trusted []netip.Prefix) bool {
	if !ip.IsValid() {
		return false
	}
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// doStreamed forwards a request whose body streams through (chunked, or larger than
// what is kept for a replay), reading it through a limit: at server.max_body_bytes for
// a chunked body, which has no Content-Length to check up front, and noting a client
// that stops sending, so that its failure is not blamed on the member. The stream is
// wrapped on a copy of the request (fasthttp has no way to wrap the stream of a
// request in place). Only streamed uploads take this path.
func doStreamed(c *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response, limit int64) error {
	out := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(out)
	req.Header.CopyTo(&out.Header)
	cl := req.Header.ContentLength()
	lr := &limitReader{r: req.BodyStream(), n: limit}
	out.SetBodyStream(lr, cl)
	keepTarget(out)
	memberScheme(out.URI(), c.IsTLS)
	err := c.Do(out, resp)
	switch {
	case lr.over:
		return errBodyTooLarge
	case err != nil && (lr.readErr != nil || lr.eof && cl > 0 && lr.total < int64(cl)):
		return errClientBody // the body stopped short: the client's doing, not the member's
	case err != nil && !lr.eof && (cl < 0 || lr.total < int64(cl)) && midUpload(kindOf(err)):
		// The attempt failed, after connecting, while the body was still coming: the
		// member's write deadline passed waiting for a slow client (408), or the member
		// gave up on it. Either way not the member's failure: who is to blame cannot be
		// told.
		if kindOf(err) == kindMemberTimeout {
			return errClientSlow
		}
		return errUploadCut
	}
	return err
}

// midUpload reports whether a failure of kind k can happen while a body is being sent
// (not before connecting, nor for want of a connection).
func midUpload(k errKind) bool {
	switch k {
	case kindMemberTimeout, kindMemberClosed, kindMemberError:
		return true
	}
	return false
}

// limitReader reads at most n bytes of r and fails past them; it keeps the error of a
// read that failed (the client went away or stalled).
type limitReader struct {
	r       io.Reader
	n       int64
	total   int64 // bytes read
	eof     bool  // the stream ended (possibly before Content-Length: the client left)
	over    bool
	readErr error
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		l.over = true
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1] // one byte more than allowed tells "too large" from "exactly n"
	}
	k, err := l.r.Read(p)
	l.n -= int64(k)
	l.total += int64(k)
	if l.n < 0 {
		l.over = true
		return 0, errBodyTooLarge
	}
	switch {
	case err == io.EOF:
		l.eof = true
	case err != nil:
		l.readErr = err
	}
	return k, err
}

// keepTarget makes fasthttp's client send the Host header and the request target as
// received. The client rebuilds both from req.URI(), which it parses from them: it would
// replace Host with the parsed (lower-cased) host, and it reads a target that starts
// with "//" and holds "://" ("//a/x?u=http://b/") as scheme-relative, sending another
// host and path than the ones the group was matched on. The parse is the one the client
// makes anyway; the path and query are put back only when it changed them.
func keepTarget(req *fasthttp.Request) {
	req.UseHostHeader = true
	raw := req.Header.RequestURI()
	path := router.PeekPath(raw)
	if len(path) == 0 {
		return // "*" or an authority: nothing the parse can move
	}
	u := req.URI()
	if string(u.PathOriginal()) != string(path) {
		u.SetPathBytes(path)
	}
	if q := rawQuery(raw); string(u.QueryString()) != string(q) {
		u.SetQueryStringBytes(q)
	}
}

// rawQuery returns the query of a raw request target: after the first '?', up to a '#'.
func rawQuery(raw []byte) []byte {
	for i, c := range raw {
		switch c {
		case '#':
			return nil
		case '?':
			q := raw[i+1:]
			for j, c := range q {
				if c == '#' {
					return q[:j]
				}
			}
			return q
		}
	}
	return nil
}

// remoteIP is the client's IP without allocating (net.IP.String would).
func remoteIP(addr net.Addr) netip.Addr {
	if a, ok := addr.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// header is what removeHopHeaders needs of fasthttp's request and response headers.
type header interface {
	PeekAll(key string) [][]byte
	DelBytes(key []byte)
}

// Bits of the headers a head holds (hopsOfRaw, hopsOfResponse): bit i for
// hopHeaders[i], then the X-Forwarded-* ones prepareRequest replaces.
const (
	hopConnection uint16 = 1 << iota // hopHeaders[0]
	_
	_
	_
	_
	_
	_
	_
	hopXForwardedFor
	hopXForwardedProto
	hopXForwardedHost
	hopXForwardedPort
	hopAll = 1<<12 - 1
)

// forwardedHeaders are the X-Forwarded-* names of the bits after hopHeaders'.
var forwardedHeaders = [][]byte{strXForwardedFor, strXForwardedProto, strXForwardedHost, strXForwardedPort}

// hopBit is the bit of a header name (any case), 0 for a name that is none of them.
func hopBit(name []byte) uint16 {
	if len(name) < 2 || len(name) > len("Proxy-Authorization") {
		return 0
	}
	switch name[0] | 0x20 {
	case 'c', 'k', 'p', 't', 'u':
		for i, h := range hopHeaders {
			if equalFoldASCII(name, h) {
				return 1 << i
			}
		}
	case 'x':
		for i, h := range forwardedHeaders {
			if equalFoldASCII(name, h) {
				return hopXForwardedFor << i
			}
		}
	}
	return 0
}

// hopsOfRaw reports which hop-by-hop and X-Forwarded-* headers a raw header block
// (RequestHeader.RawHeaders: the head as received, after the request line) holds, in
// one pass over its lines, so that only those are deleted: deleting an absent header
// costs fasthttp a scan of all of them, 12 scans per request. A line is read as
// fasthttp's parser reads it: its name ends at the first ':' (fasthttp refuses white
// space before it), and a line that starts with white space continues the one before.
// An empty block (a request not parsed from the wire) holds all of them, so that all
// are deleted. It does not allocate.
func hopsOfRaw(raw []byte) uint16 {
	if len(raw) == 0 {
		return hopAll
	}
	var bits uint16
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if i := bytes.IndexByte(line, ':'); i > 0 {
			bits |= hopBit(line[:i])
		}
	}
	return bits
}

// hopsOfResponse reports which hop-by-hop headers a response header holds, in one pass
// over fasthttp's parsed headers (ResponseHeader.All has no side effect, unlike the
// request's, which collects and re-serializes cookies). It does not allocate unless the
// response announces trailers (fasthttp builds that value).
func hopsOfResponse(h *fasthttp.ResponseHeader) uint16 {
	var bits uint16
	for k := range h.All() {
		bits |= hopBit(k)
	}
	return bits &^ (hopXForwardedFor | hopXForwardedProto | hopXForwardedHost | hopXForwardedPort)
}

// connectionValues are the Connection header values of h, none when present says it
// has none.
func connectionValues(h header, present uint16) [][]byte {
	if present&hopConnection == 0 {
		return nil
	}
	return h.PeekAll(fasthttp.HeaderConnection)
}

// removeHopHeaders deletes the headers named in Connection (every Connection header),
// then the hop-by-hop ones of present (hopsOfRaw, hopsOfResponse; hopAll: all).
func removeHopHeaders(h header, present uint16) {
	for _, conn := range connectionValues(h, present) {
		for len(conn) > 0 {
			var tok []byte
			if i := indexComma(conn); i >= 0 {
				tok, conn = conn[:i], conn[i+1:]
			} else {
				tok, conn = conn, nil
			}
			tok = trimOWS(tok)
			if len(tok) > 0 && !endToEnd(tok) {
				h.DelBytes(tok) // PeekAll's values stay valid: the header keeps its buffers
			}
		}
	}
	for i, name := range hopHeaders {
		if present&(1<<i) != 0 {
			h.DelBytes(name)
		}
	}
}

// endToEnd reports whether a header named in Connection must stay all the same: the
// framing (Content-Length, Transfer-Encoding: dropping them leaves a body the member
// request cannot carry), Host (the member's routing and X-Forwarded-Host) and Cookie
// (the session). HAProxy and nginx keep them too.
func endToEnd(name []byte) bool {
	for _, h := range endToEndHeaders {
		if equalFoldASCII(name, h) {
			return true
		}
	}
	return false
}

func indexComma(b []byte) int {
	for i, c := range b {
		if c == ',' {
			return i
		}
	}
	return -1
}

// trimList trims white space and stray commas around a list value ("a, b," -> "a, b").
func trimList(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == ',') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == ',') {
		b = b[:len(b)-1]
	}
	return b
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func equalFoldASCII(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

// errKind is what went wrong with a request, for the status code, the log and counters.
type errKind uint8

const (
	kindNone errKind = iota
	kindNoGroup
	kindNoMember
	kindBodyTooLarge
	kindHeaderTooLarge
	kindBadRequest
	kindClientTimeout
	kindConnect
	kindMemberTimeout
	kindMemberClosed
	kindMemberBusy
	kindMemberError
	kindClientBody
	kindBadVersion
	kindUploadCut
	kindMemberRefused
	numErrKinds
)

var errKindNames = [numErrKinds]string{
	"", "no_group", "no_member", "body_too_large", "header_too_large", "bad_request",
	"client_timeout", "connect", "member_timeout", "member_closed", "member_busy", "member_error", "client_body",
	"bad_version", "upload_cut", "member_refused",
}

// Sentinel errors of the request path; preallocated so that failing costs no allocation.
var (
	errNoGroup    = errors.New("gateway: no target group for host and path")
	errNoMember   = errors.New("gateway: no usable member in group")
	errBadVersion = errors.New("gateway: HTTP version not supported")
	errBadHost    = errors.New("gateway: Host missing, or with userinfo")
	errBadMethod  = errors.New("gateway: method with lower-case letters")
	errClientSlow = errors.New("gateway: request body too slow: the member's write timeout passed waiting for it")
	errMemberBody = errors.New("gateway: member body for an HTTP/1.0 client failed or was larger than 16 MiB")
	errUploadCut  = errors.New("gateway: the member stopped taking the request body before its end")
	// errMemberRefused is a member that closed or reset the connection while the
	// request was still being written: it refused the request (a head over its limit,
	// a body it would not take) without the gateway reading why.
	errMemberRefused = errors.New("gateway: the member closed the connection while the request was being written (it refused the request)")
	errBadTarget     = errors.New("gateway: request target neither origin-form nor an http or https URL")
	errBadPath       = errors.New("gateway: path with dot segments or encoded slashes (server.path_normalization)")
	errBareLFInHead  = errors.New("gateway: request head with bare LF line endings")
	errCLAndTE       = errors.New("gateway: request with both Content-Length and Transfer-Encoding")
	errBodyTooLarge  = errors.New("gateway: request body larger than server.max_body_bytes")
	// errClientBody is a request body the client stopped sending before its end.
	errClientBody = errors.New("gateway: request body incomplete: the client stopped sending")
	// errMemberHeaderTooLarge is a member response head that does not fit the member
	// client's read buffer (max(server.max_header_bytes, 8192)).
	errMemberHeaderTooLarge = errors.New("gateway: member response head too large")
)

// kindOf classifies an error from the request path or from fasthttp.
func kindOf(err error) errKind {
	var small *fasthttp.ErrSmallBuffer
	var opErr *net.OpError
	switch {
	case err == errNoGroup:
		return kindNoGroup
	case err == errNoMember:
		return kindNoMember
	case err == errBodyTooLarge, errors.Is(err, fasthttp.ErrBodyTooLarge):
		return kindBodyTooLarge
	case err == errClientBody:
		return kindClientBody
	case err == errBadHost, err == errBadMethod, err == errBadTarget, err == errBadPath, err == errBareLFInHead, err == errCLAndTE,
		errors.Is(err, errBareLF):
		return kindBadRequest
	case err == errBadVersion:
		return kindBadVersion
	case err == errClientSlow:
		return kindClientTimeout
	case err == errUploadCut:
		return kindUploadCut
	case err == errMemberRefused:
		return kindMemberRefused
	case errors.As(err, &small), err == errH2HeadTooLarge, err == errMemberHeadLarge:
		return kindHeaderTooLarge
	case errors.Is(err, fasthttp.ErrDialTimeout), errors.Is(err, errMemberTLS), errors.Is(err, fasthttp.ErrTLSHandshakeTimeout):
		// A handshake that failed (a certificate that does not verify) or timed out is a
		// connect failure, before any timeout test: memberTLSError wraps the deadline.
		return kindConnect
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return kindMemberTimeout
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return kindMemberBusy
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, errStaleConn), errors.Is(err, errMarkedDown):
		return kindMemberClosed
	case errors.As(err, &opErr) && opErr.Op == "dial", errors.Is(err, syscall.ECONNREFUSED):
		return kindConnect
	}
	return kindMemberError
}

// statusOf is the one place that maps failures to status codes.
func statusOf(k errKind) int {
	switch k {
	case kindNoGroup:
		return fasthttp.StatusNotFound
	case kindNoMember, kindMemberBusy:
		return fasthttp.StatusServiceUnavailable
	case kindBodyTooLarge:
		return fasthttp.StatusRequestEntityTooLarge
	case kindHeaderTooLarge:
		return fasthttp.StatusRequestHeaderFieldsTooLarge
	case kindBadRequest, kindClientBody:
		return fasthttp.StatusBadRequest
	case kindClientTimeout:
		return fasthttp.StatusRequestTimeout
	case kindMemberTimeout:
		return fasthttp.StatusGatewayTimeout
	case kindBadVersion:
		return fasthttp.StatusHTTPVersionNotSupported
	}
	return fasthttp.StatusBadGateway
}

// statusBodies are the short bodies clients see; never internal error text.
var statusBodies = map[int][]byte{
	fasthttp.StatusBadRequest:                  []byte("400 Bad Request\n"),
	fasthttp.StatusNotFound:                    []byte("404 Not Found: no target group for this host and path\n"),
	fasthttp.StatusRequestTimeout:              []byte("408 Request Timeout\n"),
	fasthttp.StatusRequestEntityTooLarge:       []byte("413 Request Entity Too Large\n"),
	fasthttp.StatusRequestHeaderFieldsTooLarge: []byte("431 Request Header Fields Too Large\n"),
	fasthttp.StatusBadGateway:                  []byte("502 Bad Gateway\n"),
	fasthttp.StatusServiceUnavailable:          []byte("503 Service Unavailable\n"),
	fasthttp.StatusGatewayTimeout:              []byte("504 Gateway Timeout\n"),
	fasthttp.StatusHTTPVersionNotSupported:     []byte("505 HTTP Version Not Supported\n"),
}

var strTextPlain = []byte("text/plain; charset=utf-8")

// fail answers a failed request with its status and a short body, counts it and logs
// one line.
func (s *Server) fail(ctx *fasthttp.RequestCtx, snap *snapshot, a access, err error) {
	k := kindOf(err)
	s.stats.errors[k].Add(1)
	status := statusOf(k)
	writeError(ctx, status)
	if info, _ := connInfo(ctx.Conn()); info != nil && info.tls != nil {
		addHSTS(&ctx.Response, info)
	}
	if k == kindBodyTooLarge || k == kindClientBody || k == kindBadVersion || k == kindBadRequest || k == kindClientTimeout {
		ctx.SetConnectionClose() // the rest of the body is still on the connection, or lost
	}
	a.status, a.sent, a.err = status, int64(len(statusBodies[status])), err
	s.logAccess(ctx, snap, &a)
}

func writeError(ctx *fasthttp.RequestCtx, status int) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(status)
	resp.Header.SetContentTypeBytes(strTextPlain)
	resp.SetBodyRaw(statusBodies[status])
}

// handleParseError answers requests fasthttp could not read: 431, 413, 408 or 400.
func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	k := kindOf(err)
	var opErr *net.OpError
	switch {
	case k == kindHeaderTooLarge, k == kindBodyTooLarge:
	case errors.As(err, &opErr) && opErr.Timeout():
		k = kindClientTimeout
	default:
		k = kindBadRequest
	}
	s.stats.errors[k].Add(1)
	status := statusOf(k)
	writeError(ctx, status)
	s.log.Warn().Str("kind", errKindNames[k]).Int("status", status).
		Str("remote", ctx.RemoteAddr().String()).Err(err).Msg("bad request")
}
