package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// memberConnPair dials a loopback listener and returns the dialed side as a
// memberConn and the accepted side as is.
func memberConnPair(t *testing.T) (*memberConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	clock := newTicker()
	t.Cleanup(clock.Stop)
	mc, ok := newMemberConn(c, clock, 0, 0, nil).(*memberConn)
	if !ok {
		t.Fatal("newMemberConn did not wrap a TCP connection")
	}
	t.Cleanup(func() { mc.Close(); peer.Close() })
	mc.SetDeadline(time.Now().Add(10 * time.Second))
	peer.SetDeadline(time.Now().Add(10 * time.Second))
	return mc, peer.(*net.TCPConn)
}

func TestMemberConnKeepsWriteUntilRead(t *testing.T) {
	mc, peer := memberConnPair(t)
	if _, err := mc.Write([]byte("GET / HTTP/1.1\r\nHost: m\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// Nothing has left yet: the peer sees no bytes before the reader asks for the answer.
	peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := peer.Read(make([]byte, 64)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("peer read %d bytes (%v) before the request was due", n, err)
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))

	done := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := io.ReadAtLeast(peer, buf, len("GET / HTTP/1.1\r\nHost: m\r\n\r\n"))
		peer.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
		done <- buf[:n]
	}()
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(mc, buf, len("HTTP/1.1 200 OK\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != "HTTP/1.1 200 OK\r\n\r\n" {
		t.Fatalf("answer %q", got)
	}
	if got := string(<-done); got != "GET / HTTP/1.1\r\nHost: m\r\n\r\n" {
		t.Fatalf("peer got %q", got)
	}
}

// Only a request's first write is kept: the next ones (a streamed body's chunks) go
// out at once, after it.
func TestMemberConnLaterWritesGoOut(t *testing.T) {
	mc, peer := memberConnPair(t)
	mc.Write([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"))
	mc.Write([]byte("3\r\nabc\r\n"))
	want := "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != want { // before any Read
		t.Fatalf("peer got %q, %v; want %q", buf, err, want)
	}
	mc.Write([]byte("0\r\n\r\n"))
	buf = buf[:5]
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "0\r\n\r\n" {
		t.Fatalf("peer got %q, %v", buf, err)
	}
}

// A pooled connection the member closed while it sat idle (its keep-alive timeout): the
// first write of the next request finds out and sends nothing, so that the request can
// go again on another connection, whatever its method.
func TestMemberConnStaleIdle(t *testing.T) {
	for _, tc := range []struct {
		name  string
		close func(peer *net.TCPConn)
	}{
		{"fin", func(peer *net.TCPConn) { peer.CloseWrite() }},
		{"reset", func(peer *net.TCPConn) { peer.SetLinger(0); peer.Close() }},
		{"unasked answer", func(peer *net.TCPConn) { peer.Write([]byte("HTTP/1.1 408 Request Timeout\r\n\r\n")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc, peer := memberConnPair(t)
			tc.close(peer)
			waitReadable(t, mc)
			mc.clock.Add(2) // the connection was idle for two ticks
			n, err := mc.Write([]byte("POST / HTTP/1.1\r\n\r\n"))
			if n != 0 || !errors.Is(err, errStaleConn) {
				t.Fatalf("Write = %d, %v; want 0, errStaleConn", n, err)
			}
			if _, retry := memberRetry(nil, 1, err); !retry {
				t.Fatal("memberRetry refuses errStaleConn")
			}
		})
	}
	// A healthy idle connection whose last read deadline passed while it sat in the pool
	// (fasthttp sets the next one after writing) is not stale.
	mc, _ := memberConnPair(t)
	mc.SetReadDeadline(time.Now().Add(-time.Second))
	mc.clock.Add(2)
	if _, err := mc.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatalf("Write on a healthy idle connection past its read deadline = %v, want it kept", err)
	}

	// A connection in use is not checked: no read before its request.
	mc, peer := memberConnPair(t)
	peer.CloseWrite()
	waitReadable(t, mc)
	if _, err := mc.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatalf("Write on a busy connection = %v, want it kept", err)
	}
	if _, retry := memberRetry(nil, 1, io.EOF); retry {
		t.Fatal("memberRetry retries a failure other than a stale connection")
	}
}

// waitReadable waits (bounded) until mc's socket has something to read, without reading
// it: the member's FIN, reset or bytes have arrived.
func waitReadable(t *testing.T, mc *memberConn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ready := false
		mc.rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, _ := unix.Poll(fds, 0)
			ready = n > 0
		})
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing arrived from the peer")
		}
		time.Sleep(time.Millisecond)
	}
}

// A member that shut its sending side after the idle check passed and before the
// answer was awaited: the FIN's readiness is gone with RawConn.Read's reset, so an idle
// connection reads right after sending and sees the end at once, not at the deadline.
func TestMemberConnIdleHalfClosedAfterCheck(t *testing.T) {
	mc, peer := memberConnPair(t)
	mc.clock.Add(2) // the connection was idle for two ticks
	if _, err := mc.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	peer.CloseWrite()
	waitReadable(t, mc)
	// Pacing, not a wait for state: the sleeping test lets the runtime's poller take the
	// FIN's readiness, which the send then resets. The assertion holds however long this is.
	time.Sleep(20 * time.Millisecond)
	mc.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if n, err := mc.Read(make([]byte, 16)); n != 0 || err != io.EOF {
		t.Fatalf("Read = %d, %v after %s; want 0, io.EOF", n, err, time.Since(start))
	}
}

