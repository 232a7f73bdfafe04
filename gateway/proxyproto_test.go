package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// proxyV2 builds a v2 header: version and command byte, family byte, then the
// address block and TLVs as given.
func proxyV2(verCmd, fam byte, block ...[]byte) []byte {
	body := bytes.Join(block, nil)
	b := append([]byte{}, proxyV2Sig...)
	b = append(b, verCmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// v2Inet is the address block of TCP over IPv4.
func v2Inet(src, dst string, sport, dport uint16) []byte {
	b := append(net.ParseIP(src).To4(), net.ParseIP(dst).To4()...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

// v2Inet6 is the address block of TCP over IPv6.
func v2Inet6(src, dst string, sport, dport uint16) []byte {
	b := append(net.ParseIP(src).To16(), net.ParseIP(dst).To16()...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

// tlv is one type-length-value entry of a v2 header.
func tlv(typ byte, value []byte) []byte {
	b := binary.BigEndian.AppendUint16([]byte{typ}, uint16(len(value)))
	return append(b, value...)
}

const proxyTestRequest = "GET /x HTTP/1.1\r\nHost: app\r\n\r\n"

// tcpPair is a real loopback TCP connection: the client's end and the server's.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln := listenLoopback(t)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.DialTimeout("tcp", ln.Addr().String(), scaled(5*time.Second))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestReadProxyHeader(t *testing.T) {
	cases := []struct {
		name     string
		header   []byte
		src, dst string // "" keeps the connection's own
	}{
		{"v1 tcp4", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"), "192.0.2.7:56324", "198.51.100.1:443"},
		{"v1 tcp4 port 0 and max", []byte("PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n"), "255.255.255.255:65535", "0.0.0.0:0"},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n"), "[2001:db8::7]:56324", "[2001:db8::1]:443"},
		{"v1 tcp6 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), "", ""},
		{"v1 unknown with addresses", []byte("PROXY UNKNOWN ffff:f::1 ffff::2 1 2\r\n"), "", ""},
		{"v2 proxy tcp4", proxyV2(0x21, 0x11, v2Inet("192.0.2.7", "198.51.100.1", 56324, 443)), "192.0.2.7:56324", "198.51.100.1:443"},
		{"v2 proxy tcp6", proxyV2(0x21, 0x21, v2Inet6("2001:db8::7", "2001:db8::1", 56324, 443)), "[2001:db8::7]:56324", "[2001:db8::1]:443"},
		{"v2 proxy tcp4 with TLVs", proxyV2(0x21, 0x11, v2Inet("192.0.2.7", "198.51.100.1", 1, 2),
			tlv(0x02, []byte("app.example.com")), tlv(0xEA, []byte("\x01vpce-0123456789abcdef")), tlv(0x04, nil)), "192.0.2.7:1", "198.51.100.1:2"},
		{"v2 proxy tcp6 with TLVs", proxyV2(0x21, 0x21, v2Inet6("::1", "::2", 3, 4), tlv(0x01, []byte("h2"))), "[::1]:3", "[::2]:4"},
		{"v2 long TLVs", proxyV2(0x21, 0x11, v2Inet("192.0.2.7", "198.51.100.1", 1, 2), tlv(0xE0, make([]byte, 3000))), "192.0.2.7:1", "198.51.100.1:2"},
		{"v2 local", proxyV2(0x20, 0x00), "", ""},
		{"v2 local with addresses", proxyV2(0x20, 0x11, v2Inet("192.0.2.7", "198.51.100.1", 1, 2)), "", ""},
		{"v2 unspec", proxyV2(0x21, 0x00), "", ""},
		{"v2 unix", proxyV2(0x21, 0x31, make([]byte, 216)), "", ""},
		{"v2 tcp4 over datagrams", proxyV2(0x21, 0x12, v2Inet("192.0.2.7", "198.51.100.1", 1, 2)), "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			// The header and the request in one write: the bytes past the header are
			// read with it and must come back through Read.
			if _, err := client.Write(append(append([]byte{}, tc.header...), proxyTestRequest...)); err != nil {
				t.Fatal(err)
			}
			pc, err := readProxyHeader(server, scaled(5*time.Second))
			if err != nil {
				t.Fatalf("readProxyHeader(%q) = %v", tc.header, err)
			}
			wantSrc, wantDst := tc.src, tc.dst
			if wantSrc == "" {
				wantSrc, wantDst = server.RemoteAddr().String(), server.LocalAddr().String()
			}
			if _, ok := pc.RemoteAddr().(*net.TCPAddr); !ok {
				t.Errorf("RemoteAddr() is a %T, want *net.TCPAddr", pc.RemoteAddr())
			}
			if got := pc.RemoteAddr().String(); got != wantSrc {
				t.Errorf("RemoteAddr() = %s, want %s", got, wantSrc)
			}
			if got := pc.LocalAddr().String(); got != wantDst {
				t.Errorf("LocalAddr() = %s, want %s", got, wantDst)
			}
			got := make([]byte, len(proxyTestRequest))
			pc.SetReadDeadline(time.Now().Add(scaled(5 * time.Second)))
			if _, err := io.ReadFull(pc, got); err != nil || string(got) != proxyTestRequest {
				t.Errorf("read after the header = %q, %v; want %q", got, err, proxyTestRequest)
			}
		})
	}
}

func TestReadProxyHeaderMalformed(t *testing.T) {
	cases := []struct {
		name  string
		input []byte
		want  error
	}{
		{"plain HTTP", []byte(proxyTestRequest), errProxyNoHeader},
		{"lower case", []byte("proxy TCP4 192.0.2.7 198.51.100.1 1 2\r\n"), errProxyNoHeader},
		{"bad v2 signature", []byte("\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c"), errProxyNoHeader},
		{"v1 too long", []byte("PROXY UNKNOWN " + strings.Repeat("x", 100) + "\r\n"), errProxyV1TooLong},
		{"v1 no CRLF", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1 2" + strings.Repeat(" ", 80)), errProxyV1TooLong},
		{"v1 bare LF", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n"), errProxyV1Bad},
		{"v1 no protocol", []byte("PROXY \r\n"), errProxyV1Bad},
		{"v1 bad protocol", []byte("PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n"), errProxyV1Bad},
		{"v1 missing port", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n"), errProxyV1Bad},
		{"v1 extra field", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n"), errProxyV1Bad},
		{"v1 double space", []byte("PROXY TCP4  192.0.2.7 198.51.100.1 1 2\r\n"), errProxyV1Bad},
		{"v1 tcp4 with ipv6", []byte("PROXY TCP4 ::1 ::2 1 2\r\n"), errProxyV1Bad},
		{"v1 tcp6 with ipv4", []byte("PROXY TCP6 192.0.2.7 198.51.100.1 1 2\r\n"), errProxyV1Bad},
		{"v1 bad address", []byte("PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n"), errProxyV1Bad},
		{"v1 leading zero address", []byte("PROXY TCP4 192.0.2.07 198.51.100.1 1 2\r\n"), errProxyV1Bad},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 ::2 1 2\r\n"), errProxyV1Bad},
		{"v1 port too large", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n"), errProxyV1Bad},
		{"v1 port leading zero", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n"), errProxyV1Bad},
		{"v1 port sign", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 +1 2\r\n"), errProxyV1Bad},
		{"v1 empty port", []byte("PROXY TCP4 192.0.2.7 198.51.100.1  2\r\n"), errProxyV1Bad},
		{"v2 version 1", proxyV2(0x11, 0x11, v2Inet("192.0.2.7", "198.51.100.1", 1, 2)), errProxyV2Version},
		{"v2 version 3", proxyV2(0x31, 0x11, v2Inet("192.0.2.7", "198.51.100.1", 1, 2)), errProxyV2Version},
		{"v2 command 2", proxyV2(0x22, 0x11, v2Inet("192.0.2.7", "198.51.100.1", 1, 2)), errProxyV2Command},
		{"v2 length past the cap", proxyV2(0x21, 0x11, v2Inet("192.0.2.7", "198.51.100.1", 1, 2), make([]byte, proxyV2Max)), errProxyV2TooLong},
		{"v2 length field past the cap", append(append([]byte{}, proxyV2Sig...), 0x21, 0x11, 0xff, 0xff), errProxyV2TooLong},
		{"v2 tcp4 block short", proxyV2(0x21, 0x11, make([]byte, 11)), errProxyV2Address},
		{"v2 tcp6 block short", proxyV2(0x21, 0x21, v2Inet("192.0.2.7", "198.51.100.1", 1, 2)), errProxyV2Address},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			// The client stays open and silent: every one of these is refused on what it
			// sent, without waiting for the timeout.
			if _, err := client.Write(tc.input); err != nil {
				t.Fatal(err)
			}
			pc, err := readProxyHeader(server, scaled(5*time.Second))
			if !errors.Is(err, tc.want) {
				t.Fatalf("readProxyHeader(%q) = %v, %v; want %v", tc.input, pc, err, tc.want)
			}
		})
	}
}

func TestReadProxyHeaderTruncated(t *testing.T) {
	for _, partial := range [][]byte{
		[]byte("PROXY TCP4 192.0.2.7"),
		[]byte("PRO"),
		proxyV2Sig[:5],
		proxyV2(0x21, 0x11, v2Inet("192.0.2.7", "198.51.100.1", 1, 2))[:20],
	} {
		t.Run("silent "+strconv.Quote(string(partial)), func(t *testing.T) {
			client, server := tcpPair(t)
			client.Write(partial)
			_, err := readProxyHeader(server, 50*time.Millisecond)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("readProxyHeader(%q, then nothing) = %v, want a timeout", partial, err)
			}
		})
		t.Run("closed "+strconv.Quote(string(partial)), func(t *testing.T) {
			client, server := tcpPair(t)
			client.Write(partial)
			client.(*net.TCPConn).CloseWrite()
			_, err := readProxyHeader(server, scaled(5*time.Second))
			if !errors.Is(err, errProxyTruncated) {
				t.Fatalf("readProxyHeader(%q, then end of stream) = %v, want %v", partial, err, errProxyTruncated)
			}
		})
	}
}

func TestReadProxyHeaderInPieces(t *testing.T) {
	client, server := tcpPair(t)
	header := proxyV2(0x21, 0x11, v2Inet("192.0.2.7", "198.51.100.1", 1, 2), tlv(0xE0, make([]byte, 1000)))
	go func() {
		for _, piece := range [][]byte{header[:3], header[3:16], header[16:600], append(header[600:], proxyTestRequest...)} {
			client.Write(piece)
		}
	}()
	pc, err := readProxyHeader(server, scaled(5*time.Second))
	if err != nil {
		t.Fatalf("readProxyHeader(header in pieces) = %v", err)
	}
	if got := pc.RemoteAddr().String(); got != "192.0.2.7:1" {
		t.Errorf("RemoteAddr() = %s, want 192.0.2.7:1", got)
	}
	got := make([]byte, len(proxyTestRequest))
	if _, err := io.ReadFull(pc, got); err != nil || string(got) != proxyTestRequest {
		t.Errorf("read after the header = %q, %v; want %q", got, err, proxyTestRequest)
	}
}

// headerConn is a net.Conn over bytes that returns at most chunk bytes a read, counts its
// reads and records its read deadlines; then end of stream.
type headerConn struct {
	net.Conn  // nil: the methods not written here are not used
	data      []byte
	chunk     int
	reads     int
	deadlines []time.Time
}

func (c *headerConn) Read(p []byte) (int, error) {
	c.reads++
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *headerConn) SetReadDeadline(t time.Time) error {
	c.deadlines = append(c.deadlines, t)
	return nil
}

func (c *headerConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1} }
func (c *headerConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 2} }

func TestReadProxyHeaderReadsAndDeadline(t *testing.T) {
	in := append([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"), proxyTestRequest...)
	c := &headerConn{data: in, chunk: 1 << 20}
	pc, err := readProxyHeader(c, time.Second)
	if err != nil {
		t.Fatalf("readProxyHeader = %v", err)
	}
	if c.reads != 1 {
		t.Errorf("readProxyHeader made %d reads for a header sent with its request, want 1", c.reads)
	}
	if len(c.deadlines) != 2 || c.deadlines[0].IsZero() || !c.deadlines[1].IsZero() {
		t.Errorf("read deadlines %v, want one set, then cleared", c.deadlines)
	}
	rest, err := io.ReadAll(pc)
	if err != nil || string(rest) != proxyTestRequest {
		t.Errorf("read after the header = %q, %v; want %q", rest, err, proxyTestRequest)
	}
}

func TestProxyConnCloseWrite(t *testing.T) {
	client, server := tcpPair(t)
	client.Write([]byte("PROXY UNKNOWN\r\n"))
	pc, err := readProxyHeader(server, scaled(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	cw, ok := pc.(closeWriter)
	if !ok {
		t.Fatalf("%T has no CloseWrite", pc)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite() = %v", err)
	}
	client.SetReadDeadline(time.Now().Add(scaled(5 * time.Second)))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("client read after CloseWrite = %d, %v; want end of stream", n, err)
	}
	// The other direction still works.
	client.Write([]byte("x"))
	b := make([]byte, 1)
	if _, err := io.ReadFull(pc, b); err != nil || b[0] != 'x' {
		t.Errorf("server read after CloseWrite = %q, %v; want x", b, err)
	}
	if err := (&proxyConn{Conn: &headerConn{}}).CloseWrite(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("CloseWrite on a connection without one = %v, want ErrUnsupported", err)
	}
}

// proxyErrs collects onErr calls.
type proxyErrs struct {
	mu   sync.Mutex
	errs []error
	ch   chan error
}

func newProxyErrs() *proxyErrs { return &proxyErrs{ch: make(chan error, 16)} }

func (p *proxyErrs) onErr(_ net.Addr, err error) {
	p.mu.Lock()
	p.errs = append(p.errs, err)
	p.mu.Unlock()
	p.ch <- err
}

func (p *proxyErrs) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.ch:
		return err
	case <-time.After(scaled(5 * time.Second)):
		t.Fatal("timed out waiting for onErr")
		return nil
	}
}

// acceptOne calls Accept with a deadline.
func acceptOne(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Accept() = %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(scaled(5 * time.Second)):
		t.Fatal("Accept() blocked")
		return nil
	}
}

func dialProxy(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, scaled(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectClosed checks that the gateway closed c without a word.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(scaled(5 * time.Second)))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read on a refused connection = %d, %v; want it closed", n, err)
	}
}

func TestProxyListener(t *testing.T) {
	before := runtime.NumGoroutine()
	errs := newProxyErrs()
	ln := newProxyListener(listenLoopback(t), 300*time.Millisecond, errs.onErr)
	addr := ln.Addr().String()

	slow := dialProxy(t, addr) // connects and says nothing
	bad := dialProxy(t, addr)
	bad.Write([]byte(proxyTestRequest))
	good := dialProxy(t, addr)
	good.Write(append([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"), proxyTestRequest...))

	// Accept is not held up by the silent client, nor by the one without a header.
	c := acceptOne(t, ln)
	if got := c.RemoteAddr().String(); got != "192.0.2.7:56324" {
		t.Errorf("accepted RemoteAddr() = %s, want 192.0.2.7:56324", got)
	}
	got := make([]byte, len(proxyTestRequest))
	c.SetReadDeadline(time.Now().Add(scaled(5 * time.Second)))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != proxyTestRequest {
		t.Errorf("read on the accepted connection = %q, %v; want %q", got, err, proxyTestRequest)
	}

	var noHeader, timedOut bool
	for range 2 {
		switch err := errs.wait(t); {
		case errors.Is(err, errProxyNoHeader):
			noHeader = true
		case errors.Is(err, os.ErrDeadlineExceeded):
			timedOut = true
		default:
			t.Errorf("onErr(%v), want no header or a timeout", err)
		}
	}
	if !noHeader || !timedOut {
		t.Errorf("onErr calls: no header %v, timeout %v; want both", noHeader, timedOut)
	}
	expectClosed(t, bad)
	expectClosed(t, slow)

	// Close cuts the connections still in their header and ends every goroutine.
	l := ln.(*proxyListener)
	inHeader := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.pending)
	}
	pending := dialProxy(t, addr)
	pending.Write([]byte("PROXY TCP4 "))
	waitFor(t, "a connection within its header", func() bool { return inHeader() == 1 })
	ready := dialProxy(t, addr) // its header read, never accepted
	ready.Write([]byte("PROXY UNKNOWN\r\n"))
	// (Not the goroutine count: other tests' idle goroutines come and go.)
	waitFor(t, "a connection ready for Accept", func() bool { return inHeader() == 1 && l.waiting.Load() == 1 })
	if err := ln.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	expectClosed(t, pending)
	expectClosed(t, ready)
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept() after Close = %v, want net.ErrClosed", err)
	}
	if err := ln.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
	waitFor(t, "the listener's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	select {
	case err := <-errs.ch:
		t.Errorf("onErr(%v) for a connection Close cut short", err)
	default:
	}
}

func TestProxyListenerInnerClosed(t *testing.T) {
	inner := listenLoopback(t)
	ln := newProxyListener(inner, time.Second, nil)
	inner.Close() // someone else closes the listener underneath
	if _, err := ln.Accept(); err == nil {
		t.Fatal("Accept() = nil error after the listener underneath closed")
	}
	ln.Close()
}

// FuzzProxyHeader feeds arbitrary first bytes of a connection, read in chunks of
// arbitrary size, to readProxyHeader. Properties: it never panics; it accepts exactly
// what parseProxyHeader says is a complete header; an accepted header consumed exactly
// its own bytes, and the rest comes back through Read; and a v1 TCP header round-trips
// its addresses (for TCP4, its text).
func FuzzProxyHeader(f *testing.F) {
	seeds := [][]byte{
		[]byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n" + proxyTestRequest),
		[]byte("PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\nGET"),
		[]byte("PROXY UNKNOWN\r\n"),
		[]byte("PROXY TCP6 ::ffff:192.0.2.7 ::1 0 65535\r\n"),
		[]byte("PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n"),
		[]byte("PROXY TCP4 1.2.3.4"),
		[]byte(proxyTestRequest),
		proxyV2(0x21, 0x11, v2Inet("192.0.2.7", "198.51.100.1", 56324, 443), []byte(proxyTestRequest)),
		proxyV2(0x21, 0x21, v2Inet6("2001:db8::7", "2001:db8::1", 1, 2), tlv(0x02, []byte("app"))),
		proxyV2(0x20, 0x00),
		proxyV2(0x21, 0x31, make([]byte, 216)),
		proxyV2(0x21, 0x11, make([]byte, 11)),
		append(append([]byte{}, proxyV2Sig...), 0x21, 0x11, 0xff, 0xff),
	}
	for i, s := range seeds {
		f.Add(s, uint8(i*37))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		if len(data) > 2*proxyV2Max {
			t.Skip("larger than any header and its first request need")
		}
		c := &headerConn{data: bytes.Clone(data), chunk: 1 + int(chunk)}
		pc, err := readProxyHeader(c, time.Second)
		h, size, _, perr := parseProxyHeader(data)
		if err != nil {
			if perr == nil && size > 0 {
				t.Fatalf("readProxyHeader(%q, chunks of %d) = %v, but the input holds a complete header of %d bytes", data, c.chunk, err, size)
			}
			return
		}
		if perr != nil || size == 0 {
			t.Fatalf("readProxyHeader(%q) accepted what parseProxyHeader refuses: %v, size %d", data, perr, size)
		}
		rest, rerr := io.ReadAll(pc)
		if rerr != nil || !bytes.Equal(rest, data[size:]) {
			t.Fatalf("readProxyHeader(%q): read after the %d-byte header = %q, %v; want %q", data, size, rest, rerr, data[size:])
		}
		if !bytes.HasPrefix(data, []byte("PROXY TCP")) {
			return
		}
		if h.src == nil || h.dst == nil {
			t.Fatalf("parseProxyHeader(%q): a TCP header without addresses", data)
		}
		proto := "TCP4"
		if bytes.HasPrefix(data, []byte("PROXY TCP6")) {
			proto = "TCP6"
		}
		// netip, not net.IP, writes the addresses: net.IP prints ::ffff:192.0.2.7 as IPv4.
		srcIP, _ := netip.AddrFromSlice(h.src.IP)
		dstIP, _ := netip.AddrFromSlice(h.dst.IP)
		line := "PROXY " + proto + " " + srcIP.String() + " " + dstIP.String() + " " +
			strconv.Itoa(h.src.Port) + " " + strconv.Itoa(h.dst.Port) + "\r\n"
		h2, size2, _, err := parseProxyHeader([]byte(line))
		if err != nil || size2 != len(line) || h2.src.String() != h.src.String() || h2.dst.String() != h.dst.String() {
			t.Fatalf("v1 %q parsed as %v %v, written back as %q, parsed again as %v %v (%v)", data[:size], h.src, h.dst, line, h2.src, h2.dst, err)
		}
		if proto == "TCP4" && line != string(data[:size]) {
			t.Fatalf("v1 %q written back as %q", data[:size], line)
		}
	})
}
