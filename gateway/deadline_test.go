package gateway

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestDue(t *testing.T) {
	w := newWait(10 * time.Second) // slack 1s
	const s = int64(time.Second)
	// A wait of 10s (slack 1s) that began at 100s: arm 111s unless the armed one lies in
	// [110s (+ a tick when coarse), 111s].
	for _, tc := range []struct {
		name   string
		coarse bool
		armed  int64
		move   bool
	}{
		{"none armed", true, 0, true},
		{"armed fits", true, 110*s + s/2, false},
		{"armed too early for the ticker's lag", true, 110*s + s/20, true},
		{"armed too late", true, 112 * s, true},
		{"exact clock: no lag", false, 110*s + s/20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at, move := connClock{coarse: tc.coarse}.due(tc.armed, 100*s, &w)
			if move != tc.move || (move && at != 111*s) {
				t.Errorf("due(%d, 100s) = %d, %v; want move %v (to 111s)", tc.armed, at, move, tc.move)
			}
		})
	}
	if _, move := (connClock{coarse: true}).due(0, 100*s, &wait{}); move {
		t.Errorf("due of no timeout with none armed moves, want not")
	}
	if at, move := (connClock{coarse: true}).due(5*s, 100*s, &wait{}); !move || at != 0 {
		t.Errorf("due of no timeout with one armed = %d, %v; want 0 (cleared), true", at, move)
	}
}

func TestSlack(t *testing.T) {
	for _, tc := range []struct{ d, want time.Duration }{
		{300 * time.Millisecond, 37500 * time.Microsecond},
		{8 * time.Second, time.Second},
		{90 * time.Second, time.Second},
	} {
		if got := slackOf(tc.d); got != tc.want {
			t.Errorf("slackOf(%v) = %v, want %v", tc.d, got, tc.want)
		}
	}
	clock := newTicker()
	defer clock.Stop()
	if c := newConnClock(clock, 10*time.Second, 0, 90*time.Second); !c.coarse {
		t.Errorf("newConnClock(10s, 0, 90s): exact clock, want coarse")
	}
	if c := newConnClock(clock, 10*time.Second, 300*time.Millisecond); c.coarse {
		t.Errorf("newConnClock(10s, 300ms): coarse, want the exact clock")
	}
}

// deadlineConn counts the deadlines set on it and answers each Read with a request.
type deadlineConn struct {
	net.Conn
	reads, writes int
	rd, wd        time.Time
	req           []byte
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error  { c.reads++; c.rd = t; return nil }
func (c *deadlineConn) SetWriteDeadline(t time.Time) error { c.writes++; c.wd = t; return nil }
func (c *deadlineConn) Read(p []byte) (int, error)         { return copy(p, c.req), nil }
func (c *deadlineConn) Write(p []byte) (int, error)        { return len(p), nil }

// TestClientConnDeadlines serves many requests on one kept client connection: the
// deadlines are set once, not per request, and each lies within its timeout and slack.
func TestClientConnDeadlines(t *testing.T) {
	clock := newTicker()
	defer clock.Stop()
	const header, read, write, idle = 10 * time.Second, 30 * time.Second, 60 * time.Second, 90 * time.Second
	w := newClientWaits(clock, header, read, write, idle)
	dc := &deadlineConn{req: []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")}
	c := newClientConn(dc)
	c.keep(w)
	check := func(what string, got time.Time, d time.Duration) {
		t.Helper()
		now := time.Now()
		if lo, hi := now.Add(d-clockTick-50*time.Millisecond), now.Add(d+slackOf(d)); got.Before(lo) || got.After(hi) {
			t.Errorf("%s deadline %v from now, want %v to %v", what, got.Sub(now), d, d+slackOf(d))
		}
	}
	buf := make([]byte, 4096)
	const requests = 200
	for i := range requests {
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			check("first request's head", dc.rd, header)
		}
		if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		clientConnState(c, fasthttp.StateIdle)
	}
	check("idle", dc.rd, idle)
	check("write", dc.wd, write)
	// The first request's head deadline, then the idle one: two; one write deadline.
	// A tick passing may add one of each.
	if dc.reads > 3 || dc.writes > 2 {
		t.Errorf("%d requests set %d read and %d write deadlines, want about 2 and 1", requests, dc.reads, dc.writes)
	}

	// A head in two reads: the second waits under header_timeout from its first byte,
	// and a body after it under read_timeout.
	dc.req = []byte("POST / HTTP/1.1\r\nHost: a\r\n")
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	dc.req = []byte("Content-Length: 4\r\n\r\n")
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	check("head", dc.rd, header)
	dc.req = []byte("body")
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	check("body", dc.rd, read)
}
