package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiongate/sessiongate/health"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// WebSocket and the other protocol upgrades (RFC 9110 section 7.8).
//
// An upgrade request is routed as any request (handle): group, session key, resolver
// chain, learned and moved bindings, strict groups. Then, instead of the member's pool,
// it gets a connection of its own (dialMember; a connect failure goes to the next
// member as for any request) and its head goes out as a normal request's would, with
// Connection: Upgrade and Upgrade kept. A member that answers 101 gets the client
// connection: fasthttp hands it over (Hijack), the member's 101 head goes to the
// client as received, and from then on bytes are copied both ways, one goroutine a
// direction, until both ends are done (tunnel). Any other answer is relayed as a normal
// response, and its connection closed.
//
// Open tunnels are kept per member (tunnelSet), touched when a tunnel opens or closes,
// never by a request. One goroutine per Server (watchTunnels) looks at them every
// second: it closes the idle ones (server.tunnel_idle_timeout) and, with
// server.close_tunnels_on_down, those of members that left (down, maint, drain past
// drain_timeout); a member marked down by active checks or set to maint through the
// admin API has them closed at once. Shutdown waits for them, then closes them.
//
// A WebSocket tunnel the gateway closes ends as a server would end it: a close frame
// with status 1001 (Going Away), put between two of the member's frames (wsFrames),
// then the end of the client's stream, and the connection closed once the client
// answered or tunnelCloseGrace passed.

// isUpgrade reports whether req asks its member to switch protocols on this
// connection: a GET over HTTP/1.1 without a body, an Upgrade header that does not
// name h2c, and the token "upgrade" in Connection (in any of its headers). Anything
// else, h2c included (as nginx does), is a normal request, whose Upgrade goes with the
// other hop-by-hop headers. The request path pays one header lookup (for a request
// without Upgrade); it does not allocate (TestAllocsHandle).
func isUpgrade(req *fasthttp.Request) bool {
	h := &req.Header
	up := h.PeekCanonical(strUpgrade)
	if len(up) == 0 {
		return false
	}
	if !h.IsGet() || !h.IsHTTP11() || h.ConnectionClose() || hasToken(up, strH2C) {
		return false
	}
	if cl := h.ContentLength(); cl != 0 && cl != -2 {
		return false
	}
	for _, v := range h.PeekAll(fasthttp.HeaderConnection) {
		if hasToken(v, strUpgrade) {
			return true
		}
	}
	return false
}

// hasToken reports whether the comma-separated list holds tok (ASCII case-insensitive).
func hasToken(list, tok []byte) bool {
	for len(list) > 0 {
		var t []byte
		if i := indexComma(list); i >= 0 {
			t, list = list[:i], list[i+1:]
		} else {
			t, list = list, nil
		}
		if equalFoldASCII(trimOWS(t), tok) {
			return true
		}
	}
	return false
}

// dialMember opens a connection of its own to m, outside m's pool, bounded by
// client.dial_timeout: a tunnel keeps its connection for as long as it lasts. It is
// the one place where the gateway connects to a member for a tunnel.
func dialMember(snap *snapshot, m *router.Member) (net.Conn, error) {
	c, err := fasthttp.DialTimeout(m.Addr, snap.cfg.Client.DialTimeout)
	if err != nil {
		return nil, err
	}
	conf := snap.memberTLS[m.Index]
	if conf == nil {
		return c, nil
	}
	// HTTP/1.1 only: the upgrade is an HTTP/1.1 mechanism.
	if len(conf.NextProtos) != 1 || conf.NextProtos[0] != "http/1.1" {
		conf = conf.Clone()
		conf.NextProtos = []string{"http/1.1"}
	}
	return memberHandshake(c, conf, snap.cfg.Client.DialTimeout, m.ID, m.Addr)
}

// prepareUpgrade is prepareRequest for an upgrade: the same X-Forwarded-* and
// hop-by-hop handling, then Connection: Upgrade and the client's Upgrade put back.
func prepareUpgrade(ctx *fasthttp.RequestCtx, req *fasthttp.Request, trusted []netip.Prefix) {
	var buf [64]byte
	up := append(buf[:0], req.Header.PeekCanonical(strUpgrade)...)
	prepareRequest(ctx, req, trusted)
	req.Header.SetBytesKV(strConnection, strUpgrade)
	req.Header.SetBytesKV(strUpgrade, up)
}

