package gateway

import "time"

// Coarse deadlines. fasthttp's server and client set a read or write deadline on every
// request on both sides (server and client read_timeout, write_timeout, idle_timeout),
// each with a clock read and a change of a runtime timer: five deadlines per proxied
// request, 1.5% of the gateway's CPU in BenchmarkProxy and more in the pinned bench.
// The gateway sets those timeouts itself instead, in the connection wrappers
// (clientConn, memberConn), and moves a deadline only when the one armed does not
// already fit: a timeout d is armed as d plus a slack, so that the requests of the next
// slack on a kept connection find it still good and set nothing. The decision reads
// the Server's ticker (updated every clockTick) instead of the clock.
//
// What a timeout promises then: never less than d, at most d plus its slack, which is
// d/8 and at most a second (slackOf). A timeout shorter than minCoarse has too little
// slack to hide the ticker's lag, and reads the clock instead (tests; a config with
// sub-second timeouts): still one deadline set per slack, not one per request.

// clockTick is the period of the Server's ticker.
const clockTick = 100 * time.Millisecond

// minCoarse is the shortest timeout whose slack (d/8) is at least two ticks.
const minCoarse = 16 * clockTick

// wait is one timeout of a connection and what it takes to keep it coarsely.
type wait struct {
	d     time.Duration // the timeout; 0: none
	slack time.Duration // how much later than d it may end
}

func newWait(d time.Duration) wait { return wait{d: d, slack: slackOf(d)} }

// slackOf is a timeout's granularity: d/8, at most a second.
func slackOf(d time.Duration) time.Duration { return min(d/8, time.Second) }

// connClock is the clock of a set of waits: the ticker's, when every wait is long
// enough for it (coarse), or the clock itself.
type connClock struct {
	t      *ticker
	coarse bool
}

// newConnClock returns the clock for waits ds (zero ones aside).
func newConnClock(t *ticker, ds ...time.Duration) connClock {
	coarse := true
	for _, d := range ds {
		if d > 0 && d < minCoarse {
			coarse = false
		}
	}
	return connClock{t: t, coarse: coarse}
}

// now is the time on the ticker's scale (nanoseconds since its start): the last tick's
// when coarse, so up to a tick behind, or the clock read now.
func (c connClock) now() int64 {
	if c.coarse {
		return c.t.coarse()
	}
	return c.t.exact()
}

// due reports whether a deadline armed at armed (ticker scale; 0: none) must move for
// a wait w that began at start (read with now), and where to: start + d + slack. The
// armed one is kept when it lies in [start + d (+ a tick when coarse: start may be that
// far behind), start + d + slack]. It does not allocate.
func (c connClock) due(armed, start int64, w *wait) (int64, bool) {
	if w.d <= 0 {
		return 0, armed != 0
	}
	lo := start + int64(w.d)
	if c.coarse {
		lo += int64(clockTick)
	}
	hi := start + int64(w.d+w.slack)
	if armed >= lo && armed <= hi {
		return 0, false
	}
	return hi, true
}

// deadline is a ticker-scale instant as a time.Time for SetReadDeadline; 0 is none.
func (c connClock) deadline(at int64) time.Time {
	if at == 0 {
		return time.Time{}
	}
	return c.t.base.Add(time.Duration(at))
}
