package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) lets a load
// balancer in front of the gateway (HAProxy, AWS NLB, F5) say who the client is: the
// first bytes of each connection are a header with the client's address and port and
// the address it connected to. A listener that expects it (newProxyListener) reads
// that header before the first request and refuses a connection without one; the
// connection's RemoteAddr is then the client, so X-Forwarded-For, max_conns_per_ip and
// the access log name the client rather than the balancer. Only a listener that can be
// reached through such a proxy alone may expect it: anyone who can connect directly
// can write any header.

// Limits of a header.
const (
	proxyV1Max     = 107  // the longest v1 line, CRLF included (the spec's own bound)
	proxyV2Max     = 4096 // the longest v2 header accepted, TLVs included (the spec allows 64 KiB)
	proxyV2Fixed   = 16   // signature, version and command, family, length
	proxyFirstRead = 512  // the first read's buffer: any v1 header and the usual v2 ones, with what follows
)

var (
	proxyV1Sig = []byte("PROXY ")
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Errors of a connection whose PROXY header is missing or malformed. Timeouts and
// read errors are wrapped around the cause (errors.Is(err, os.ErrDeadlineExceeded)).
var (
	errProxyNoHeader   = errors.New("gateway: PROXY protocol: the connection does not start with a PROXY header")
	errProxyV1TooLong  = errors.New("gateway: PROXY protocol: v1 header without CRLF within 107 bytes")
	errProxyV1Bad      = errors.New("gateway: PROXY protocol: malformed v1 header")
	errProxyV2Version  = errors.New("gateway: PROXY protocol: v2 signature with a version other than 2")
	errProxyV2Command  = errors.New("gateway: PROXY protocol: v2 command neither LOCAL nor PROXY")
	errProxyV2TooLong  = errors.New("gateway: PROXY protocol: v2 header longer than 4096 bytes")
	errProxyV2Address  = errors.New("gateway: PROXY protocol: v2 address block shorter than its family needs")
	errProxyTruncated  = errors.New("gateway: PROXY protocol: the connection ended within the header")
	errProxyNoDeadline = errors.New("gateway: PROXY protocol: the connection takes no read deadline")
)

// proxyHeader is what a header says. src and dst are nil when the connection's own
// addresses stand: a v2 LOCAL command (the proxy's own health check), v1 UNKNOWN, or a
// family other than TCP over IPv4 or IPv6.
type proxyHeader struct {
	src, dst *net.TCPAddr
}

// parseProxyHeader reads the PROXY header at the start of b. It returns the header and
// its size once b holds all of it; need > len(b) (and size 0) when b is a valid start
// that needs at least need bytes; or an error as soon as b cannot start a valid
// header. It is safe for concurrent use and keeps no reference to b.
func parseProxyHeader(b []byte) (h proxyHeader, size, need int, err error) {
	switch {
	case len(b) < len(proxyV1Sig) && bytes.HasPrefix(proxyV1Sig, b) && bytes.HasPrefix(proxyV2Sig, b):
		return h, 0, len(b) + 1, nil // nothing yet (the two signatures share no first byte)
	case bytes.HasPrefix(b, proxyV1Sig) || len(b) < len(proxyV1Sig) && bytes.HasPrefix(proxyV1Sig, b):
		return parseProxyV1(b)
	case bytes.HasPrefix(b, proxyV2Sig) || len(b) < len(proxyV2Sig) && bytes.HasPrefix(proxyV2Sig, b):
		return parseProxyV2(b)
	}
	return h, 0, 0, errProxyNoHeader
}

// parseProxyV1 reads "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" or
// "PROXY UNKNOWN[ <anything>]\r\n". Single spaces, ports in decimal without leading
// zeros, addresses of the named family without zones.
func parseProxyV1(b []byte) (h proxyHeader, size, need int, err error) {
	end := bytes.IndexByte(b[:min(len(b), proxyV1Max)], '\n')
	if end < 0 {
		if len(b) >= proxyV1Max {
			return h, 0, 0, errProxyV1TooLong
		}
		return h, 0, len(b) + 1, nil
	}
	if end < len(proxyV1Sig) || b[end-1] != '\r' {
		return h, 0, 0, errProxyV1Bad // a bare LF, or one within the signature
	}
	line := string(b[len(proxyV1Sig) : end-1])
	size = end + 1
	if line == "UNKNOWN" || strings.HasPrefix(line, "UNKNOWN ") {
		return h, size, 0, nil // the rest of the line is to be ignored
	}
	f := strings.Split(line, " ")
	if len(f) != 5 || f[0] != "TCP4" && f[0] != "TCP6" {
		return h, 0, 0, errProxyV1Bad
	}
	v6 := f[0] == "TCP6"
	src, ok1 := parseV1Addr(f[1], v6)
	dst, ok2 := parseV1Addr(f[2], v6)
	sport, ok3 := parseV1Port(f[3])
	dport, ok4 := parseV1Port(f[4])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return h, 0, 0, errProxyV1Bad
	}
	h.src = &net.TCPAddr{IP: src.AsSlice(), Port: sport}
	h.dst = &net.TCPAddr{IP: dst.AsSlice(), Port: dport}
	return h, size, 0, nil
}

