//go:build linux

package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
)

// Review of the epoll data path (loop_linux.go): each test shows a defect. Where the
// fasthttp data path behaves as it should on the same input, the test runs on both
// (subtests "fasthttp" and "epoll"): the fasthttp one passes, the epoll one fails.

// reviewDataplanes are the data paths a comparing test runs on. With
// SESSIONGATE_TEST_DATAPLANE set, withDataplane puts every listener on that path, so
// the reference run would not be one: it is skipped then.
var reviewDataplanes = []string{config.DataplaneFasthttp, config.DataplaneEpoll}

// reviewConfig is gwConfig with one plain listener on data path dp.
func reviewConfig(dp string, groups ...config.Group) *config.Config {
	cfg := gwConfig(groups...)
	cfg.Listeners = []config.Listener{{Address: "127.0.0.1:0", Dataplane: dp}}
	return cfg
}

// onEachDataplane runs f once per data path, as subtests named after it.
func onEachDataplane(t *testing.T, f func(t *testing.T, dp string)) {
	for _, dp := range reviewDataplanes {
		t.Run(dp, func(t *testing.T) {
			if dp != config.DataplaneEpoll && testDataplane != "" && testDataplane != dp {
				t.Skipf("SESSIONGATE_TEST_DATAPLANE=%s puts this listener on that path", testDataplane)
			}
			f(t, dp)
		})
	}
}

// readClosed reports whether the peer closes c within d without sending anything more.
func readClosed(c net.Conn, br *bufio.Reader, d time.Duration) (closed bool, extra string) {
	c.SetReadDeadline(time.Now().Add(d))
	b, err := br.ReadByte()
	if err == nil {
		rest, _ := br.Peek(br.Buffered())
		return false, string(b) + string(rest)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, ""
	}
	return true, "" // EOF, or a reset
}

// 1. A client that sent "Connection: close" and whose request fails at the member
// (here: the member refuses, 502) keeps its connection on the loop, and the 502 does
// not say "Connection: close". prepareRequest (in begin) resets the request's
// Connection: close, so closing() (loop_linux.go, cconn.closing) no longer sees it for
// an answer of the gateway's own after begin; fasthttp's server notes it before the
// handler runs. So a request pipelined after the one that asked to close is served,
// where fasthttp's path closes: it should answer 502 with Connection: close and close.
func TestReviewLoopConnectionCloseAfterFailure(t *testing.T) {
	onEachDataplane(t, func(t *testing.T, dp string) {
		cfg := reviewConfig(dp, gwGroup("g", "/", gwMember("dead", closedAddr(t))))
		_, addr := startGateway(t, cfg, zerolog.Nop())
		c := dialRaw(t, addr)
		c.conn.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
		io.WriteString(c.conn, "GET /a HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"+
			"GET /b HTTP/1.1\r\nHost: app\r\n\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
		if !resp.Close {
			t.Errorf("the 502 to a request with Connection: close has no Connection: close (header %q)", resp.Header.Get("Connection"))
		}
		if closed, extra := readClosed(c.conn, c.br, scaled(2*time.Second)); !closed {
			t.Errorf("the connection stays open after a request with Connection: close (then sent %q)", trimForLog(extra))
		}
	})
}

// 2. server.max_header_bytes is not enforced on the loop for a head that arrives in
// one read and fits the loop's buffer: with max_header_bytes 2048, a 3000-byte head is
// served (200) where fasthttp's path answers 431. parse (cHead) checks the limit only
// when no CRLFCRLF was found (`if i < 0 { if len(data) >= MaxHeaderBytes`), and the
// head parser reads through a bufio.Reader of max(max_header_bytes, 8192)+4 bytes
// (newLoop), so any head up to 8196 bytes passes when max_header_bytes is below 8192;
// on a keep-alive connection whose buffer grew for an earlier body the same holds for
// every limit below 8192. It should answer 431 for a head longer than
// max_header_bytes, as fasthttp's path does (ReadBufferSize: MaxHeaderBytes).
func TestReviewLoopHeadLimit(t *testing.T) {
	onEachDataplane(t, func(t *testing.T, dp string) {
		m1 := startFastMember(t, loopEchoMember("n1"))
		cfg := reviewConfig(dp, gwGroup("g", "/", gwMember("n1", m1)))
		cfg.Server.MaxHeaderBytes = 2048
		_, addr := startGateway(t, cfg, zerolog.Nop())
		raw := "GET /x HTTP/1.1\r\nHost: app\r\nX-Big: " + strings.Repeat("a", 3000) + "\r\n\r\n"
		if resp, _ := rawRoundTrip(t, addr, raw); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("a 3000-byte head with max_header_bytes 2048: %d, want 431", resp.StatusCode)
		}
	})
}