// upgrade serves an upgrade request whose member handle has picked: it connects
// (trying the next member after a connect failure, as handle does), sends the head,
// and either hands the client connection to a tunnel (101) or relays the member's
// answer.
func (s *Server) upgrade(ctx *fasthttp.RequestCtx, snap *snapshot, g *router.Group, m *router.Member,
	outcome router.Outcome, reason router.MoveReason, key []byte, keyHash uint64, start time.Time, hint cookieHint) {
	req := &ctx.Request
	ws := hasToken(req.Header.PeekCanonical(strUpgrade), strWebSocket)
	prepareUpgrade(ctx, req, snap.trusted)
	head := req.Header.Header()
	// A strict group's session never leaves its member, not even for a retry.
	retry := snap.retry.MaxRetries > 0 && !(g.Strict() && len(key) > 0)
	var first *router.Member
	var firstKind errKind
	var tried router.Tried
	var mc net.Conn
	var err error
	for {
		tried.Add(m)
		m.State.Requests.Add(1)
		mc, err = dialMember(snap, m)
		if err == nil {
			break
		}
		if f, ok := memberFault(err, kindOf(err)); ok {
			s.health.Observe(m.State, f)
		}
		if !retry || tried.Len() > snap.retry.MaxRetries {
			break
		}
		next := g.Retry(keyHash, len(key) > 0, &tried)
		if next == nil {
			break
		}
		if first == nil {
			first, firstKind = m, kindOf(err)
		}
		outcome, reason = s.retryMove(snap, g, m, next, key, keyHash, err, outcome, reason)
		m = next
	}
	a := access{start: start, g: g, m: m, outcome: outcome, tried: first, retryKind: firstKind}
	if err != nil {
		s.fail(ctx, snap, a, err)
		return
	}

	mr := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(mr)
	m.State.Inflight.Add(1)
	br, raw, err := exchange(snap, mc, head, mr)
	m.State.Inflight.Add(-1)
	if err != nil {
		mc.Close()
		f, ok := memberFault(err, kindOf(err))
		if err == errMemberHeaderTooLarge {
			f, ok = health.Broken, true
		}
		if ok {
			s.health.Observe(m.State, f)
		}
		s.fail(ctx, snap, a, err)
		return
	}
	code := mr.Header.StatusCode()
	if code >= 500 {
		s.health.Observe(m.State, health.Status5xx)
	} else {
		s.health.Observe(m.State, health.OK)
	}
	s.stats.outcomes[outcome].Add(1)
	if outcome == router.OutcomeMoved {
		s.stats.moves[reason].Add(1)
	}
	if len(key) > 0 && outcome != router.OutcomeBalanced {
		m.State.SeeSession(keyHash)
	}
	m.State.Observe(code, time.Since(start))
	if snap.learn {
		s.learn(snap, g, m, mr, key, outcome)
	}
	if code != fasthttp.StatusSwitchingProtocols {
		s.relay(ctx, snap, a, mc, br, mr, hint)
		return
	}
	if snap.cookie != nil && (hint.m != m || hint.res != cookieValid) {
		// The signed affinity cookie goes with the 101 too: the client's next upgrade
		// (a reconnect) comes back to this member.
		raw = withHeader(raw, strSetCookie, snap.cookie.set[m.Index])
		s.stats.cookiesSet.Add(1)
	}
	t := &tunnel{
		s: s, ctx: ctx, snap: snap, a: a, st: m.State, raw: ctx.Conn(), member: mc, br: br, head: raw, ws: ws,
		idle: ticks(snap.cfg.Server.TunnelIdleTimeout), kill: make(chan struct{}), done: make(chan struct{}),
	}
	if cc := clientOf(ctx.Conn()); cc != nil {
		cc.hijacked()
	}
	s.openTunnel(t)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(t.run)
}

