package gateway

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// clientConn wraps an accepted client connection to see what fasthttp's parser lets
// through or waits on, as the bytes of each request head arrive:
//
//   - a bare LF (not after CR) anywhere in the head: fasthttp waits for CRLFCRLF, so a
//     head ended by bare LFs would hang until read_timeout. Once the head's end (its
//     empty line) is read, Read fails with errBareLF, which fasthttp answers through
//     handleParseError (400); if fasthttp could still parse the head (it ended in
//     CRLFCRLF), the handler refuses it (400). RFC 9112 section 2.2 lets a recipient
//     accept bare LF; refusing it keeps one reading of the head for every hop.
//   - Content-Length and Transfer-Encoding in one head: fasthttp lets
//     Transfer-Encoding win (RFC 9112 section 6.3 allows it); the handler answers 400
//     instead, as nginx does: no legitimate client sends both.
//
// Only head bytes are looked at: after a head's CRLFCRLF the rest of the read (a body,
// the start of a pipelined request) is not, until fasthttp is done with the request
// (clientConnState). A
// pipelined head that arrived in the same read as its predecessor's is therefore left
// to fasthttp alone, and so is its body: a first line that is no request line stops
// the scan. The scan visits each LF once with IndexByte; it allocates nothing.
type clientConn struct {
	net.Conn
	inHead  bool // scanning: the bytes read belong to a request head
	lastCR  bool // the last byte read was CR
	lineLen int  // bytes of the current line read so far, before its LF
	lines   int  // non-empty lines of the head so far
	flags   uint8
	pre     [18]byte // the current line's first bytes ("transfer-encoding:")
	tail    [9]byte  // and its last ones ("HTTP/1.1", and a CR)
	tailN   int

	info   *listenerInfo // the listener it came in on; nil for connections of tests
	s      *Server       // whose per-client count it is in (perIP); nil: none
	perIP  netip.Addr
	closed atomic.Bool

	// The server's timeouts, kept here rather than by fasthttp (coarse deadlines,
	// deadline.go); nil leaves the deadlines alone (tests, ServeConn). phase says
	// which read timeout applies, since when: the wait for a request's first byte
	// (idle_timeout; on a new connection header_timeout, from the accept), its head
	// (header_timeout from that byte, cut to read_timeout) and its body (read_timeout
	// from the end of the head). The answer has write_timeout from its first write.
	waits    *clientWaits
	phase    uint8
	first    bool  // the connection's first request: its head counts from the accept
	headDone bool  // scan saw the empty line that ends the head
	writing  bool  // the answer is being written, since wsince
	since    int64 // when the phase began (ticker scale)
	wsince   int64
	rd, wd   int64 // the deadlines armed (ticker scale); 0: none
	explicit bool  // handed over (hijacked): its deadlines are the tunnel's from now on
}

// Read phases of a client connection (clientConn.phase).
const (
	phaseIdle uint8 = iota // waiting for a request's first byte
	phaseHead              // reading its head
	phaseBody              // reading its body
)

// clientWaits are the client-facing timeouts of a Server, for its clientConns.
type clientWaits struct {
	idle, head, read, write wait
	clk                     connClock
}

func newClientWaits(clock *ticker, header, read, write, idle time.Duration) *clientWaits {
	head := min(header, read)
	return &clientWaits{idle: newWait(idle), head: newWait(head), read: newWait(read), write: newWait(write),
		clk: newConnClock(clock, idle, head, read, write)}
}

// keep makes c keep w's timeouts; the connection begins now (its first head counts
// from here).
func (c *clientConn) keep(w *clientWaits) {
	c.waits, c.first, c.since = w, true, w.clk.now()
}

// keepRead arms the read deadline of the phase, unless the one armed fits it.
func (c *clientConn) keepRead() error {
	w := &c.waits.read
	switch {
	case c.phase == phaseIdle && !c.first:
		w = &c.waits.idle
	case c.phase != phaseBody:
		w = &c.waits.head
	}
	at, ok := c.waits.clk.due(c.rd, c.since, w)
	if !ok {
		return nil
	}
	c.rd = at
	return c.Conn.SetReadDeadline(c.waits.clk.deadline(at))
}

// advance moves the phase on after a read that returned bytes.
func (c *clientConn) advance() {
	if c.phase == phaseIdle {
		c.phase = phaseHead
		if !c.first {
			c.since = c.waits.clk.now()
		}
	}
	// A head that scan stopped looking at (one pipelined behind another) stays in
	// phaseHead: its body, if it needs reads, has header_timeout from the first byte.
	if c.phase == phaseHead && c.headDone {
		c.phase, c.since = phaseBody, c.waits.clk.now()
	}
}