func parseV1Addr(s string, v6 bool) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is6() != v6 {
		return netip.Addr{}, false
	}
	return a, true
}

func parseV1Port(s string) (int, bool) {
	if len(s) == 0 || len(s) > 5 || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n <= 65535
}

// parseProxyV2 reads the binary header: the signature, version 2 with LOCAL or PROXY,
// a family and a length, then the addresses of TCP over IPv4 (12 bytes) or IPv6 (36
// bytes) and TLVs, which are skipped.
func parseProxyV2(b []byte) (h proxyHeader, size, need int, err error) {
	if len(b) < proxyV2Fixed {
		return h, 0, proxyV2Fixed, nil
	}
	if b[12]>>4 != 2 {
		return h, 0, 0, errProxyV2Version
	}
	cmd := b[12] & 0x0f
	if cmd > 1 {
		return h, 0, 0, errProxyV2Command
	}
	size = proxyV2Fixed + int(binary.BigEndian.Uint16(b[14:16]))
	if size > proxyV2Max {
		return h, 0, 0, errProxyV2TooLong
	}
	if len(b) < size {
		return h, 0, size, nil
	}
	if cmd == 0 {
		return h, size, 0, nil // LOCAL: the proxy speaking for itself
	}
	a := b[proxyV2Fixed:size]
	switch b[13] {
	case 0x11: // AF_INET, STREAM
		if len(a) < 12 {
			return h, 0, 0, errProxyV2Address
		}
		h.src = &net.TCPAddr{IP: bytes.Clone(a[0:4]), Port: int(binary.BigEndian.Uint16(a[8:10]))}
		h.dst = &net.TCPAddr{IP: bytes.Clone(a[4:8]), Port: int(binary.BigEndian.Uint16(a[10:12]))}
	case 0x21: // AF_INET6, STREAM
		if len(a) < 36 {
			return h, 0, 0, errProxyV2Address
		}
		h.src = &net.TCPAddr{IP: bytes.Clone(a[0:16]), Port: int(binary.BigEndian.Uint16(a[32:34]))}
		h.dst = &net.TCPAddr{IP: bytes.Clone(a[16:32]), Port: int(binary.BigEndian.Uint16(a[34:36]))}
	}
	// UNSPEC, AF_UNIX, datagrams and unknown families: the connection's own addresses.
	return h, size, 0, nil
}

// readProxyHeader reads the PROXY header (v1 or v2) at the start of c within timeout
// and returns c wrapped so that RemoteAddr is the client it names and LocalAddr the
// address the client connected to (c's own for LOCAL, UNKNOWN and families other than
// TCP4/TCP6), and so that the bytes read past the header (the start of the first
// request) come first from Read. It reads into a buffer of its own, as much as the
// kernel has, never a byte at a time: one read for the usual header sent with the
// request, a few for one sent in pieces. The read deadline is set for the header and
// cleared after it. On an error (no header, a malformed one, the timeout) c is left
// open for the caller to close. It allocates, once per connection.
func readProxyHeader(c net.Conn, timeout time.Duration) (net.Conn, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, fmt.Errorf("%w: %w", errProxyNoDeadline, err)
	}
	buf := make([]byte, proxyFirstRead)
	n := 0
	for {
		k, rerr := c.Read(buf[n:])
		n += k
		h, size, need, err := parseProxyHeader(buf[:n])
		switch {
		case err != nil:
			return nil, err
		case size > 0:
			if err := c.SetReadDeadline(time.Time{}); err != nil {
				return nil, fmt.Errorf("%w: %w", errProxyNoDeadline, err)
			}
			pc := &proxyConn{Conn: c, src: h.src, dst: h.dst}
			if size < n {
				pc.rest = buf[size:n]
			}
			return pc, nil
		case rerr == io.EOF:
			return nil, fmt.Errorf("%w after %d bytes", errProxyTruncated, n)
		case rerr != nil:
			var ne net.Error
			if errors.As(rerr, &ne) && ne.Timeout() {
				return nil, fmt.Errorf("gateway: PROXY protocol: no complete header within %s (%d bytes): %w", timeout, n, rerr)
			}
			return nil, fmt.Errorf("gateway: PROXY protocol: reading the header: %w", rerr)
		}
		if need > len(buf) { // a v2 header with long TLVs; need is at most proxyV2Max
			buf = append(buf, make([]byte, need-len(buf))...)
		}
	}
}