// exchange sends an upgrade request's head on mc, under client.write_timeout, and
// reads the member's answer head into mr, under client.read_timeout, past any interim
// 1xx answer other than 101. It returns the reader, which holds what the member sent
// after the head, and the head as received.
func exchange(snap *snapshot, mc net.Conn, head []byte, mr *fasthttp.Response) (*bufio.Reader, []byte, error) {
	cfg := &snap.cfg.Client
	if err := mc.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout)); err != nil {
		return nil, nil, err
	}
	if _, err := mc.Write(head); err != nil {
		return nil, nil, err
	}
	if err := mc.SetReadDeadline(time.Now().Add(cfg.ReadTimeout)); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(mc, max(snap.cfg.Server.MaxHeaderBytes, 8192))
	for {
		b, err := peekHead(br)
		if err != nil {
			return nil, nil, err
		}
		raw := append([]byte(nil), b...)
		if err := mr.Header.Read(br); err != nil {
			return nil, nil, err
		}
		if code := mr.Header.StatusCode(); code < 100 || code >= 200 || code == fasthttp.StatusSwitchingProtocols {
			return br, raw, nil
		}
		mr.Header.Reset() // 100 Continue, 103 Early Hints: the answer follows
	}
}

// peekHead waits until br holds a whole response head (up to its empty line, CRLF or
// bare LF) and returns it, borrowed from br until br is read again. A head larger
// than br's buffer is errMemberHeaderTooLarge; a member that closes before its head
// is complete has closed the connection (fasthttp.ErrConnectionClosed).
func peekHead(br *bufio.Reader) ([]byte, error) {
	from := 0
	for {
		b, _ := br.Peek(br.Buffered()) // all that is buffered
		if end := headEnd(b, from); end > 0 {
			return b[:end], nil
		}
		from = max(0, len(b)-2)
		_, err := br.Peek(len(b) + 1) // wait for more
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, errMemberHeaderTooLarge
		case err == io.EOF:
			return nil, fasthttp.ErrConnectionClosed
		case err != nil:
			return nil, err
		}
	}
}

// headEnd returns the length of the head in b (through its empty line), looking from
// offset from on, or 0 if b does not hold all of it.
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return 0
}

// relay answers an upgrade the member refused (any status but 101) with the member's
// answer, as handle would, read whole (at most maxHTTP10Body), then closes the
// member's connection.
func (s *Server) relay(ctx *fasthttp.RequestCtx, snap *snapshot, a access, mc net.Conn, br *bufio.Reader, mr *fasthttp.Response, hint cookieHint) {
	var err error
	if code := mr.Header.StatusCode(); code != fasthttp.StatusNoContent && code != fasthttp.StatusNotModified {
		err = mr.ReadBody(br, maxHTTP10Body)
	}
	mc.Close()
	if err != nil {
		f := health.Closed
		if kindOf(err) == kindMemberTimeout {
			f = health.Timeout
		}
		if !errors.Is(err, fasthttp.ErrBodyTooLarge) {
			s.health.Observe(a.m.State, f)
		}
		s.fail(ctx, snap, a, errMemberBody)
		return
	}
	resp := &ctx.Response
	mr.Header.CopyTo(&resp.Header)
	removeHopHeaders(&resp.Header, hopsOfResponse(&resp.Header))
	resp.Header.ResetConnectionClose()
	if snap.cookie != nil && snap.cookie.setFor(resp, a.m, hint.m, hint.res) {
		s.stats.cookiesSet.Add(1)
	}
	resp.SetBody(mr.Body())
	a.status, a.sent = resp.StatusCode(), int64(len(resp.Body()))
	s.logAccess(ctx, snap, &a)
}

// tunnelCloseGrace bounds each step of closing a WebSocket tunnel: waiting for a frame
// boundary in what the member sends, writing the close frame, and waiting for the
// client's answer.
const tunnelCloseGrace = time.Second

// tunnelReason is why the gateway closes a tunnel.
type tunnelReason uint32

const (
	tunnelOpen tunnelReason = iota
	tunnelIdle
	tunnelMemberDown
	tunnelMaint
	tunnelDrainTimeout
	tunnelShutdown
	numTunnelReasons
)

var tunnelReasonNames = [numTunnelReasons]string{"", "idle", "member_down", "maint", "drain_timeout", "shutdown"}

