//go:build linux

package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/sessiongate/sessiongate/health"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// The epoll data path (listeners[].dataplane: epoll): one event loop per GOMAXPROCS,
// each with its own epoll instance, that reads and writes its client connections and
// its member connections itself, with non-blocking system calls on raw descriptors.
//
// Why: on the pinned bench most of a proxied request's CPU is system calls and Go's
// poller around them. fasthttp on Go's poller reads until EAGAIN on both sides (a read
// that returns nothing, on every request) and parks and wakes a goroutine per read; a
// loop here is edge-triggered and takes a read shorter than its buffer as "drained",
// so a keep-alive request costs four system calls (client read, member write, member
// read, client write) plus a share of one epoll_wait, as nginx's does.
//
// What it serves: keep-alive HTTP/1.1 requests in origin-form without a body or with
// one of at most the retry buffer (it is read whole first, so a retry can send it
// again), to a group whose members are plain HTTP on IP addresses. Routing, checks,
// retries, learning, cookies, health and logs are the same code as fasthttp's path
// (begin, again, answer, failed, fail). Anything else hands the connection over to
// fasthttp's path (handoff) at the start of that request, with the bytes read so far:
// an upgrade, a chunked or larger body, Expect, HTTP/1.0, an absolute-form target, a
// head that does not end in CRLFCRLF within server.max_header_bytes or that fasthttp
// does not parse, a group with TLS or host-name members. The bad-input answers are then
// fasthttp's path's own, byte for byte, and the connection stays there.
//
// A request is served one at a time per connection (pipelined ones wait in the
// buffer); the member's answer is relayed as it comes, its head rebuilt by the shared
// answer step and its body passed on byte for byte, framed by bodyScan. A client that
// does not read stops the reading of its member (no buffering without bound).

// loops are a Server's event loops, started with its first epoll listener.
type loops struct {
	s      *Server
	mu     sync.Mutex // ls, closed: between Serve and Shutdown
	closed bool       // Shutdown began: no loop starts, no listener is added
	ls     []*evloop
	conns  atomic.Int64 // client connections open in all loops
	wg     sync.WaitGroup
	once   sync.Once
}

// evloop is one event loop; everything in it runs on its goroutine, except post.
type evloop struct {
	s     *Server
	all   *loops
	epfd  int
	wakeR int // a pipe: post writes a byte to wake the loop
	wakeW int

	objs   []loopObj // by file descriptor
	gen    uint32    // generation of registrations, so that a stale event of a reused fd is ignored
	events [128]syscall.EpollEvent
	lns    []*loopListener

	pools   [][]*mconn // idle member connections, by MemberState.Num
	waiting [][]*cconn // requests waiting for a member connection (client.max_conns), by Num

	rd   bytes.Reader
	br   *bufio.Reader // fasthttp's head parsers read from it, over rd
	sink appendWriter
	bw   *bufio.Writer // Request.Write and Response.Write write through it, into sink

	mu   sync.Mutex
	mail []func()

	now       int64 // the Server's coarse clock at this wake
	lastSweep int64
	clients   int // client connections open in this loop
	stopping  bool
	exit      bool
	stopped   chan struct{}
}

// loopObj is what a registered descriptor belongs to.
type loopObj interface {
	event(ev uint32)
	generation() uint32
}

// loopListener is a listening socket of an epoll listener, polled by every loop.
type loopListener struct {
	l    *evloop
	fd   int
	gen  uint32
	info *listenerInfo
}

func (ll *loopListener) generation() uint32 { return ll.gen }

// appendWriter appends what it is written to *dst.
type appendWriter struct{ dst *[]byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	*w.dst = append(*w.dst, p...)
	return len(p), nil
}

const (
	epollIn        = syscall.EPOLLIN | syscall.EPOLLRDHUP
	epollET        = uint32(1) << 31 // EPOLLET
	epollExclusive = uint32(1) << 28 // EPOLLEXCLUSIVE
	epollAll       = epollIn | syscall.EPOLLOUT | epollET
	epollBad       = syscall.EPOLLHUP | syscall.EPOLLERR
	sweepEvery     = int64(100 * time.Millisecond)
	// loopWait is epoll_wait's timeout, in milliseconds: the sweep of deadlines runs
	// at least this often.
	loopWait = 100
	// inFirst is a client or member connection's first buffer; it grows as a head and
	// its body need, up to max_header_bytes plus the retry buffer.
	inFirst = 4096
)

var crlfcrlf = []byte("\r\n\r\n")

// errMemberHeadLarge is a member answer head that does not fit the read buffer
// (kindHeaderTooLarge, turned into errMemberHeaderTooLarge by failed).
var errMemberHeadLarge = errors.New("gateway: member response head larger than the read buffer")

// errMember101 is a 101 answer to a request that asked for no upgrade.
var errMember101 = errors.New("gateway: member answered 101 Switching Protocols to a request without Upgrade")

// spareProc gives the Go scheduler one P more than there are loops, once per process.
// A loop waits in epoll_wait as a system call that keeps its P (the runtime takes it
// back only after up to 10ms, when other goroutines wait); with every P in a loop,
// fasthttp's path (hand-overs, tunnels), health checks and the admin server would
// wait that long, and nobody would poll Go's netpoller meanwhile. With the spare P they
// run as before; the loops are, in effect, threads of their own.
var spareProc sync.Once

// startLoops starts the event loops, once.
func (s *Server) startLoops() (*loops, error) {
	s.lp.mu.Lock()
	defer s.lp.mu.Unlock()
	if s.lp.closed {
		return nil, net.ErrClosed
	}
	var err error
	s.lp.once.Do(func() {
		s.lp.s = s
		n := max(1, runtime.GOMAXPROCS(0))
		spareProc.Do(func() { runtime.GOMAXPROCS(n + 1) })
		for range n {
			l, e := newLoop(s, &s.lp)
			if e != nil {
				err = e
				return
			}
			s.lp.ls = append(s.lp.ls, l)
		}
		for _, l := range s.lp.ls {
			s.lp.wg.Add(1)
			go func() {
				defer s.lp.wg.Done()
				l.run()
			}()
		}
	})
	if err == nil && len(s.lp.ls) == 0 {
		err = errors.New("gateway: the event loops did not start")
	}
	return &s.lp, err
}