// closeWriter is a connection whose sending side can be shut on its own (*net.TCPConn,
// *tls.Conn): a tunnel relays the end of one direction that way.
type closeWriter interface {
	CloseWrite() error
}

var _ closeWriter = (*proxyConn)(nil)

// proxyConn is a client connection whose addresses came in a PROXY header. It is used
// by one goroutine at a time, as any net.Conn of the server.
type proxyConn struct {
	net.Conn
	src, dst *net.TCPAddr // nil: the connection's own
	rest     []byte       // read past the header, returned first
}

// Read returns what was read past the header, then reads the connection.
func (c *proxyConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		if len(c.rest) == 0 {
			c.rest = nil // let the header buffer go
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// RemoteAddr is the client the header names, a *net.TCPAddr (remoteIP relies on it).
func (c *proxyConn) RemoteAddr() net.Addr {
	if c.src != nil {
		return c.src
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr is the address the client connected to, as the header says.
func (c *proxyConn) LocalAddr() net.Addr {
	if c.dst != nil {
		return c.dst
	}
	return c.Conn.LocalAddr()
}

// CloseWrite shuts the sending side of the connection underneath, when it can.
func (c *proxyConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return &net.OpError{Op: "close", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errors.ErrUnsupported}
}

// proxyListener is a listener whose connections start with a PROXY header. Its accept
// loop takes connections from the listener underneath and reads each header in a
// goroutine of its own, bounded by the timeout, so that a client that sends its header
// slowly, or not at all, never holds up Accept; Accept hands out the connections whose
// header is read, in the order they are ready.
type proxyListener struct {
	net.Listener
	timeout time.Duration
	onErr   func(remote net.Addr, err error)

	ready    chan net.Conn // connections with their header read
	done     chan struct{} // closed by Close
	loopDone chan struct{} // closed when the accept loop has ended; loopErr says why
	loopErr  error
	once     sync.Once
	wg       sync.WaitGroup // the accept loop and the header readers

	mu      sync.Mutex
	closed  bool
	pending map[net.Conn]struct{} // connections whose header is being read
	waiting atomic.Int32          // connections with their header read, waiting for Accept
}

// newProxyListener wraps ln so that every connection must start with a PROXY header,
// read within timeout. A connection without a valid header is closed, and onErr (if
// not nil) is called with its peer address and the reason; onErr is called from the
// goroutine that read the header, must not block, and is not called for the
// connections Close cuts short. Close stops the accept loop, closes ln and the
// connections whose header is still coming or not yet accepted, and returns once
// every goroutine of the listener has ended. Addr is ln's.
func newProxyListener(ln net.Listener, timeout time.Duration, onErr func(remote net.Addr, err error)) net.Listener {
	l := &proxyListener{
		Listener: ln,
		timeout:  timeout,
		onErr:    onErr,
		ready:    make(chan net.Conn),
		done:     make(chan struct{}),
		loopDone: make(chan struct{}),
		pending:  map[net.Conn]struct{}{},
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// Accept returns the next connection whose header is read. After Close, or once the
// listener underneath failed for good, it returns that error (net.ErrClosed after
// Close).
func (l *proxyListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
	case <-l.loopDone:
		return nil, l.loopErr
	}
}

// Close stops accepting and closes every connection not yet handed out.
func (l *proxyListener) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		for c := range l.pending {
			c.Close()
		}
		l.mu.Unlock()
		close(l.done)
		err = l.Listener.Close()
		l.wg.Wait()
	})
	return err
}

func (l *proxyListener) acceptLoop() {
	defer l.wg.Done()
	defer close(l.loopDone)
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() { // out of descriptors: wait, as net/http does
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
					continue
				case <-l.done:
					t.Stop()
				}
			}
			select {
			case <-l.done:
				l.loopErr = &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
			default:
				l.loopErr = err
			}
			return
		}
		backoff = 0
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			continue // the next Accept fails: the listener underneath is closed
		}
		l.pending[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.readHeader(c)
	}
}

// readHeader reads c's header and hands c to Accept, or closes it.
func (l *proxyListener) readHeader(c net.Conn) {
	defer l.wg.Done()
	pc, err := readProxyHeader(c, l.timeout)
	l.mu.Lock()
	delete(l.pending, c)
	closed := l.closed
	l.mu.Unlock()
	if err != nil || closed {
		c.Close()
		if err != nil && !closed && l.onErr != nil {
			l.onErr(c.RemoteAddr(), err)
		}
		return
	}
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	select {
	case l.ready <- pc:
	case <-l.done:
		c.Close()
	}
}