// tunnelReasonOf is why the tunnels of a member in state st must close, if they must:
// down by active checks, in maintenance, or drained past drain_timeout (not a passive
// ejection, which one slow request can cause).
func tunnelReasonOf(st *router.MemberState) tunnelReason {
	switch st.Reason() {
	case router.MoveMemberDown:
		return tunnelMemberDown
	case router.MoveMaint:
		return tunnelMaint
	case router.MoveDrainingDeadline:
		return tunnelDrainTimeout
	}
	return tunnelOpen
}

// tunnel is one upgraded connection: the client's, handed over by fasthttp, and the
// member's, with a goroutine per direction while it lasts.
type tunnel struct {
	s    *Server
	ctx  *fasthttp.RequestCtx // its request, for the access line written at the end
	snap *snapshot
	a    access
	st   *router.MemberState
	set  *tunnelSet

	raw    net.Conn      // the client connection fasthttp served (ctx.Conn()): closed to end the tunnel
	client net.Conn      // the same, as fasthttp hands it over (reads what fasthttp had buffered first)
	member net.Conn      // the tunnel's own member connection
	br     *bufio.Reader // the member's reader, holding what followed its 101 head
	head   []byte        // the member's 101 head as received
	ws     bool          // Upgrade: websocket

	idle     uint32        // server.tunnel_idle_timeout, in clock ticks
	opened   uint32        // clock tick at opening
	last     atomic.Uint32 // clock tick of the last read either way
	started  atomic.Bool   // run began (or the tunnel was abandoned before it could)
	closing  atomic.Uint32 // tunnelReason: the gateway is closing it
	closedAt atomic.Uint32 // clock tick closing began
	kill     chan struct{} // closed when closing begins
	done     chan struct{} // closed when the client-to-member copy ends

	fr   wsFrames // member-to-client frame boundaries (that goroutine's own)
	sent int64    // bytes written to the client after the 101 head (that goroutine's own)
}

// tunnelBufs are the copy buffers, one per direction of each open tunnel.
var tunnelBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// ticks is d in clock ticks (100ms), at least one.
func ticks(d time.Duration) uint32 {
	return uint32(max((d+99*time.Millisecond)/(100*time.Millisecond), 1))
}

// tunnelEnd is how the member-to-client copy ended.
type tunnelEnd uint8

const (
	endFailed tunnelEnd = iota // an error either way, or a close without a close frame
	endEOF                     // the member ended its stream
	endClosed                  // the gateway closed a WebSocket with a close frame
)

// run is the tunnel's hijack handler: it writes the member's 101 head and what followed
// it, copies both ways, and ends the tunnel. fasthttp closes the client connection when
// it returns.
func (t *tunnel) run(c net.Conn) {
	if !t.started.CompareAndSwap(false, true) {
		return // abandoned (watchTunnels): finished already
	}
	defer t.finish()
	t.client = c
	if t.closing.Load() != 0 {
		t.hardClose()
		return
	}
	if err := t.greet(); err != nil {
		t.hardClose()
		return
	}
	go t.toMember()
	switch t.toClient() {
	case endEOF:
		// The member is done sending: so is the client's side, and the client may
		// still send until it is done too (a half-closed tunnel, bounded by idleness).
		if closeWrite(t.raw) {
			select {
			case <-t.done:
			case <-t.kill:
			}
		}
	case endClosed:
		closeWrite(t.raw)
		deadline := time.Now().Add(tunnelCloseGrace)
		t.raw.SetReadDeadline(deadline)     //nolint:errcheck // closed below in any case
		t.member.SetWriteDeadline(deadline) //nolint:errcheck
		<-t.done
	}
	t.hardClose()
	<-t.done
}

// greet writes the member's 101 head and what the member sent after it to the client.
func (t *tunnel) greet() error {
	c := t.client
	if err := c.SetWriteDeadline(time.Now().Add(t.snap.cfg.Server.WriteTimeout)); err != nil {
		return err
	}
	if _, err := c.Write(t.head); err != nil {
		return err
	}
	if n := t.br.Buffered(); n > 0 {
		b, _ := t.br.Peek(n)
		if t.ws {
			t.fr.scan(b, false)
		}
		if _, err := c.Write(b); err != nil {
			return err
		}
		t.sent += int64(n)
	}
	t.br, t.head = nil, nil // the member connection is read directly from now on
	if err := c.SetWriteDeadline(time.Time{}); err != nil {
		return err
	}
	if t.closing.Load() != 0 { // shut set its deadline before the one above was cleared
		c.SetWriteDeadline(time.Now().Add(tunnelCloseGrace)) //nolint:errcheck // fails the write in toClient if so
	}
	t.touch()
	return t.member.SetDeadline(time.Time{})
}