// Writes past one buffer go out in order, also when the socket buffers are full and
// the combined write cannot finish at once.
func TestMemberConnLongWritesInOrder(t *testing.T) {
	mc, peer := memberConnPair(t)
	want := make([]byte, 16<<20) // more than the socket buffers hold while the peer sleeps
	for i := range want {
		want[i] = byte(i % 251)
	}
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // pacing: the writer fills the buffers first; order holds either way
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(want))))
		peer.Write([]byte("ok"))
		got <- b
	}()
	for b := want; len(b) > 0; {
		n := min(len(b), 3000) // chunks that fill and overflow the kept buffer
		if _, err := mc.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(mc, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("answer %q, %v", buf, err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer got %d bytes, not the %d written in order", len(b), len(want))
	}
}

func TestMemberConnEOF(t *testing.T) {
	mc, peer := memberConnPair(t)
	go func() {
		io.ReadFull(peer, make([]byte, 4))
		peer.Close()
	}()
	mc.Write([]byte("ping"))
	if n, err := mc.Read(make([]byte, 16)); n != 0 || err != io.EOF {
		t.Fatalf("Read = %d, %v; want 0, io.EOF", n, err)
	}
}

// A member that closed the connection while it was idle: the request draws a reset,
// which ends the wait at once (no timeout).
func TestMemberConnPeerClosedBeforeRequest(t *testing.T) {
	mc, peer := memberConnPair(t)
	peer.SetLinger(0)
	peer.Close()
	time.Sleep(20 * time.Millisecond) // pacing: the RST is in before the send (it holds either way)
	mc.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	mc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	_, err := mc.Read(make([]byte, 16))
	if err == nil {
		t.Fatal("read from a closed member succeeded")
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("waited for the deadline (%s): %v", time.Since(start), err)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) && err != io.EOF {
		t.Fatalf("error %v, want a reset, broken pipe or EOF", err)
	}
}

func TestMemberConnDeadline(t *testing.T) {
	mc, peer := memberConnPair(t)
	_ = peer
	mc.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	mc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	_, err := mc.Read(make([]byte, 16))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("error %v, want a timeout", err)
	}
}

func TestAllocsMemberConnRoundTrip(t *testing.T) {
	mc, peer := memberConnPair(t)
	go func() { // echo
		buf := make([]byte, 64)
		for {
			n, err := peer.Read(buf)
			if err != nil {
				return
			}
			peer.Write(buf[:n])
		}
	}()
	req := []byte("GET / HTTP/1.1\r\n\r\n")
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		mc.Write(req)
		if _, err := io.ReadFull(mc, buf[:len(req)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocs per round trip, want 0", allocs)
	}
}

// The kept request meets full socket buffers: it goes out the ordinary way, after
// what was queued, and the answer is still read.
func TestMemberConnSendBufferFull(t *testing.T) {
	mc, peer := memberConnPair(t)
	rc, err := mc.Conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	filler := make([]byte, 64<<10)
	queued := 0
	rc.Write(func(fd uintptr) bool { // fill both socket buffers without blocking
		for {
			n, err := syscall.Write(int(fd), filler)
			if err != nil {
				return true
			}
			queued += n
		}
	})
	if queued == 0 {
		t.Fatal("could not queue anything")
	}
	req := []byte("GET / HTTP/1.1\r\n\r\n")
	mc.Write(req)
	got := make(chan int, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // pacing: the send finds the buffers full; the answer comes either way
		b, _ := io.ReadAll(io.LimitReader(peer, int64(queued+len(req))))
		peer.Write([]byte("ok"))
		if bytes.HasSuffix(b, req) {
			got <- len(b)
		} else {
			got <- -1
		}
	}()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(mc, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("answer %q, %v", buf, err)
	}
	if n := <-got; n != queued+len(req) {
		t.Fatalf("peer got %d bytes ending in the request, want %d", n, queued+len(req))
	}
}

// Through the gateway: the member closes every pooled connection when its keep-alive
// timeout passes; the next request, a POST, still reaches it exactly once.
func TestProxyPostAfterMemberClosedIdleConn(t *testing.T) {
	var posts, open atomic.Int64
	ln := listenLoopback(t)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			posts.Add(1)
			time.Sleep(5 * time.Millisecond) // pacing: the burst below opens several connections
			w.Write(append([]byte("got "), b...))
		}),
		IdleTimeout: 50 * time.Millisecond, // the member's keep-alive timeout
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	gw, addr := startGateway(t, gwConfig(gwGroup("fb", "/fb", gwMember("Node1", ln.Addr().String()))), zerolog.Nop())
	c := newHTTPClient(t)
	post := func() error {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/fb/order", strings.NewReader("one book"))
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "got one book" {
			return fmt.Errorf("POST: %d %q", resp.StatusCode, body)
		}
		return nil
	}
	const burst = 20
	errs := make(chan error, burst)
	for range burst {
		go func() { errs <- post() }()
	}
	for range burst {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if open.Load() < 2 {
		t.Logf("the burst opened %d connection(s) only", open.Load())
	}
	waitFor(t, "the member to close every pooled connection", func() bool { return open.Load() == 0 })
	tick := gw.clock.Load()
	waitFor(t, "the connections to count as idle", func() bool { return gw.clock.Load()-tick >= 2 })
	if err := post(); err != nil {
		t.Fatal(err)
	}
	if n := posts.Load(); n != burst+1 {
		t.Fatalf("member saw %d POSTs, want %d", n, burst+1)
	}
}

func TestKindOfStaleConn(t *testing.T) {
	for _, err := range []error{errStaleConn, &net.OpError{Op: "write", Err: errStaleConn}} {
		if k := kindOf(err); k != kindMemberClosed {
			t.Errorf("kindOf(%v) = %s, want %s", err, errKindNames[k], errKindNames[kindMemberClosed])
		}
	}
}
