package gateway

import (
	"errors"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// memberConn is a connection to a member that sends the request in the same step that
// waits for the answer, so it does not read in vain.
//
// Go's net.Conn.Read always tries read(2) first and waits for readiness only when it
// fails with EAGAIN. Right after a request is written the member has not answered yet,
// so that first read is a wasted system call on every request: 1 of the gateway's 6
// per proxied request, measured with perf on the pinned bench (HAProxy, which waits for
// epoll before it reads, makes 4.4). Here the first Write of a request is kept (up to
// one buffer) and the next Read sends it from inside syscall.RawConn.Read: RawConn.Read
// resets the descriptor's readiness before it calls readFn, readFn writes, returns
// false, and the runtime's poller wakes it when the answer arrives. The reset comes
// before the write, so no readiness the answer causes can be lost.
//
// A connection idle for more than a tick of its Server's clock (100-200ms: longer than any
// request-to-request gap under load, shorter than members' keep-alive timeouts) is
// checked before its request goes out: one non-blocking read. A member that closed it
// while it sat in the pool (its keep-alive timeout) shows as end of stream, a reset, or
// a last word such as a 408; the request was then sent nowhere, Write returns
// errStaleConn, and the HostClient retries on another connection (memberRetry), for
// any method. Without the check a POST there would fail with 502, as it does through
// Go's own Transport. An idle connection also reads right after sending: what arrived
// before the request loses its readiness in RawConn.Read's reset, and a member that
// shut only its sending side then would leave the wait to the read deadline.
//
// Only the first Write after a Read is kept: the later ones of a streamed body (each
// chunk of a chunked one is flushed on purpose) go out at once, after it.
//
// A memberConn is used by one goroutine at a time (fasthttp's HostClient); Close may
// come from another one and touches nothing else. It embeds net.Conn, not
// *net.TCPConn, so that no other path (ReadFrom, WriteTo) can pass the request kept back.
type memberConn struct {
	net.Conn
	rc       syscall.RawConn
	pending  []byte // written, not yet sent
	held     bool   // a Write was kept since the last Read: the next ones go out
	clock    *ticker
	lastRead uint32 // clock when the last Read began
	// The deadlines. client.read_timeout bounds each wait for the member, as nginx's
	// proxy_read_timeout does, so that a body that a slow client takes long to read is
	// not cut while the member is waiting on us; client.write_timeout bounds sending a
	// request. The HostClient sets neither: Read and Write keep them coarsely
	// (deadline.go), rd and wd being what is armed. A deadline someone sets (fasthttp's
	// for a retry.try_timeout attempt, a TLS handshake's) is theirs until they clear it
	// (explicitR, explicitW): for a read one, armed says fasthttp set it, armedAt the
	// tick it was set at, armedWait its length, and Read sets it again once a tick has
	// passed, so that it too bounds each wait.
	readWait  time.Duration
	rwait     wait // client.read_timeout, kept coarsely
	wwait     wait // client.write_timeout
	clk       connClock
	rd, wd    int64 // the deadlines armed coarsely (ticker scale); 0: none
	explicitR bool
	explicitW bool
	armedWait time.Duration // the wait fasthttp armed: read_timeout, or a shorter try_timeout
	armed     bool
	armedAt   uint32
	set       *connSet    // the member's open connections (nil in tests)
	killed    atomic.Bool // closed by connSet.closeAll
	idle      bool        // this request's connection sat idle: checked, and read first
	readFn    func(fd uintptr) bool
	checkFn   func(fd uintptr)
	one       [1]byte // stale's read buffer

	// readFn's arguments and results, in fields so that Read allocates nothing.
	buf    []byte
	n      int
	rerr   error
	werr   error
	sent   bool
	unsent bool // the write could not finish at once: finish it the ordinary way
}

// pendingMax is the most a memberConn keeps back: one fasthttp write buffer, enough for
// a request's headers and a small body.
const pendingMax = 4096

// ticker counts 100ms ticks (clockTick), for the idle test of member connections
// without a clock read per request, and keeps the time of the last one, the coarse
// clock of the connections' deadlines (deadline.go). Each Server has one, started by
// New and stopped by Shutdown.
type ticker struct {
	n    atomic.Uint32
	mono atomic.Int64 // nanoseconds from base to the last tick
	base time.Time
	stop chan struct{}
	once sync.Once
}

func newTicker() *ticker {
	t := &ticker{stop: make(chan struct{}), base: time.Now()}
	go func() {
		tk := time.NewTicker(clockTick)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
				t.mono.Store(int64(time.Since(t.base)))
				t.n.Add(1)
			case <-t.stop:
				return
			}
		}
	}()
	return t
}

// Load is the number of ticks so far.
func (t *ticker) Load() uint32 { return t.n.Load() }

// coarse is the time of the last tick, in nanoseconds since the ticker started: at
// most a tick behind (more only while its goroutine waits for a CPU).
func (t *ticker) coarse() int64 { return t.mono.Load() }