func newLoop(s *Server, all *loops) (*evloop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("pipe2", err)
	}
	l := &evloop{s: s, all: all, epfd: epfd, wakeR: p[0], wakeW: p[1], stopped: make(chan struct{})}
	hb := max(s.snap.Load().cfg.Server.MaxHeaderBytes, 8192)
	l.br = bufio.NewReaderSize(&l.rd, hb+len(crlfcrlf))
	l.bw = bufio.NewWriterSize(&l.sink, 4096)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.wakeR)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, l.wakeR, &ev); err != nil {
		l.closeFDs()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return l, nil
}

func (l *evloop) closeFDs() {
	syscall.Close(l.wakeR)
	syscall.Close(l.wakeW)
	syscall.Close(l.epfd)
}

// addListener makes every loop accept on ln (a listening TCP socket of an epoll
// listener).
func (lp *loops) addListener(ln net.Listener, info *listenerInfo) error {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.closed {
		return net.ErrClosed
	}
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return errors.New("gateway: dataplane epoll needs a TCP listener")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return err
	}
	errc := make(chan error, len(lp.ls))
	for _, l := range lp.ls {
		l.post(func() {
			ll := &loopListener{l: l, fd: fd, info: info}
			errc <- l.register(fd, ll, &ll.gen, syscall.EPOLLIN|epollExclusive)
			l.lns = append(l.lns, ll)
		})
	}
	for _, l := range lp.ls {
		select {
		case e := <-errc:
			if e != nil && err == nil {
				err = e
			}
		case <-l.stopped:
			if err == nil {
				err = net.ErrClosed
			}
		}
	}
	return err
}

// open is the number of client connections the loops hold.
func (lp *loops) open() int64 {
	return lp.conns.Load()
}

// post runs fn on the loop's goroutine.
func (l *evloop) post(fn func()) {
	l.mu.Lock()
	l.mail = append(l.mail, fn)
	l.mu.Unlock()
	var b = [1]byte{1}
	syscall.Write(l.wakeW, b[:]) //nolint:errcheck // a full pipe is already a wake-up
}

func (l *evloop) register(fd int, o loopObj, gen *uint32, events uint32) error {
	l.gen++
	*gen = l.gen
	for fd >= len(l.objs) {
		l.objs = append(l.objs, nil)
	}
	l.objs[fd] = o
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(l.gen)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.objs[fd] = nil
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// forget drops fd from the loop; the caller closes it (a closed descriptor leaves
// epoll by itself, but one handed over is dup'ed first, and would stay).
func (l *evloop) forget(fd int) {
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, fd, nil) //nolint:errcheck // gone already if closed
	if fd < len(l.objs) {
		l.objs[fd] = nil
	}
}

func (l *evloop) run() {
	defer close(l.stopped)
	l.now = l.s.clock.coarse()
	l.lastSweep = l.now
	for !l.exit {
		n, err := syscall.EpollWait(l.epfd, l.events[:], loopWait)
		if err != nil && err != syscall.EINTR {
			l.s.log.Error().Err(err).Msg("epoll_wait failed: event loop stopped")
			return
		}
		l.now = l.s.clock.coarse()
		for i := 0; i < n; i++ {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.wakeR {
				l.readMail()
				continue
			}
			if fd >= len(l.objs) {
				continue
			}
			o := l.objs[fd]
			if o == nil || o.generation() != uint32(ev.Pad) {
				continue // closed, or the fd reused since this event was queued
			}
			o.event(ev.Events)
		}
		if l.now-l.lastSweep >= sweepEvery {
			l.lastSweep = l.now
			l.sweep()
		}
		if l.stopping && l.clients == 0 {
			l.exit = true
		}
	}
	l.closeAll()
	l.closeFDs()
}

func (l *evloop) readMail() {
	var b [64]byte
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(l.wakeR), uintptr(unsafePointer(b[:])), uintptr(len(b)))
		if e != 0 || int(n) < len(b) {
			break
		}
	}
	l.mu.Lock()
	mail := l.mail
	l.mail = nil
	l.mu.Unlock()
	for _, fn := range mail {
		fn()
	}
}

// event accepts the connections waiting on the listening socket.
func (ll *loopListener) event(uint32) {
	l := ll.l
	if l.stopping {
		return
	}
	for range 64 {
		nfd, sa, err := syscall.Accept4(ll.fd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			switch err {
			case syscall.EAGAIN, syscall.EINTR:
			case syscall.ECONNABORTED:
				continue
			default:
				l.s.log.Error().Err(err).Msg("accept failed")
			}
			return
		}
		l.accept(ll, nfd, sa)
	}
}

func (l *evloop) accept(ll *loopListener, fd int, sa syscall.Sockaddr) {
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1) //nolint:errcheck // as Go does
	raddr := tcpAddrOf(sa)
	ip := remoteIP(raddr)
	s := l.s
	if !s.perIP.add(ip) {
		s.stats.perIPRefused.Add(1)
		rawWrite(fd, resp429)
		syscall.Close(fd)
		return
	}
	if limit := s.snap.Load().cfg.Server.MaxConns; limit > 0 && l.all.conns.Load()+int64(s.srv.GetOpenConnectionsCount()) >= int64(limit) {
		rawWrite(fd, resp503Conns)
		s.perIP.remove(ip)
		syscall.Close(fd)
		return
	}
	c := newCconn(l, ll, fd, raddr, ip)
	if err := l.register(fd, c, &c.gen, epollAll); err != nil {
		s.log.Error().Err(err).Msg("event loop: cannot poll a client connection")
		c.cc.Close() //nolint:errcheck // gives back the per-client count
		syscall.Close(fd)
		return
	}
	l.clients++
	l.all.conns.Add(1)
	c.since = l.now
}

// resp503Conns is fasthttp's answer past server.max_conns (Server.Concurrency), so that
// both data paths refuse alike.
var resp503Conns = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 74\r\nConnection: close\r\n\r\n" +
	"The connection cannot be served because Server.Concurrency limit exceeded")