// 3. A consequence of 2: a head longer than max_header_bytes with a body the loop
// buffers (Content-Length up to the retry buffer) can pass inLimit
// (max_header_bytes + retry buffer + 4), and fill then closes the connection without
// an answer ("cannot happen: a head and a body the loop serves fit (inLoop)"). Here
// max_header_bytes 2048, retry_buffer 4096: a 3000-byte head with a 4096-byte body
// gets no answer at all. It should get 431 (fasthttp's path), never a silent close.
func TestReviewLoopHeadAndBodyPastBuffer(t *testing.T) {
	onEachDataplane(t, func(t *testing.T, dp string) {
		m1 := startFastMember(t, loopEchoMember("n1"))
		cfg := reviewConfig(dp, gwGroup("g", "/", gwMember("n1", m1)))
		cfg.Server.MaxHeaderBytes = 2048
		cfg.Retry.RetryBuffer = 4096
		cfg.Server.BufferBodyBytes = 4096
		_, addr := startGateway(t, cfg, zerolog.Nop())
		c := dialRaw(t, addr)
		c.conn.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
		io.WriteString(c.conn, "POST /x HTTP/1.1\r\nHost: app\r\nX-Big: "+strings.Repeat("a", 3000)+
			"\r\nContent-Length: 4096\r\n\r\n"+strings.Repeat("b", 4096))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d, want 431", resp.StatusCode)
		}
	})
}

// shutdownAsync starts s.Shutdown and waits until the listening socket refuses new
// connections (the loops have stopped accepting and the listeners are closed).
func shutdownAsync(t *testing.T, s *Server, addr string) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(scaled(5 * time.Second)) }()
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	return done
}