// touch notes traffic, for the idle timeout: a clock read, and a write only once a tick.
func (t *tunnel) touch() {
	if now := t.s.clock.Load(); t.last.Load() != now {
		t.last.Store(now)
	}
}

// toClient copies the member's bytes to the client until the member ends its stream,
// either side fails, or the gateway closes the tunnel. Closing a WebSocket tunnel
// waits, up to tunnelCloseGrace, for the next frame boundary in the member's stream,
// and sends the close frame there.
func (t *tunnel) toClient() tunnelEnd {
	bp := tunnelBufs.Get().(*[]byte)
	defer tunnelBufs.Put(bp)
	buf := *bp
	var graceEnd time.Time
	for {
		closing := t.closing.Load() != 0
		if closing {
			if !t.ws || t.fr.closed {
				return endFailed // the member's own close frame went out: nothing to add
			}
			if t.fr.boundary() {
				return t.sendClose()
			}
			if graceEnd.IsZero() {
				graceEnd = time.Now().Add(tunnelCloseGrace)
				t.client.SetWriteDeadline(graceEnd) //nolint:errcheck // a failed write ends the copy
			}
			if err := t.member.SetReadDeadline(graceEnd); err != nil {
				return endFailed
			}
		}
		n, err := t.member.Read(buf)
		if n > 0 {
			t.touch()
			k := n
			if t.ws {
				k = t.fr.scan(buf[:n], t.closing.Load() != 0)
			}
			if _, werr := t.client.Write(buf[:k]); werr != nil {
				return endFailed
			}
			t.sent += int64(k)
		}
		if err != nil {
			switch {
			case t.closing.Load() == 0:
				if err == io.EOF {
					return endEOF
				}
				return endFailed
			case errors.Is(err, os.ErrDeadlineExceeded) && (graceEnd.IsZero() || time.Now().Before(graceEnd)):
				continue // shut's wake-up; the loop's top takes over
			case t.ws && !t.fr.closed && t.fr.boundary():
				return t.sendClose()
			}
			return endFailed
		}
	}
}

// sendClose writes the close frame 1001 to the client, within tunnelCloseGrace.
func (t *tunnel) sendClose() tunnelEnd {
	if err := t.client.SetWriteDeadline(time.Now().Add(tunnelCloseGrace)); err != nil {
		return endFailed
	}
	if _, err := t.client.Write(wsClose1001); err != nil {
		return endFailed
	}
	return endClosed
}

// toMember copies the client's bytes to the member until the client ends its stream or
// either side fails. While the gateway closes the tunnel, what the client sends (its
// answer to the close frame) is read and dropped.
func (t *tunnel) toMember() {
	defer close(t.done)
	bp := tunnelBufs.Get().(*[]byte)
	defer tunnelBufs.Put(bp)
	buf := *bp
	for {
		n, err := t.client.Read(buf)
		if n > 0 {
			t.touch()
			if t.closing.Load() == 0 {
				if _, werr := t.member.Write(buf[:n]); werr != nil && t.closing.Load() == 0 {
					t.hardClose()
					return
				}
			}
		}
		if err != nil {
			if t.closing.Load() == 0 {
				if err != io.EOF || !closeWrite(t.member) {
					t.hardClose()
				}
			}
			return
		}
	}
}

// shut begins closing the tunnel, once, and does not block: a WebSocket one gets its
// close frame from toClient, woken here by a read deadline; any other is closed now.
// Safe for concurrent use.
func (t *tunnel) shut(r tunnelReason) bool {
	if !t.closing.CompareAndSwap(0, uint32(r)) {
		return false
	}
	t.closedAt.Store(t.s.clock.Load())
	close(t.kill)
	if !t.started.Load() { // run will see closing and end; fasthttp still has the client connection
		t.member.Close()
		return true
	}
	if !t.ws {
		t.hardClose()
		return true
	}
	now := time.Now()
	t.member.SetReadDeadline(now)                     //nolint:errcheck // a closed connection wakes the reader too
	t.raw.SetWriteDeadline(now.Add(tunnelCloseGrace)) //nolint:errcheck
	return true
}