func tcpAddrOf(sa syscall.Sockaddr) *net.TCPAddr {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(append([]byte(nil), a.Addr[:]...)), Port: a.Port}
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(append([]byte(nil), a.Addr[:]...)), Port: a.Port}
	}
	return &net.TCPAddr{}
}

// rawWrite writes p once, best effort (refusals).
func rawWrite(fd int, p []byte) {
	sysSend(fd, p) //nolint:errcheck // best effort
}

// sysRecv and sysSend are recvfrom(2) and sendto(2) without an address: on a
// connected socket they are read(2) and write(2) without the file layer around them
// (fdget_pos, rw_verify_area, the security hook, sock_read_iter), which NGINX's
// recvfrom does not pay either: about 0.25 µs less per send and its receive
// (BenchmarkLoopbackPair), two of them a request. MSG_NOSIGNAL: a peer that went away
// is EPIPE, with no SIGPIPE for the runtime to catch and drop.
func sysRecv(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafePointer(p)), uintptr(len(p)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func sysSend(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafePointer(p)), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// Client connection states.
const (
	cIdle   uint8 = iota // waiting for a request's first byte
	cHead                // reading its head
	cBody                // reading its body (Content-Length, at most the retry buffer)
	cMember              // at a member, or waiting for a connection to one
	cRelay               // the member's answer going out
	cLocal               // the gateway's own answer going out
	cClosed
)

// cconn is a client connection of a loop.
type cconn struct {
	l   *evloop
	ll  *loopListener
	fd  int
	gen uint32
	// cc is the connection as the shared request path sees it (ctx.Conn()): the head
	// scan for bare LF and Content-Length with Transfer-Encoding, the listener, the
	// per-client count. Its Conn only answers LocalAddr and RemoteAddr.
	cc  clientConn
	ctx *fasthttp.RequestCtx
	f   flight

	in      []byte
	r       int // where the current request starts in in
	scanned int // in[:scanned] went through the head scan
	headEnd int // the current request's head ends here
	reqEnd  int // and its body here
	out     []byte
	outOff  int

	readable, writable bool
	hup                bool // the peer shut its side (EPOLLRDHUP): read on to the end
	st                 uint8
	since              int64 // when the state began (the clock)
	wsince             int64 // when the answer's first write began
	m                  *mconn
	relayDone          bool  // the member's body is all in out
	sent               int64 // body bytes relayed
	closeAfter         bool
	served             int
	staleRetry         bool // this attempt already went to a fresh connection after a stale one
	attemptAt          int64
}

func (c *cconn) generation() uint32 { return c.gen }

// addrConn is the net.Conn of a loop's client connection as fasthttp's RequestCtx and
// the request path see it: addresses only; the loop does the I/O.
type addrConn struct {
	laddr, raddr net.Addr
}

var errAddrConn = errors.New("gateway: an event loop connection is not read or written through net.Conn")

func (a *addrConn) Read([]byte) (int, error)         { return 0, errAddrConn }
func (a *addrConn) Write([]byte) (int, error)        { return 0, errAddrConn }
func (a *addrConn) Close() error                     { return nil }
func (a *addrConn) LocalAddr() net.Addr              { return a.laddr }
func (a *addrConn) RemoteAddr() net.Addr             { return a.raddr }
func (a *addrConn) SetDeadline(time.Time) error      { return nil }
func (a *addrConn) SetReadDeadline(time.Time) error  { return nil }
func (a *addrConn) SetWriteDeadline(time.Time) error { return nil }

func newCconn(l *evloop, ll *loopListener, fd int, raddr *net.TCPAddr, ip netip.Addr) *cconn {
	c := &cconn{l: l, ll: ll, fd: fd, ctx: new(fasthttp.RequestCtx), in: make([]byte, 0, inFirst)}
	var laddr net.Addr = &net.TCPAddr{}
	if sa, err := syscall.Getsockname(fd); err == nil {
		laddr = tcpAddrOf(sa)
	}
	c.cc = clientConn{Conn: &addrConn{laddr: laddr, raddr: raddr}, inHead: true, info: ll.info, s: l.s, perIP: ip}
	return c
}

func (c *cconn) event(ev uint32) {
	if ev&(epollIn|epollBad) != 0 {
		c.readable = true
	}
	if ev&(syscall.EPOLLRDHUP|epollBad) != 0 {
		c.hup = true // the end of stream is still to be read: no edge will say so again
	}
	if ev&(syscall.EPOLLOUT|epollBad) != 0 {
		c.writable = true
	}
	c.run()
}

// run moves the connection on as far as its readiness lets it.
func (c *cconn) run() {
	for {
		switch c.st {
		case cIdle, cHead, cBody:
			if c.parse() {
				continue
			}
			if c.st == cClosed || !c.readable || !c.fill() {
				return
			}
		case cRelay, cLocal:
			if !c.flush() {
				return
			}
			if c.st == cLocal || c.relayDone {
				if !c.finish() {
					return
				}
				continue
			}
			if m := c.m; m != nil {
				m.run() // the client took what was sent: read on
			}
			return
		default: // cMember, cClosed
			return
		}
	}
}

// fill reads what the client sent; false when nothing came (or the connection ended).
func (c *cconn) fill() bool {
	if c.r > 0 && c.st != cBody && c.r == len(c.in) {
		c.in, c.r, c.scanned = c.in[:0], 0, 0
	}
	if len(c.in) == cap(c.in) {
		limit := c.l.inLimit()
		if c.r > 0 {
			// Earlier (pipelined) requests are done with: move this one to the front.
			// Nothing points into in yet (the head fasthttp parsed is its own copy).
			n := copy(c.in, c.in[c.r:])
			c.in, c.scanned, c.headEnd, c.reqEnd, c.r = c.in[:n], c.scanned-c.r, c.headEnd-c.r, c.reqEnd-c.r, 0
		} else if cap(c.in) >= limit {
			if c.st == cBody {
				c.close() // cannot happen: a head and a body the loop serves fit (inLoop)
				return false
			}
			c.handoff(handoffHead) // fasthttp answers a head too large (431)
			return false
		} else {
			grown := make([]byte, len(c.in), min(2*cap(c.in), limit))
			copy(grown, c.in)
			c.in = grown
		}
	}
	n, e := sysRecv(c.fd, c.in[len(c.in):cap(c.in)])
	switch {
	case e == syscall.EAGAIN:
		c.readable = false
		return false
	case e == syscall.EINTR:
		return true
	case e != 0 || n == 0:
		c.close() // the client went away (mid-head or between requests: nothing to answer)
		return false
	}
	if n < cap(c.in)-len(c.in) && !c.hup {
		c.readable = false // edge-triggered: a short read drained the socket
	}
	c.in = c.in[:len(c.in)+n]
	return true
}

// inLimit is a client connection's largest buffer: a head and a body the loop serves.
func (l *evloop) inLimit() int {
	snap := l.s.snap.Load()
	return snap.cfg.Server.MaxHeaderBytes + snap.replayMax + len(crlfcrlf)
}

// parse reads the next request from in as far as it has come; true when it moved the
// connection on (to another state, or a request served).
func (c *cconn) parse() bool {
	switch c.st {
	case cIdle:
		if len(c.in) == c.r {
			return false
		}
		c.st = cHead
		if c.served > 0 {
			c.since = c.l.now // a new connection's first head counts from the accept
		}
		fallthrough
	case cHead:
		if c.cc.inHead && c.scanned < len(c.in) {
			bare := c.cc.scan(c.in[c.scanned:])
			c.scanned = len(c.in)
			if bare {
				c.handoff(handoffHead) // fasthttp's path answers it (400), as it would have
				return false
			}
		}
		data := c.in[c.r:]
		i := bytes.Index(data, crlfcrlf)
		if i < 0 {
			if len(data) >= c.l.s.snap.Load().cfg.Server.MaxHeaderBytes {
				c.handoff(handoffHead) // 431 there
			}
			return false
		}
		hl := i + len(crlfcrlf)
		if hl > c.l.s.snap.Load().cfg.Server.MaxHeaderBytes {
			c.handoff(handoffHead) // fasthttp's read buffer is max_header_bytes: 431 there
			return false
		}
		req := &c.ctx.Request
		req.Reset()
		c.l.rd.Reset(data[:hl])
		c.l.br.Reset(&c.l.rd)
		if err := req.Header.Read(c.l.br); err != nil || c.l.br.Buffered() != 0 {
			c.handoff(handoffHead) // fasthttp's path answers it with its error
			return false
		}
		if why := c.inLoop(req); why >= 0 {
			c.handoff(why)
			return false
		}
		c.headEnd = c.r + hl
		c.reqEnd = c.headEnd
		if cl := req.Header.ContentLength(); cl > 0 {
			c.reqEnd += cl
			c.st, c.since = cBody, c.l.now
			return true
		}
		c.serve()
		return true
	case cBody:
		if len(c.in) < c.reqEnd {
			return false
		}
		c.ctx.Request.SetBodyRaw(c.in[c.headEnd:c.reqEnd])
		c.serve()
		return true
	}
	return false
}

// inLoop says whether the loop serves req (-1), or why fasthttp's path does.
func (c *cconn) inLoop(req *fasthttp.Request) int {
	h := &req.Header
	snap := c.l.s.snap.Load()
	if !h.IsHTTP11() {
		return handoffVersion
	}
	uri := h.RequestURI()
	if len(uri) == 0 || uri[0] != '/' {
		return handoffTarget
	}
	if cl := h.ContentLength(); cl == -1 || cl > snap.replayMax {
		return handoffBody
	}
	if len(h.PeekBytes(strExpect)) > 0 {
		return handoffExpect
	}
	if len(h.PeekCanonical(strUpgrade)) > 0 {
		return handoffUpgrade
	}
	if g := snap.table.Match(h.Host(), router.PeekPath(uri)); g != nil && !snap.loopGroups[g.Index] {
		return handoffGroup
	}
	return -1
}

// serve runs the shared request path on the parsed request, then sends it to its
// member or answers it.
func (c *cconn) serve() {
	s := c.l.s
	c.ctx.Init2(&c.cc, s.fhLog, false) // the request's time: its one clock read
	c.ctx.Response.Reset()
	c.f = flight{}
	c.sent, c.relayDone, c.staleRetry = 0, false, false
	// Noted before begin: prepareRequest drops the client's Connection header.
	c.closeAfter = c.closeAfter || c.ctx.Request.Header.ConnectionClose()
	c.st = cMember
	s.stats.loopRequests.Add(1)
	if !s.begin(c.ctx, &c.f) {
		c.local()
		return
	}
	c.attempt()
}

// attempt sends the request to c.f.m, on a pooled connection or a new one.
func (c *cconn) attempt() {
	f := &c.f
	m := f.m
	f.tried.Add(m)
	st := m.State
	st.Requests.Add(1)
	st.Inflight.Add(1)
	c.attemptAt = c.l.now
	c.st, c.since = cMember, c.l.now
	mc, err := c.l.memberConn(m, f.snap)
	switch {
	case err != nil:
		c.attemptFailed(err)
	case mc == nil: // client.max_conns reached in this loop: wait for one
		num := st.Num()
		c.l.waiting[num] = append(c.l.waiting[num], c)
	default:
		c.sendTo(mc)
	}
}

// sendTo writes the request to mc.
func (c *cconn) sendTo(mc *mconn) {
	req := &c.ctx.Request
	memberScheme(req.URI(), false)
	req.URI().DisablePathNormalizing = true // as the HostClient sends it: byte-exact
	mc.out, mc.outOff = mc.out[:0], 0
	l := c.l
	l.sink.dst = &mc.out
	l.bw.Reset(&l.sink)
	if err := req.Write(l.bw); err == nil {
		err = l.bw.Flush()
	}
	l.sink.dst = nil
	c.m, mc.c = mc, c
	mc.in = mc.in[:0]
	mc.since = l.now
	if mc.state != mConnecting {
		mc.state = mSend
	}
	mc.run()
}

// attemptFailed records a failed attempt, then retries elsewhere or answers.
func (c *cconn) attemptFailed(err error) {
	s := c.l.s
	f := &c.f
	c.m = nil
	err = s.settle(f.m.State, err, 0)
	if s.again(f, &c.ctx.Request, err) {
		c.staleRetry = false
		c.attempt()
		return
	}
	s.failed(c.ctx, f, err)
	c.local()
}

// local sends the answer in ctx.Response (the gateway's own), as fasthttp's server
// would write it.
func (c *cconn) local() {
	resp := &c.ctx.Response
	req := &c.ctx.Request
	if req.Header.IsHead() {
		resp.SkipBody = true
	}
	c.closing(resp)
	c.out, c.outOff = c.out[:0], 0
	l := c.l
	l.sink.dst = &c.out
	l.bw.Reset(&l.sink)
	if err := resp.Write(l.bw); err == nil {
		l.bw.Flush() //nolint:errcheck // into memory
	}
	l.sink.dst = nil
	c.st, c.wsince = cLocal, l.now
	c.sent = int64(len(resp.Body()))
	c.run()
}

// closing decides whether the connection closes after this answer, as fasthttp's
// server does, and writes the Server header default.
func (c *cconn) closing(resp *fasthttp.Response) {
	if c.closeAfter || c.ctx.Request.Header.ConnectionClose() || resp.Header.ConnectionClose() || c.l.stopping {
		c.closeAfter = true
		resp.Header.SetConnectionClose()
	}
	if name := c.l.s.snap.Load().cfg.Server.ServerHeader; name != "" && len(resp.Header.Server()) == 0 {
		resp.Header.SetServer(name)
	}
}

// flush writes out; true once it is all written.
func (c *cconn) flush() bool {
	for c.outOff < len(c.out) {
		if !c.writable {
			return false
		}
		n, e := sysSend(c.fd, c.out[c.outOff:])
		switch {
		case e == syscall.EAGAIN:
			c.writable = false
			return false
		case e == syscall.EINTR:
			continue
		case e != 0:
			c.close()
			return false
		}
		c.outOff += n
		if c.outOff < len(c.out) {
			c.writable = false // edge-triggered: the socket buffer is full
		}
	}
	c.out, c.outOff = c.out[:0], 0
	return true
}

// pending reports whether the client has not taken all it was sent.
func (c *cconn) pending() bool { return c.outOff < len(c.out) }

// finish ends the request whose answer is written: logged, and the connection made
// ready for the next one. False when the connection closed.
func (c *cconn) finish() bool {
	c.served++
	c.m = nil
	if c.closeAfter {
		c.close()
		return false
	}
	c.r = c.reqEnd
	c.scanned = c.r
	c.cc.next()
	c.st, c.since = cIdle, c.l.now
	c.ctx.Request.Reset()
	c.ctx.Response.Reset()
	c.f = flight{}
	if c.r == len(c.in) {
		c.in, c.r, c.scanned = c.in[:0], 0, 0
	}
	return true
}

// logRelay writes the access line of a relayed answer whose body is all read.
func (c *cconn) logRelay() {
	a := c.f.access()
	a.status, a.sent = c.ctx.Response.StatusCode(), c.sent
	c.l.s.logAccess(c.ctx, c.f.snap, &a)
}

// close closes the client connection; a request at a member is abandoned there.
func (c *cconn) close() {
	if c.st == cClosed {
		return
	}
	if c.st == cMember && c.m == nil && c.f.m != nil {
		c.l.unwait(c) // waiting for a member connection
		c.f.m.State.Inflight.Add(-1)
	}
	if m := c.m; m != nil {
		c.m = nil
		if c.st == cMember {
			m.State().Inflight.Add(-1)
		}
		m.close() // mid-answer: the connection cannot be reused
	}
	c.st = cClosed
	c.l.forget(c.fd)
	syscall.Close(c.fd)
	c.cc.Close() //nolint:errcheck // gives back the per-client count
	c.l.clients--
	c.l.all.conns.Add(-1)
}

// handoff gives the connection, with what was read of its current request, to
// fasthttp's data path, which serves it from then on.
func (c *cconn) handoff(why int) {
	l := c.l
	l.s.stats.handoffs[why].Add(1)
	l.forget(c.fd)
	pre := append([]byte(nil), c.in[c.r:]...)
	f := os.NewFile(uintptr(c.fd), "client")
	nc, err := net.FileConn(f) // a dup, in Go's poller
	f.Close()                  // the loop's descriptor
	c.st = cClosed
	l.clients--
	l.all.conns.Add(-1)
	if err != nil {
		c.cc.Close() //nolint:errcheck // gives back the per-client count
		l.s.log.Error().Err(err).Msg("event loop: cannot hand a connection over")
		return
	}
	cc := newClientConn(&prefixConn{Conn: nc, pre: pre})
	cc.info, cc.perIP, cc.s = c.cc.info, c.cc.perIP, l.s // the count goes with it
	cc.keep(l.s.waits)
	c.cc.s = nil
	// Served directly, not through the listener: during a shutdown (the listener
	// closed) the request under way is still answered, with Connection: close.
	go l.s.srv.ServeConn(cc) //nolint:errcheck // fasthttp's path logs its own

}

// prefixConn is a handed-over connection: the bytes the loop read come first.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// CloseWrite half-closes the connection underneath (tunnels).
func (p *prefixConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Member connection states.
const (
	mConnecting uint8 = iota
	mSend             // writing the request
	mWait             // waiting for the answer's head
	mBody             // relaying its body
	mIdle             // in the pool
	mClosed
)

// mconn is a connection of a loop to a member.
type mconn struct {
	l    *evloop
	fd   int
	gen  uint32
	st   *router.MemberState
	cs   *connSet // the member's, for the count of loop connections
	addr netip.AddrPort

	in       []byte
	out      []byte
	outOff   int
	readable bool
	writable bool
	hup      bool // the member shut its side: read on to the end
	state    uint8
	c        *cconn
	reused   bool // it served a request before this one
	keep     bool // kept after this answer
	scan     bodyScan
	// closeDelim: the body ends when the member closes (neither Content-Length nor
	// chunked).
	closeDelim bool
	since      int64
}

func (m *mconn) generation() uint32 { return m.gen }

// State is the member's runtime state.
func (m *mconn) State() *router.MemberState { return m.st }

// memberConn returns an idle connection to m, or a new one (connecting); nil and no
// error when the loop's share of client.max_conns is in use.
func (l *evloop) memberConn(m *router.Member, snap *snapshot) (*mconn, error) {
	num := int(m.State.Num())
	for num >= len(l.pools) {
		l.pools = append(l.pools, nil)
		l.waiting = append(l.waiting, nil)
	}
	addr := snap.loopAddrs[m.Index]
	pool := l.pools[num]
	for len(pool) > 0 {
		mc := pool[len(pool)-1]
		pool = pool[:len(pool)-1]
		l.pools[num] = pool
		if mc.addr != addr || mc.readable {
			mc.close() // the member moved (reload), or it closed or wrote while idle
			continue
		}
		mc.reused = true
		return mc, nil
	}
	cs := l.s.connSet(m.State)
	// The place is taken before the dial, so that two loops cannot both take the last one.
	if limit := snap.cfg.Client.MaxConns; limit > 0 && int(cs.loopOpen.Add(1)) > limit {
		cs.loopOpen.Add(-1)
		return nil, nil // all loops together hold client.max_conns: wait for one
	} else if limit <= 0 {
		cs.loopOpen.Add(1)
	}
	mc, err := l.dialCounted(m.State, addr, cs)
	if err != nil {
		cs.loopOpen.Add(-1)
	}
	return mc, err
}

// dial opens a new connection to the member with state st, counted in its loopOpen.
func (l *evloop) dial(st *router.MemberState, addr netip.AddrPort) (*mconn, error) {
	cs := l.s.connSet(st)
	cs.loopOpen.Add(1)
	mc, err := l.dialCounted(st, addr, cs)
	if err != nil {
		cs.loopOpen.Add(-1)
	}
	return mc, err
}

// dialCounted opens a connection whose place in cs.loopOpen the caller has taken.
func (l *evloop) dialCounted(st *router.MemberState, addr netip.AddrPort, cs *connSet) (*mconn, error) {
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if addr.Addr().Is4() {
		sa = &syscall.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	} else {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, dialError(addr, err)
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1) //nolint:errcheck // as Go does
	mc := &mconn{l: l, fd: fd, st: st, addr: addr, in: make([]byte, 0, inFirst), since: l.now}
	err = syscall.Connect(fd, sa)
	switch err {
	case nil:
		mc.state = mSend
	case syscall.EINPROGRESS:
		mc.state = mConnecting
	default:
		syscall.Close(fd)
		return nil, dialError(addr, err)
	}
	if err := l.register(fd, mc, &mc.gen, epollAll); err != nil {
		syscall.Close(fd)
		return nil, dialError(addr, err)
	}
	mc.cs = cs
	return mc, nil
}

func dialError(addr netip.AddrPort, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(addr), Err: os.NewSyscallError("connect", err)}
}

func (m *mconn) event(ev uint32) {
	if ev&(epollIn|epollBad) != 0 {
		m.readable = true
	}
	if ev&(syscall.EPOLLRDHUP|epollBad) != 0 {
		m.hup = true
	}
	if ev&(syscall.EPOLLOUT|epollBad) != 0 {
		m.writable = true
	}
	if m.state == mIdle {
		if m.readable {
			m.drop() // closed by the member, or a word from it, while idle
		}
		return
	}
	m.run()
}

// run moves the exchange on as far as readiness lets it.
func (m *mconn) run() {
	for {
		switch m.state {
		case mConnecting:
			if !m.writable {
				return
			}
			errno, err := syscall.GetsockoptInt(m.fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
			if err == nil && errno != 0 {
				m.fail(dialError(m.addr, syscall.Errno(errno)))
				return
			}
			m.state = mSend
		case mSend:
			if !m.flush() {
				return
			}
			m.state, m.since = mWait, m.l.now
		case mWait, mBody:
			c := m.c
			if c == nil || c.pending() {
				return // the client has not taken the last piece: read no more now
			}
			if !m.readable {
				return
			}
			if !m.fill() {
				return
			}
		default:
			return
		}
	}
}

// flush writes the request; true once it is all written.
func (m *mconn) flush() bool {
	for m.outOff < len(m.out) {
		if !m.writable {
			return false
		}
		n, e := sysSend(m.fd, m.out[m.outOff:])
		switch {
		case e == syscall.EAGAIN:
			m.writable = false
			return false
		case e == syscall.EINTR:
			continue
		case e != 0:
			if m.reused && !m.c.staleRetry {
				m.stale()
				return false
			}
			m.fail(&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", e)})
			return false
		}
		m.outOff += n
		if m.outOff < len(m.out) {
			m.writable = false
		}
	}
	return true
}

// fill reads from the member and moves the answer on; false when it must wait.
func (m *mconn) fill() bool {
	if m.state == mBody {
		m.in = m.in[:0] // what was read is in the client's out already
	}
	if len(m.in) == cap(m.in) {
		limit := max(m.l.s.snap.Load().cfg.Server.MaxHeaderBytes, 8192) + len(crlfcrlf)
		if cap(m.in) >= limit {
			m.fail(errMemberHeadLarge)
			return false
		}
		grown := make([]byte, len(m.in), min(2*cap(m.in), limit))
		copy(grown, m.in)
		m.in = grown
	}
	n, e := sysRecv(m.fd, m.in[len(m.in):cap(m.in)])
	switch {
	case e == syscall.EAGAIN:
		m.readable = false
		return false
	case e == syscall.EINTR:
		return true
	case e != 0 || n == 0:
		m.ended(e)
		return false
	}
	if n < cap(m.in)-len(m.in) && !m.hup {
		m.readable = false
	}
	m.in = m.in[:len(m.in)+n]
	m.since = m.l.now
	if m.state == mWait {
		return m.head()
	}
	return m.body(m.in)
}

// ended is the member's end of stream or a read error.
func (m *mconn) ended(e syscall.Errno) {
	c := m.c
	if m.state == mBody {
		if m.closeDelim && e == 0 {
			c.logRelay()
			m.keep = false
			m.state = mClosed
			c.relayDone = true
			m.release()
			c.run()
			return
		}
		m.l.s.health.Observe(m.st, health.Closed)
		m.truncate()
		return
	}
	if len(m.in) == 0 && m.reused && !c.staleRetry && idempotent(c.ctx.Request.Header.Method()) {
		m.stale()
		return
	}
	if e != 0 {
		m.fail(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", e)})
		return
	}
	m.fail(fasthttp.ErrConnectionClosed)
}

// stale is a pooled connection the member closed as the request went out: the
// request goes again on a fresh connection to the same member, once, as fasthttp's
// HostClient does; nothing is counted against the member.
func (m *mconn) stale() {
	c := m.c
	m.c = nil
	m.close()
	c.staleRetry = true
	mc, err := c.l.dial(c.f.m.State, c.f.snap.loopAddrs[c.f.m.Index])
	if err != nil {
		c.attemptFailed(err)
		return
	}
	c.sendTo(mc)
}

// head parses the answer's head once it is all in; false when it must wait.
func (m *mconn) head() bool {
	for {
		i := bytes.Index(m.in, crlfcrlf)
		if i < 0 {
			return true // read on (fill fails the head too large)
		}
		c := m.c
		l := m.l
		mr := &c.ctx.Response // read in place: answer copies nothing
		hl := i + len(crlfcrlf)
		l.rd.Reset(m.in[:hl])
		l.br.Reset(&l.rd)
		if err := mr.Header.Read(l.br); err != nil {
			m.fail(err)
			return false
		}
		status := mr.Header.StatusCode()
		if status >= 100 && status < 200 {
			if status == fasthttp.StatusSwitchingProtocols {
				m.fail(errMember101)
				return false
			}
			m.in = m.in[:copy(m.in, m.in[hl:])] // an interim answer (100, 103): not passed on
			continue
		}
		req := &c.ctx.Request
		cl := mr.Header.ContentLength()
		noBody := req.Header.IsHead() || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified
		if noBody {
			m.scan.reset(0)
		} else {
			m.scan.reset(cl)
		}
		m.closeDelim = !noBody && cl == -2
		m.keep = !mr.Header.ConnectionClose() && (noBody || cl != -2)
		s := l.s
		f := &c.f
		s.settle(m.st, nil, status) //nolint:errcheck // nil in, nil out
		s.answer(c.ctx, f, mr)
		resp := &c.ctx.Response
		if noBody {
			resp.SkipBody = true
		} else {
			resp.Header.SetContentLength(cl) // chunked again, or close-delimited (Connection: close)
		}
		c.closing(resp)
		c.out = resp.Header.AppendBytes(c.out[:0])
		c.outOff = 0
		c.st, c.wsince = cRelay, l.now
		m.state = mBody
		rest := m.in[hl:]
		return m.body(rest)
	}
}

// body passes p, bytes of the answer's body, on to the client; false when the
// exchange is over or must wait for the client.
func (m *mconn) body(p []byte) bool {
	c := m.c
	n, done, err := m.scan.feed(p)
	c.out = append(c.out, p[:n]...)
	c.sent += int64(n)
	if err != nil {
		m.l.s.health.Observe(m.st, health.Broken)
		c.flush()
		m.truncate()
		return false
	}
	if done {
		if n < len(p) {
			m.keep = false // bytes after the answer: the member is not to be trusted with another
		}
		c.logRelay() // before the last write, as fasthttp's path logs before its answer goes
		c.relayDone = true
		m.release()
		c.run()
		return false
	}
	if !c.flush() {
		return false // the client is slow: read on when it has taken this
	}
	return true
}

// truncate ends an answer cut short: the client's connection closes after what was
// sent, as fasthttp's path does.
func (m *mconn) truncate() {
	c := m.c
	m.c = nil
	m.close()
	if c == nil {
		return
	}
	a := c.f.access()
	a.status, a.sent, a.truncated = c.ctx.Response.StatusCode(), c.sent, true
	c.l.s.logAccess(c.ctx, c.f.snap, &a)
	c.m = nil
	c.st = cLocal // logged: close without a second line
	c.close()
}

// fail ends an attempt that got no answer head.
func (m *mconn) fail(err error) {
	c := m.c
	m.c = nil
	m.close()
	if c != nil && c.st == cMember {
		c.attemptFailed(err)
	}
}

// release ends the exchange: the connection goes back to the pool or is closed, and a
// request waiting for a connection to the member gets it.
func (m *mconn) release() {
	c := m.c
	m.c = nil
	if c != nil {
		c.m = nil
	}
	if !m.keep || m.l.stopping || m.state == mClosed {
		m.close()
		return
	}
	m.state = mIdle
	num := m.st.Num()
	if w := m.l.waiting[num]; len(w) > 0 {
		next := w[0]
		m.l.waiting[num] = w[1:]
		m.reused = true
		next.sendTo(m)
		return
	}
	m.since = m.l.now
	m.l.pools[num] = append(m.l.pools[num], m)
}

// drop closes an idle connection and takes it out of the pool.
func (m *mconn) drop() {
	num := m.st.Num()
	pool := m.l.pools[num]
	for i, p := range pool {
		if p == m {
			pool[i] = pool[len(pool)-1]
			m.l.pools[num] = pool[:len(pool)-1]
			break
		}
	}
	m.close()
}

func (m *mconn) close() {
	if m.fd < 0 {
		return
	}
	l := m.l
	l.forget(m.fd)
	syscall.Close(m.fd)
	m.fd = -1
	m.state = mClosed
	num := m.st.Num()
	m.cs.loopOpen.Add(-1)
	// A request waiting for a connection can open one now.
	if w := l.waiting[num]; len(w) > 0 {
		next := w[0]
		l.waiting[num] = w[1:]
		snap := next.f.snap
		mc, err := l.dial(next.f.m.State, snap.loopAddrs[next.f.m.Index])
		if err != nil {
			next.attemptFailed(err)
			return
		}
		next.sendTo(mc)
	}
}

// unwait takes c out of the queue for a member connection.
func (l *evloop) unwait(c *cconn) {
	num := int(c.f.m.State.Num())
	if num >= len(l.waiting) {
		return
	}
	w := l.waiting[num]
	for i, x := range w {
		if x == c {
			l.waiting[num] = append(w[:i], w[i+1:]...)
			return
		}
	}
}

// sweep enforces the timeouts, at most a sweep late.
func (l *evloop) sweep() {
	now := l.now
	s := l.s
	w := s.waits
	cfg := s.snap.Load().cfg
	for _, o := range l.objs {
		switch x := o.(type) {
		case *cconn:
			l.sweepClient(x, now, w)
		case *mconn:
			switch x.state {
			case mConnecting:
				if over(now, x.since, cfg.Client.DialTimeout) {
					x.fail(fasthttp.ErrDialTimeout) // a connect failure (kindOf): retried, 502
				}
			case mSend:
				if over(now, x.since, cfg.Client.WriteTimeout) {
					x.fail(fasthttp.ErrTimeout)
				}
			case mWait:
				c := x.c
				try := cfg.Retry.TryTimeout
				if c != nil && try > 0 && idempotent(c.ctx.Request.Header.Method()) && over(now, c.attemptAt, try) ||
					over(now, x.since, cfg.Client.ReadTimeout) {
					x.fail(fasthttp.ErrTimeout)
				}
			case mBody:
				if x.c != nil && x.c.pending() {
					x.since = now // waiting for the client, not for the member
				} else if over(now, x.since, cfg.Client.ReadTimeout) {
					x.truncate()
				}
			case mIdle:
				if over(now, x.since, cfg.Client.IdleTimeout) {
					x.drop()
				}
			}
		}
	}
	for num := range l.waiting {
		for len(l.waiting[num]) > 0 {
			c := l.waiting[num][0]
			if over(now, c.since, cfg.Client.DialTimeout) {
				l.waiting[num] = l.waiting[num][1:]
				c.attemptFailed(fasthttp.ErrNoFreeConns)
				continue
			}
			// A connection another loop held may have closed since.
			mc, err := l.memberConn(c.f.m, c.f.snap)
			if mc == nil && err == nil {
				break
			}
			l.waiting[num] = l.waiting[num][1:]
			if err != nil {
				c.attemptFailed(err)
				continue
			}
			c.sendTo(mc)
		}
	}
}

func (l *evloop) sweepClient(c *cconn, now int64, w *clientWaits) {
	switch c.st {
	case cIdle:
		d := w.idle.d
		if c.served == 0 {
			d = w.head.d
		}
		if l.stopping || over(now, c.since, d) {
			c.close()
		}
	case cHead:
		if over(now, c.since, w.head.d) {
			c.timeout()
		}
	case cBody:
		if over(now, c.since, w.read.d) {
			c.timeout()
		}
	case cRelay, cLocal:
		// write_timeout bounds writing the whole answer, from its first write, as on
		// fasthttp's path, also one that trickles from the member.
		if over(now, c.wsince, w.write.d) {
			if m := c.m; m != nil && c.st == cRelay {
				m.truncate()
			} else {
				c.close()
			}
		}
	}
}

// timeout answers a request whose head or body did not come in time: 408, as
// fasthttp's path does, and the connection closes.
func (c *cconn) timeout() {
	s := c.l.s
	s.stats.errors[kindClientTimeout].Add(1)
	s.log.Warn().Str("kind", errKindNames[kindClientTimeout]).Int("status", fasthttp.StatusRequestTimeout).
		Str("remote", c.cc.RemoteAddr().String()).Msg("bad request")
	c.ctx.Response.Reset()
	writeError(c.ctx, fasthttp.StatusRequestTimeout)
	c.closeAfter = true
	c.st = cMember
	c.local()
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func over(now, since int64, d time.Duration) bool {
	return d > 0 && now-since > int64(d)
}

// stop stops accepting, closes idle connections, and lets the loop end when the
// last client connection has closed.
func (l *evloop) stop() {
	if l.stopping {
		return
	}
	l.stopping = true
	for _, ll := range l.lns {
		l.forget(ll.fd) // Shutdown closes the socket
	}
	for _, o := range l.objs {
		switch x := o.(type) {
		case *cconn:
			if x.st == cIdle {
				x.close()
			}
		case *mconn:
			if x.state == mIdle {
				x.drop()
			}
		}
	}
	if l.clients == 0 {
		l.exit = true
	}
}

// closeAll closes every connection (the end of a loop).
func (l *evloop) closeAll() {
	for _, o := range l.objs {
		switch x := o.(type) {
		case *cconn:
			x.close()
		case *mconn:
			x.close()
		}
	}
}

// memberOut closes the loop's connections to a member that went out: idle ones, and
// those of requests in flight there, which fail with errMarkedDown (and go elsewhere
// when they may).
func (l *evloop) memberOut(st *router.MemberState) {
	for _, o := range l.objs {
		if x, ok := o.(*mconn); ok && x.st == st {
			switch x.state {
			case mIdle:
				x.drop()
			case mConnecting, mSend, mWait:
				x.fail(errMarkedDown)
			}
		}
	}
}

// stopAccepting makes every loop stop accepting and close its idle connections, and
// waits until they have (or done): the listening sockets can close then.
func (lp *loops) stopAccepting(done <-chan struct{}) {
	lp.mu.Lock()
	again := lp.closed
	lp.closed = true
	lp.mu.Unlock()
	if again || len(lp.ls) == 0 {
		return
	}
	acks := make(chan struct{}, len(lp.ls))
	for _, l := range lp.ls {
		l.post(func() { l.stop(); acks <- struct{}{} })
	}
	for _, l := range lp.ls {
		select {
		case <-acks:
		case <-l.stopped: // ended already: it reads no mail
		case <-done:
			return
		}
	}
}

// shutdown waits for the loops to end (each ends when its last client connection has
// closed after its answer) until done, then ends them, closing what is left.
func (lp *loops) shutdown(done <-chan struct{}) {
	if len(lp.ls) == 0 {
		return
	}
	all := make(chan struct{})
	go func() { lp.wg.Wait(); close(all) }()
	select {
	case <-all:
		return
	case <-done:
	}
	for _, l := range lp.ls {
		l.post(func() { l.exit = true })
	}
	<-all
}

// memberOut tells every loop that a member went out.
func (lp *loops) memberOut(st *router.MemberState) {
	for _, l := range lp.ls {
		l.post(func() { l.memberOut(st) })
	}
}