// 4. A request whose head is still coming in when Shutdown begins, and that the loop
// then hands over (here HTTP/1.0), gets no answer: handoff delivers the connection to
// fasthttp's server, whose listener Shutdown has closed, and deliver's failure closes
// it (loop_linux.go, handoff: `if !c.ll.h1.deliver(cc) { cc.Close() }`). A request the
// loop serves itself in the same situation is answered (with Connection: close). A
// request under way at Shutdown should be answered whichever path serves it.
func TestReviewLoopHandoffDuringShutdown(t *testing.T) {
	onEachDataplane(t, func(t *testing.T, dp string) {
		m1 := startFastMember(t, loopEchoMember("n1"))
		s, addr := startGateway(t, reviewConfig(dp, gwGroup("g", "/", gwMember("n1", m1))), zerolog.Nop())
		c := dialRaw(t, addr)
		c.conn.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
		io.WriteString(c.conn, "GET /x HTTP/1.0\r\nHost: app\r\n")
		// The first bytes of a head are in: the connection is no idle one. (A round trip
		// on another connection makes sure the gateway has read them.)
		if resp, _ := rawRoundTrip(t, addr, "GET /y HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("another request: %d", resp.StatusCode)
		}
		done := shutdownAsync(t, s, addr)
		io.WriteString(c.conn, "\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Errorf("a request under way at Shutdown got no answer: %v", err)
		} else if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !strings.Contains(string(body), "uri=/x") {
			t.Errorf("a request under way at Shutdown: %d %q", resp.StatusCode, body)
		}
		if err := <-done; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
}

// 5. A second Shutdown (a second signal, or startGateway's cleanup after a test's own
// Shutdown) waits out its whole timeout on the epoll path: stopAccepting posts stop to
// every loop and waits for each to acknowledge, but the loops have ended and no longer
// read their mail (post to an ended loop is never run), so it returns only when the
// context is done. fasthttp's path returns at once. stopAccepting (and addListener,
// which waits on the same kind of reply) should not wait on loops that have ended.
func TestReviewLoopSecondShutdown(t *testing.T) {
	onEachDataplane(t, func(t *testing.T, dp string) {
		m1 := startFastMember(t, loopEchoMember("n1"))
		s, addr := startGateway(t, reviewConfig(dp, gwGroup("g", "/", gwMember("n1", m1))), zerolog.Nop())
		if resp, _ := rawRoundTrip(t, addr, "GET /y HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("a request: %d", resp.StatusCode)
		}
		if err := s.Shutdown(scaled(5 * time.Second)); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		start := time.Now()
		s.Shutdown(3 * time.Second) //nolint:errcheck // only its duration matters
		if d := time.Since(start); d > scaled(time.Second) {
			t.Errorf("a second Shutdown took %v (its timeout was 3s), want it to return at once", d)
		}
	})
}

// 6. client.max_conns is split evenly between the loops and rounded up to one per
// loop (memberConn: `max(1, limit/len(l.all.ls))`), so a member gets up to one
// connection per loop however low the limit: with client.max_conns 1 and GOMAXPROCS
// loops, requests on different loops reach the member at once. (And a limit that does
// not divide by the loops is cut: 3 on 2 loops allows 2, and a loop whose share is in
// use makes a request wait, then fail after dial_timeout, while the member has room.)
// The limit should hold for the member as a whole. The test runs 8 loops and 8
// concurrent requests, in up to 5 rounds, to a member that holds each for 100ms.
func TestReviewLoopMemberMaxConns(t *testing.T) {
	onEachDataplane(t, func(t *testing.T, dp string) {
		var mu sync.Mutex
		open, peak := 0, 0
		member := startHTTPMember(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			open++
			peak = max(peak, open)
			mu.Unlock()
			deadline := time.Now().Add(100 * time.Millisecond)
			for time.Now().Before(deadline) { // the member's pace: it holds the request a while
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			open--
			mu.Unlock()
			io.WriteString(w, "ok")
		}))
		cfg := reviewConfig(dp, gwGroup("g", "/", gwMember("n1", member)))
		cfg.Client.MaxConns = 1
		cfg.Client.DialTimeout = 10 * time.Second // requests wait their turn rather than fail
		prev := runtime.GOMAXPROCS(8)
		_, addr := startGateway(t, cfg, zerolog.Nop())
		runtime.GOMAXPROCS(prev)
		// Which loop accepts a connection is the kernel's choice (EPOLLEXCLUSIVE): a few
		// rounds make it all but certain that two loops serve the member at once.
		for round := 0; round < 5 && peak <= 1; round++ {
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.Dial("tcp", addr)
					if err != nil {
						t.Errorf("dial: %v", err)
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(scaled(10 * time.Second)))
					io.WriteString(c, "GET /"+strconv.Itoa(i)+" HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
					io.Copy(io.Discard, c)
				}()
			}
			wg.Wait()
		}
		if peak > 1 {
			t.Errorf("with client.max_conns 1 the member had %d requests at once", peak)
		}
	})
}

// 7. On a new connection, server.header_timeout counts from the first byte of the
// head on the loop, not from the accept: parse moves cIdle to cHead with
// `c.st, c.since = cHead, c.l.now` for the first request too, and sweepClient then
// measures cHead from there. A client that waits almost header_timeout before its first
// byte gets almost twice header_timeout for its head (a slowloris holds a connection
// twice as long). fasthttp's path counts the first head from the accept (clientConn.keep,
// first). The first request's head should count from the accept.
func TestReviewLoopHeaderTimeoutFromAccept(t *testing.T) {
	onEachDataplane(t, func(t *testing.T, dp string) {
		m1 := startFastMember(t, loopEchoMember("n1"))
		cfg := reviewConfig(dp, gwGroup("g", "/", gwMember("n1", m1)))
		cfg.Server.HeaderTimeout = time.Second
		_, addr := startGateway(t, cfg, zerolog.Nop())
		c := dialRaw(t, addr)
		start := time.Now()
		c.conn.SetDeadline(start.Add(scaled(5 * time.Second)))
		time.Sleep(900 * time.Millisecond) // the client's pace: its first byte comes late
		io.WriteString(c.conn, "GET /x HTTP/1.1\r\n")
		io.Copy(io.Discard, c.conn) // until the gateway answers 408 and closes
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("a head begun 900ms after the accept was cut %v after it, want about header_timeout (1s)", d)
		}
	})
}