// hardClose closes both connections; both copies end.
func (t *tunnel) hardClose() {
	t.member.Close()
	if t.started.Load() {
		t.raw.Close()
	}
}

// finish writes the tunnel's access line (status 101, the bytes sent to the client,
// the tunnel's whole duration) and forgets it.
func (t *tunnel) finish() {
	t.a.status, t.a.sent = fasthttp.StatusSwitchingProtocols, t.sent
	t.s.logAccess(t.ctx, t.snap, &t.a)
	if r := tunnelReason(t.closing.Load()); r != tunnelOpen {
		t.s.log.Debug().Str("member", t.st.ID()).Str("reason", tunnelReasonNames[r]).Int64("bytes", t.sent).
			Msg("tunnel closed by the gateway")
	}
	t.set.remove(t)
}

// closeWrite ends the sending side of c, if c is a TCP (or TLS) connection, possibly
// inside a clientConn, and reports whether it could.
func closeWrite(c net.Conn) bool {
	for {
		switch x := c.(type) {
		case interface{ CloseWrite() error }:
			return x.CloseWrite() == nil
		case *clientConn:
			c = x.Conn
		case *tlsClientConn:
			c = x.tc
		default:
			return false
		}
	}
}

// tunnelSet is the open tunnels of one member, so that they can be counted and
// closed. It is touched when a tunnel opens or closes, and by watchTunnels.
type tunnelSet struct {
	mu      sync.Mutex
	tunnels map[*tunnel]struct{}
	open    atomic.Int64
}

func (ts *tunnelSet) add(t *tunnel) {
	ts.mu.Lock()
	if ts.tunnels == nil {
		ts.tunnels = map[*tunnel]struct{}{}
	}
	ts.tunnels[t] = struct{}{}
	ts.open.Store(int64(len(ts.tunnels)))
	ts.mu.Unlock()
}

func (ts *tunnelSet) remove(t *tunnel) {
	ts.mu.Lock()
	delete(ts.tunnels, t)
	ts.open.Store(int64(len(ts.tunnels)))
	ts.mu.Unlock()
}

// list appends the open tunnels to dst.
func (ts *tunnelSet) list(dst []*tunnel) []*tunnel {
	ts.mu.Lock()
	for t := range ts.tunnels {
		dst = append(dst, t)
	}
	ts.mu.Unlock()
	return dst
}

// tunnelSet returns the open tunnels of the member with state st.
func (s *Server) tunnelSet(st *router.MemberState) *tunnelSet {
	if v, ok := s.tunnels.Load(st); ok {
		return v.(*tunnelSet)
	}
	v, _ := s.tunnels.LoadOrStore(st, &tunnelSet{})
	return v.(*tunnelSet)
}

// tunnelCount is the number of open tunnels of the member with state st.
func (s *Server) tunnelCount(st *router.MemberState) int64 {
	if v, ok := s.tunnels.Load(st); ok {
		return v.(*tunnelSet).open.Load()
	}
	return 0
}

// openTunnels is the number of open tunnels of all members.
func (s *Server) openTunnels() int64 {
	var n int64
	s.tunnels.Range(func(_, v any) bool {
		n += v.(*tunnelSet).open.Load()
		return true
	})
	return n
}

// openTunnel registers t with its member; a tunnel opened while Shutdown closes them is
// closed at once.
func (s *Server) openTunnel(t *tunnel) {
	now := s.clock.Load()
	t.opened = now
	t.last.Store(now)
	t.set = s.tunnelSet(t.st)
	t.set.add(t)
	s.stats.tunnels.Add(1)
	if s.tunnelsOff.Load() {
		t.shut(tunnelShutdown)
	}
}

// closeTunnels closes the tunnels of the member with state st, and logs how many.
func (s *Server) closeTunnels(st *router.MemberState, r tunnelReason) int {
	v, ok := s.tunnels.Load(st)
	if !ok {
		return 0
	}
	n := 0
	for _, t := range v.(*tunnelSet).list(nil) {
		if t.shut(r) {
			n++
		}
	}
	if n > 0 {
		s.log.Info().Str("member", st.ID()).Int("tunnels", n).Str("reason", tunnelReasonNames[r]).
			Msg("member out: its tunnels closed")
	}
	return n
}

