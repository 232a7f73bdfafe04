package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// memberConn is a connection to a member that sends the request in the same step that
// waits for the answer, so it never reads in vain.
//
// Go's net.Conn.Read always tries read(2) first and waits for readiness only when it
// fails with EAGAIN. Right after a request is written the member has not answered yet,
// so that first read is a wasted system call on every request: 1 of the gateway's 6
// per proxied request, measured with perf on the pinned bench (HAProxy, which waits for
// epoll before it reads, makes 4.4). Here Write keeps the request (up to one buffer)
// and the next Read writes it from inside syscall.RawConn.Read: RawConn.Read resets
// the descriptor's readiness before it calls readFn, readFn writes, returns false,
// and the runtime's poller wakes it when the answer arrives. The reset comes before the
// write, so no readiness the answer causes can be lost.
//
// Data that arrived before the request (a member that answers unasked) loses its
// readiness in that reset; members only do that before closing the connection, and
// the RST our write then draws wakes the wait. The read deadline bounds it in any case.
//
// A memberConn is used by one goroutine at a time (fasthttp's HostClient).
//
// It embeds net.Conn, not *net.TCPConn, so that no other path (ReadFrom, WriteTo)
// can pass the request kept back.
type memberConn struct {
	net.Conn
	rc      syscall.RawConn
	pending []byte // written, not yet sent
	readFn  func(fd uintptr) bool

	// readFn's arguments and results, in fields so that Read allocates nothing.
	buf    []byte
	n      int
	rerr   error
	werr   error
	sent   bool
	unsent bool // the write could not finish at once: finish it the ordinary way
}

// pendingMax is the most a memberConn keeps back: one fasthttp write buffer, so a
// request's headers and small body are held, and a long body's chunks are sent as they
// come with at most one chunk behind.
const pendingMax = 4096

func newMemberConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	mc := &memberConn{Conn: c, rc: rc, pending: make([]byte, 0, pendingMax)}
	mc.readFn = mc.readStep
	return mc
}

// Write keeps p to send with the next Read, or sends what is kept and p when they do
// not fit in one buffer.
func (c *memberConn) Write(p []byte) (int, error) {
	if len(c.pending)+len(p) <= cap(c.pending) {
		c.pending = append(c.pending, p...)
		return len(p), nil
	}
	if err := c.flush(); err != nil {
		return 0, err
	}
	if len(p) <= cap(c.pending) {
		c.pending = append(c.pending, p...)
		return len(p), nil
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
		return false // sent: wait for readiness instead of reading in vain
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

func (c *memberConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Close sends nothing kept back: a request the caller gave up on before reading its
// answer is not sent.
func (c *memberConn) Close() error {
	c.pending = c.pending[:0]
	return c.Conn.Close()
}