// Write writes, under write_timeout from the answer's first write.
func (c *clientConn) Write(p []byte) (int, error) {
	if c.waits != nil && !c.explicit {
		if !c.writing {
			c.writing, c.wsince = true, c.waits.clk.now()
		}
		if at, ok := c.waits.clk.due(c.wd, c.wsince, &c.waits.write); ok {
			c.wd = at
			if err := c.Conn.SetWriteDeadline(c.waits.clk.deadline(at)); err != nil {
				return 0, err
			}
		}
	}
	return c.Conn.Write(p)
}

// Close closes the connection and frees its place in the per-client count.
func (c *clientConn) Close() error {
	if c.closed.CompareAndSwap(false, true) && c.s != nil {
		c.s.perIP.remove(c.perIP)
	}
	return c.Conn.Close()
}

// tlsClientConn is a client connection over TLS (HTTP/1.1): fasthttp sees it as TLS
// (ctx.IsTLS, TLSConnectionState) through Handshake and ConnectionState. id is its TLS
// session's affinity id, with TLS-session affinity.
type tlsClientConn struct {
	clientConn
	tc    *tls.Conn
	id    [16]byte
	hasID bool
}

func (c *tlsClientConn) Handshake() error { return c.tc.Handshake() }

func (c *tlsClientConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// clientOf returns the clientConn of a client connection, nil for another conn (one of
// HTTP/2, or of a caller that serves fasthttp directly).
func clientOf(c net.Conn) *clientConn {
	switch c := c.(type) {
	case *clientConn:
		return c
	case *tlsClientConn:
		return &c.clientConn
	}
	return nil
}

// connInfo returns the listener a request's connection came in on (nil if unknown) and
// its TLS session's affinity id (nil without one).
func connInfo(c net.Conn) (*listenerInfo, []byte) {
	switch c := c.(type) {
	case *clientConn:
		return c.info, nil
	case *tlsClientConn:
		if c.hasID {
			return c.info, c.id[:]
		}
		return c.info, nil
	case *h2Conn:
		if c.hasID {
			return c.info, c.id[:]
		}
		return c.info, nil
	}
	return nil, nil
}

const (
	flagBareLF uint8 = 1 << iota
	flagContentLength
	flagTransferEncoding
)

// errBareLF is the read error of a request head ended by bare LFs.
var errBareLF = errors.New("gateway: request head ends in bare LF line endings")

var (
	strContentLengthColon    = []byte("content-length:")
	strTransferEncodingColon = []byte("transfer-encoding:")
)

func newClientConn(c net.Conn) *clientConn { return &clientConn{Conn: c, inHead: true} }

// Read reads under the phase's read timeout and, in a head, scans.
func (c *clientConn) Read(p []byte) (int, error) {
	kept := c.waits != nil && !c.explicit
	if kept {
		if err := c.keepRead(); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		bare := c.inHead && c.scan(p[:n])
		if kept {
			c.advance()
		}
		if bare {
			return n, errBareLF
		}
	}
	return n, err
}

// next starts the next request's head: fasthttp calls it through Server.ConnState
// (StateIdle) once a request is done, its answer written and what was left of its body
// discarded, so that body bytes are never read as a head. The wait for the next
// request (idle_timeout) begins.
func (c *clientConn) next() {
	c.inHead, c.lastCR, c.lineLen, c.lines, c.flags, c.tailN = true, false, 0, 0, 0, 0
	c.headDone = false
	if c.waits != nil {
		c.phase, c.first, c.writing, c.since = phaseIdle, false, false, c.waits.clk.now()
	}
}

// hijacked turns the scan off for good: the connection is handed over to a tunnel
// (an upgrade), whose bytes are no request heads, and no StateIdle follows. The
// handler calls it before Hijack, in the goroutine that reads the connection. The
// scan is already off then (the upgrade's head is complete); this keeps it so. The
// deadlines are the tunnel's from now on; the 101 answer still to be written gets
// write_timeout.
func (c *clientConn) hijacked() {
	c.inHead = false
	if c.waits != nil && !c.explicit {
		c.explicit = true
		if w := c.waits.write.d; w > 0 {
			c.Conn.SetWriteDeadline(time.Now().Add(w)) //nolint:errcheck // a failed set fails the write
		}
	}
}

// clientConnState is the client server's ConnState hook.
func clientConnState(c net.Conn, st fasthttp.ConnState) {
	if st == fasthttp.StateIdle {
		if cc := clientOf(c); cc != nil {
			cc.next()
		}
	}
}

// refused reports what the handler must refuse in the head it is serving: a bare LF,
// or both Content-Length and Transfer-Encoding.
func (c *clientConn) refused() error {
	switch {
	case c.flags&flagBareLF != 0:
		return errBareLFInHead
	case c.flags&(flagContentLength|flagTransferEncoding) == flagContentLength|flagTransferEncoding:
		return errCLAndTE
	}
	return nil
}

// scan looks at head bytes p and reports whether the head ended in bare LFs.
func (c *clientConn) scan(p []byte) bool {
	i := 0
	for {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			if i < len(p) {
				c.linePrefix(p[i:])
				c.keepTail(p[i:])
				c.lineLen += len(p) - i
				c.lastCR = p[len(p)-1] == '\r'
			}
			return false
		}
		k := i + j // p[k] is an LF
		c.linePrefix(p[i:k])
		cr := k > i && p[k-1] == '\r' || k == i && c.lastCR
		n := c.lineLen + k - i // the line's bytes before its LF
		end := n - b2i(cr)     // the line's length without its CR
		isRequest := true
		if end > 0 && c.lines == 0 {
			if cr && k == i && c.tailN > 0 {
				c.tailN-- // the CR ended the previous read
			}
			isRequest = c.requestLine(p[i:k-b2i(cr && k > i)], end)
		}
		c.lineLen, c.lastCR, c.tailN = 0, false, 0
		if !cr && isRequest {
			c.flags |= flagBareLF
		}
		switch {
		case !isRequest:
			// Not a request line: these are body bytes of a request whose head was
			// read with its predecessor's (pipelined), not a head. Stop looking.
			c.inHead = false
			return false
		case end > 0:
			c.lines++
		case c.lines == 0:
			// An empty line before the request line is ignored (RFC 9112 section 2.2).
		case c.flags&flagBareLF != 0:
			return true // fasthttp would wait for a CRLFCRLF that never comes
		default:
			c.inHead, c.headDone = false, true // the head is complete; what follows is not looked at
			return false
		}
		i = k + 1
	}
}

