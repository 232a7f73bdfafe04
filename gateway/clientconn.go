package gateway

import (
	"errors"
	"net"

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
// to fasthttp alone. The scan visits each LF once with IndexByte; it allocates nothing.
type clientConn struct {
	net.Conn
	inHead  bool // scanning: the bytes read belong to a request head
	lastCR  bool // the last byte read was CR
	lineLen int  // bytes of the current line read so far, before its LF
	lines   int  // non-empty lines of the head so far
	flags   uint8
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

// Read reads and, in a head, scans.
func (c *clientConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.inHead && c.scan(p[:n]) {
		return n, errBareLF
	}
	return n, err
}

// next starts the next request's head: fasthttp calls it through Server.ConnState
// (StateIdle) once a request is done, its answer written and what was left of its body
// discarded, so that body bytes are never read as a head.
func (c *clientConn) next() {
	c.inHead, c.lastCR, c.lineLen, c.lines, c.flags = true, false, 0, 0, 0
}

// clientConnState is the client server's ConnState hook.
func clientConnState(c net.Conn, st fasthttp.ConnState) {
	if st == fasthttp.StateIdle {
		if cc, ok := c.(*clientConn); ok {
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
		if c.lineLen == 0 && i < len(p) {
			c.lineName(p[i:])
		}
		j := indexLF(p[i:])
		if j < 0 {
			if i < len(p) {
				c.lineLen += len(p) - i
				c.lastCR = p[len(p)-1] == '\r'
			}
			return false
		}
		k := i + j // p[k] is an LF
		cr := k > i && p[k-1] == '\r' || k == i && c.lastCR
		n := c.lineLen + k - i // the line's bytes before its LF
		if !cr {
			c.flags |= flagBareLF
		}
		c.lineLen, c.lastCR = 0, false
		i = k + 1
		switch {
		case n > 1 || n == 1 && !cr:
			c.lines++
		case c.lines == 0:
			// An empty line before the request line is ignored (RFC 9112 section 2.2).
		case c.flags&flagBareLF != 0:
			return true // fasthttp would wait for a CRLFCRLF that never comes
		default:
			c.inHead = false // the head is complete; what follows is not looked at
			return false
		}
	}
}

// lineName notes a Content-Length or Transfer-Encoding header starting at p. A name
// split across two reads is not seen (fasthttp's own handling then applies).
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

func indexLF(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
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