// tunnelWatchInterval is how often watchTunnels looks at the open tunnels.
const tunnelWatchInterval = time.Second

// Ticks after which watchTunnels gives up on a tunnel: one whose hijack handler never
// ran (fasthttp could not hand the connection over), and one whose close has not ended
// (every step of it is bounded; this is the backstop).
const (
	tunnelStartTicks = 100
	tunnelCloseTicks = 50
)

// watchTunnels looks at every open tunnel each tunnelWatchInterval until stop: it
// closes the idle ones and, with server.close_tunnels_on_down, those of members that
// left (tunnelReasonOf).
func (s *Server) watchTunnels(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tk := time.NewTicker(tunnelWatchInterval)
	defer tk.Stop()
	var buf []*tunnel
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		onDown := s.snap.Load().cfg.Server.CloseTunnelsOnDown
		now := s.clock.Load()
		s.tunnels.Range(func(k, v any) bool {
			ts := v.(*tunnelSet)
			if ts.open.Load() == 0 {
				return true
			}
			r := tunnelOpen
			if onDown {
				r = tunnelReasonOf(k.(*router.MemberState))
			}
			if r != tunnelOpen {
				s.closeTunnels(k.(*router.MemberState), r)
			}
			buf = ts.list(buf[:0])
			for _, t := range buf {
				t.watch(now)
			}
			clear(buf)
			return true
		})
	}
}

// watch is watchTunnels' look at one tunnel at clock tick now.
func (t *tunnel) watch(now uint32) {
	switch {
	case !t.started.Load() && since(now, t.opened) > tunnelStartTicks:
		if t.started.CompareAndSwap(false, true) {
			t.closing.CompareAndSwap(0, uint32(tunnelShutdown))
			t.member.Close()
			t.finish()
		}
	case t.closing.Load() != 0:
		if since(now, t.closedAt.Load()) > tunnelCloseTicks {
			t.hardClose()
		}
	case since(now, t.last.Load()) >= t.idle:
		t.shut(tunnelIdle)
	}
}

// since is the ticks from then to now, 0 when then is later: watchTunnels reads the
// clock once per look, and a tunnel can open or see traffic after that, at the next
// tick (now-then would wrap around to a tunnel idle for years).
func since(now, then uint32) uint32 {
	if then > now {
		return 0
	}
	return now - then
}

// stopTunnels waits for the open tunnels to end until ctx's deadline, then closes
// them (a WebSocket client gets its close frame) and waits for that, boundedly.
func (s *Server) stopTunnels(deadline <-chan struct{}) {
	s.tunnelsOff.Store(true)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for s.openTunnels() > 0 {
		select {
		case <-deadline:
		case <-poll.C:
			continue
		}
		break
	}
	if n := s.openTunnels(); n > 0 {
		s.log.Info().Int64("tunnels", n).Msg("shutdown: closing the tunnels still open")
		s.tunnels.Range(func(k, _ any) bool {
			s.closeTunnels(k.(*router.MemberState), tunnelShutdown)
			return true
		})
	}
	end := time.Now().Add(3 * tunnelCloseGrace)
	for s.openTunnels() > 0 && time.Now().Before(end) {
		<-poll.C
	}
	close(s.tunnelStop)
	<-s.tunnelDone
}

// cookieHint is what the request's signed affinity cookie said: the member it named
// (nil: none valid) and how it verified.
type cookieHint struct {
	m   *router.Member
	res int
}

// withHeader returns a copy of a response head (through its empty line) with the
// header name: value added before the empty line.
func withHeader(head, name, value []byte) []byte {
	end := len(head) - 2 // the empty line's CRLF
	if end < 0 || string(head[end:]) != "\r\n" {
		end = len(head) - 1 // a bare LF
	}
	out := make([]byte, 0, len(head)+len(name)+len(value)+4)
	out = append(out, head[:end]...)
	out = append(out, name...)
	out = append(out, ": "...)
	out = append(out, value...)
	out = append(out, "\r\n"...)
	return append(out, head[end:]...)
}