// requestLine reports whether a first line of n bytes (CR aside), whose part in this
// read is seg, can be a request line: long enough ("GET / HTTP/1.1") and ending in
// "HTTP/x.y".
func (c *clientConn) requestLine(seg []byte, n int) bool {
	const shortest = len("X / HTTP/1.1")
	if n < shortest {
		return false
	}
	var last [8]byte
	m := 0
	if len(seg) >= 8 {
		m = copy(last[:], seg[len(seg)-8:])
	} else {
		// the line's end is split: the end of the kept tail, then seg
		keep := min(c.tailN, 8-len(seg))
		m = copy(last[:], c.tail[c.tailN-keep:c.tailN])
		m += copy(last[m:], seg)
	}
	return m == 8 && string(last[:5]) == "HTTP/"
}

// keepTail keeps the last 9 bytes of the current line seen so far.
func (c *clientConn) keepTail(seg []byte) {
	const size = len(c.tail)
	if len(seg) >= size {
		c.tailN = copy(c.tail[:], seg[len(seg)-size:])
		return
	}
	keep := min(c.tailN, size-len(seg))
	copy(c.tail[:], c.tail[c.tailN-keep:c.tailN])
	c.tailN = keep + copy(c.tail[keep:], seg)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// linePrefix keeps the first bytes of the current line, across reads, and notes the
// header names they start.
func (c *clientConn) linePrefix(seg []byte) {
	if c.lineLen >= len(c.pre) {
		return
	}
	n := copy(c.pre[c.lineLen:], seg)
	c.lineName(c.pre[:c.lineLen+n])
}

// lineName notes a Content-Length or Transfer-Encoding header starting at p.
func (c *clientConn) lineName(p []byte) {
	if len(p) == 0 {
		return
	}
	switch p[0] | 0x20 {
	case 'c':
		if hasPrefixFold(p, strContentLengthColon) {
			c.flags |= flagContentLength
		}
	case 't':
		if hasPrefixFold(p, strTransferEncodingColon) {
			c.flags |= flagTransferEncoding
		}
	}
}

// hasPrefixFold reports whether b starts with the lower-case ASCII prefix.
func hasPrefixFold(b, prefix []byte) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i, c := range prefix {
		if b[i]|0x20 != c && b[i] != c {
			return false
		}
	}
	return true
}

// clientListener wraps each accepted connection in a clientConn.
type clientListener struct{ net.Listener }

func (l clientListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newClientConn(c), nil
}