// exact is the time now on the same scale: a clock read.
func (t *ticker) exact() int64 { return int64(time.Since(t.base)) }

// Add moves the count on (tests); the coarse clock stays the clock's.
func (t *ticker) Add(d uint32) { t.n.Add(d) }

// Stop ends the ticking; the count stays readable.
func (t *ticker) Stop() { t.once.Do(func() { close(t.stop) }) }

// connSet is the open connections to one member, so that they can all be closed when
// the member goes down or is ejected (shutdownSessions). It is touched when a
// connection opens or closes, never per request.
type connSet struct {
	mu    sync.Mutex
	conns map[*memberConn]struct{}
	// loopOpen counts the member's connections of the event loops, all loops together
	// (client.max_conns).
	loopOpen atomic.Int32
}

func (s *connSet) add(c *memberConn) {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[*memberConn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *connSet) remove(c *memberConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// closeAll closes every open connection; their requests in flight fail with
// errMarkedDown, which retries idempotent ones elsewhere.
func (s *connSet) closeAll() int {
	s.mu.Lock()
	conns := make([]*memberConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.killed.Store(true)
		c.Conn.Close()
	}
	return len(conns)
}

// errMarkedDown is the error of a request whose member connection the gateway closed
// because the member went down or was ejected while the request was in flight.
var errMarkedDown = errors.New("gateway: member marked down while the request was in flight")

// newMemberConn wraps a member connection c, which keeps readWait
// (client.read_timeout) and writeWait (client.write_timeout) itself; 0 is none. It
// returns c as it is when c is no TCP connection (tests).
func newMemberConn(c net.Conn, clock *ticker, readWait, writeWait time.Duration, set *connSet) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	mc := &memberConn{Conn: c, rc: rc, clock: clock, readWait: readWait, set: set, pending: make([]byte, 0, pendingMax), lastRead: clock.Load(),
		rwait: newWait(readWait), wwait: newWait(writeWait), clk: newConnClock(clock, readWait, writeWait)}
	if set != nil {
		set.add(mc)
	}
	mc.readFn = mc.readStep
	mc.checkFn = mc.checkStep
	return mc
}

// SetReadDeadline sets a deadline of the caller's (a try_timeout attempt), which Read
// arms again each tick for each wait; the zero time hands the read deadline back to
// Read's coarse client.read_timeout.
func (c *memberConn) SetReadDeadline(t time.Time) error {
	if c.killed.Load() {
		return errMarkedDown // between the request's write and its read
	}
	c.explicitR, c.rd = !t.IsZero(), 0
	c.armed, c.armedAt, c.armedWait = !t.IsZero() && c.readWait > 0, c.clock.Load(), c.readWait
	if c.armed {
		if d := time.Until(t); d < c.readWait {
			c.armedWait = d // a shorter deadline than read_timeout: retry.try_timeout
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline refuses a connection the gateway closed, before anything is sent:
// fasthttp then tries a fresh one (memberRetry). Otherwise it sets a deadline of the
// caller's (a try_timeout attempt), no later than client.write_timeout from now, as
// fasthttp's own would be; the zero time hands it back to Write's coarse one.
func (c *memberConn) SetWriteDeadline(t time.Time) error {
	if c.killed.Load() {
		return errStaleConn
	}
	c.explicitW, c.wd = !t.IsZero(), 0
	if !t.IsZero() && c.wwait.d > 0 {
		if lim := time.Now().Add(c.wwait.d); lim.Before(t) {
			t = lim
		}
	}
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines as they are (a TLS handshake's, a test's) until it
// is called with the zero time.
func (c *memberConn) SetDeadline(t time.Time) error {
	c.explicitR, c.explicitW, c.rd, c.wd, c.armed = !t.IsZero(), !t.IsZero(), 0, 0, false
	return c.Conn.SetDeadline(t)
}

// keepWrite arms client.write_timeout for a request that begins now, unless the
// deadline armed already fits it (deadline.go).
func (c *memberConn) keepWrite() error {
	if c.explicitW {
		return nil
	}
	if at, ok := c.clk.due(c.wd, c.clk.now(), &c.wwait); ok {
		c.wd = at
		return c.Conn.SetWriteDeadline(c.clk.deadline(at))
	}
	return nil
}

// rearmTicks is how many clock ticks pass before Read arms the read timeout anew: one
// (100-200 ms), so that each wait for the member gets at least client.read_timeout less
// a tick, at the cost of one deadline per tick of a long transfer.
func (c *memberConn) rearmTicks() uint32 { return 1 }

// errStaleConn is Write's error on a pooled connection the member closed while it was
// idle: nothing was sent.
var errStaleConn = errors.New("gateway: pooled member connection closed by the member while idle; nothing sent")

// memberRetry is the HostClient's RetryIfErr: a request that met a stale pooled
// connection goes again, on another connection (fasthttp closes the stale one).
func memberRetry(_ *fasthttp.Request, _ int, err error) (bool, bool) {
	return false, errors.Is(err, errStaleConn)
}

// memberAttempts leaves those retries unbounded in effect: after a lull every pooled
// connection may be stale, each attempt closes one, a fresh one is never idle, so the
// loop ends with the pool; memberRetry refuses every other failure at the first attempt.
const memberAttempts = math.MaxInt32

// Write keeps the first write of a request for the next Read when it fits in a buffer;
// it sends the later ones at once, after what is kept. The first write on a connection
// that sat idle is refused with errStaleConn if the member closed it meanwhile.
func (c *memberConn) Write(p []byte) (int, error) {
	if c.killed.Load() {
		if !c.held {
			return 0, errStaleConn // nothing of this request went out: fasthttp tries a fresh connection
		}
		return 0, errMarkedDown
	}
	if !c.held {
		c.idle = c.clock.Load()-c.lastRead > 1
		if c.idle && c.stale() {
			return 0, errStaleConn
		}
		c.held = true
		if err := c.keepWrite(); err != nil {
			return 0, err
		}
		if len(c.pending) == 0 && len(p) <= cap(c.pending) {
			c.pending = append(c.pending, p...)
			return len(p), nil
		}
	}
	if err := c.flush(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// flush sends what is kept, the ordinary way (waiting for room, under the write deadline).
func (c *memberConn) flush() error {
	if len(c.pending) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.pending)
	c.pending = c.pending[:0]
	return err
}

// Read sends what is kept, then waits for the answer and reads it.
func (c *memberConn) Read(p []byte) (int, error) {
	n, err := c.read(p)
	if err != nil && c.killed.Load() {
		return n, errMarkedDown
	}
	return n, err
}

// Close closes the connection and forgets it.
func (c *memberConn) Close() error {
	if c.set != nil {
		c.set.remove(c)
	}
	return c.Conn.Close()
}

func (c *memberConn) read(p []byte) (int, error) {
	c.held = false
	now := c.clock.Load()
	c.lastRead = now
	switch {
	case c.explicitR:
		if c.armed && now-c.armedAt >= c.rearmTicks() {
			c.armedAt = now
			if err := c.Conn.SetReadDeadline(time.Now().Add(c.armedWait)); err != nil {
				return 0, err
			}
		}
	default: // client.read_timeout for this wait, coarsely
		if at, ok := c.clk.due(c.rd, c.clk.now(), &c.rwait); ok {
			c.rd = at
			if err := c.Conn.SetReadDeadline(c.clk.deadline(at)); err != nil {
				return 0, err
			}
		}
	}
	if len(c.pending) == 0 {
		return c.Conn.Read(p)
	}
	if len(p) == 0 {
		if err := c.flush(); err != nil {
			return 0, err
		}
		return 0, nil
	}
	c.buf, c.n, c.rerr, c.werr, c.sent, c.unsent = p, 0, nil, nil, false, false
	err := c.rc.Read(c.readFn)
	c.buf = nil
	switch {
	case c.werr != nil:
		c.pending = c.pending[:0]
		return 0, c.opError("write", os.NewSyscallError("write", c.werr))
	case c.unsent:
		if err := c.flush(); err != nil {
			return 0, err
		}
		return c.Conn.Read(p)
	case err != nil: // the deadline passed, or the connection was closed
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err // RawConn's own "raw-read" wrapping
		}
		return 0, c.opError("read", err)
	case c.rerr != nil:
		return 0, c.opError("read", os.NewSyscallError("read", c.rerr))
	case c.n == 0:
		return 0, io.EOF
	}
	return c.n, nil
}

// readStep is RawConn.Read's callback: the first call sends the kept request and asks
// to wait; the following ones read.
func (c *memberConn) readStep(fd uintptr) bool {
	if !c.sent {
		c.sent = true
		for len(c.pending) > 0 {
			n, err := syscall.Write(int(fd), c.pending)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				c.unsent = true
				return true
			case err != nil:
				c.werr = err
				return true
			}
			c.pending = c.pending[:copy(c.pending, c.pending[n:])]
		}
		if !c.idle {
			return false // sent: wait for readiness instead of reading in vain
		}
	}
	for {
		n, err := syscall.Read(int(fd), c.buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			c.rerr = err
			return true
		}
		c.n = n
		return true
	}
}

// stale reports whether the member closed the connection, or spoke unasked, while it
// was idle: one non-blocking read, of what no request asked for. It goes through
// RawConn.Control, not RawConn.Read: the previous request's read deadline may have
// passed while the connection sat idle (fasthttp sets the next one after writing), and
// RawConn.Read would fail on it before reading.
func (c *memberConn) stale() bool {
	c.n, c.rerr = 0, nil
	if err := c.rc.Control(c.checkFn); err != nil {
		return true // closed
	}
	return c.rerr != syscall.EAGAIN // data, end of stream (n == 0, no error) or an error
}

func (c *memberConn) checkStep(fd uintptr) {
	for {
		n, err := syscall.Read(int(fd), c.one[:])
		if err == syscall.EINTR {
			continue
		}
		c.n, c.rerr = n, err
		return
	}
}

func (c *memberConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