// 8. server.write_timeout ("bounds writing one whole response") does not bound an
// answer the member sends slowly: sweepClient checks it only while the client has not
// taken what was sent (`c.pending() && over(now, c.wsince, w.write.d)`), so an answer
// that trickles from the member (each piece within client.read_timeout) is relayed
// for as long as the member goes on. fasthttp's path cuts it at write_timeout from the
// answer's first write (clientConn.Write). Here write_timeout is 1s and the member
// sends a piece every 100ms for 3s: the answer should end (cut) at about 1s.
func TestReviewLoopWriteTimeoutSlowMember(t *testing.T) {
	onEachDataplane(t, func(t *testing.T, dp string) {
		member := startHTTPMember(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < 30; i++ {
				io.WriteString(w, "piece;")
				w.(http.Flusher).Flush()
				time.Sleep(100 * time.Millisecond) // the member's pace
			}
		}))
		cfg := reviewConfig(dp, gwGroup("g", "/", gwMember("n1", member)))
		cfg.Server.WriteTimeout = time.Second
		_, addr := startGateway(t, cfg, zerolog.Nop())
		c := dialRaw(t, addr)
		c.conn.SetDeadline(time.Now().Add(scaled(10 * time.Second)))
		start := time.Now()
		io.WriteString(c.conn, "GET /stream HTTP/1.1\r\nHost: app\r\n\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("a 3s answer with write_timeout 1s ran %v, want it cut at about 1s", d)
		}
	})
}

// blackholeAddr is a loopback address that takes no connection: a listening socket
// with a backlog of 0 that never accepts, its one queue place taken, so that a
// connect to it hangs (SYNs dropped) rather than being refused.
func blackholeAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatalf("listen: %v", err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := tcpAddrOf(sa).String()
	for range 4 { // fill the queue; later connects hang
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return addr
}

// 9. A member whose connect does not complete within client.dial_timeout gets 502 on
// the loop and 504 on fasthttp's path. sweep fails an mConnecting connection with
// fasthttp.ErrDialTimeout (`case mConnecting: ... x.fail(fasthttp.ErrDialTimeout)`),
// which kindOf maps to kindConnect (502), while fasthttp's path's memberDialer
// reports a net timeout (504). The two paths should answer alike. (kindOf's
// comment means a dial timeout to be a connect failure, so the fix may as well be on
// fasthttp's path; the test takes fasthttp's path's answer, 504, as the reference.)
func TestReviewLoopDialTimeoutStatus(t *testing.T) {
	onEachDataplane(t, func(t *testing.T, dp string) {
		cfg := reviewConfig(dp, gwGroup("g", "/", gwMember("n1", blackholeAddr(t))))
		cfg.Client.DialTimeout = 500 * time.Millisecond
		_, addr := startGateway(t, cfg, zerolog.Nop())
		// A connect past dial_timeout is a connect failure (kindOf: fasthttp.ErrDialTimeout),
		// 502. fasthttp's path answers 504 when its dialer reports the deadline as a net
		// timeout instead, which depends on timing (seen under -race): it may answer either.
		resp, _ := rawRoundTrip(t, addr, "GET /x HTTP/1.1\r\nHost: app\r\n\r\n")
		if want := http.StatusBadGateway; resp.StatusCode != want && !(dp == config.DataplaneFasthttp && resp.StatusCode == http.StatusGatewayTimeout) {
			t.Errorf("a member whose connect times out: %d, want %d", resp.StatusCode, want)
		}
	})
}
