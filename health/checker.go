package health

import (
	"container/heap"
	"crypto/tls"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// Check is one group's active check settings.
type Check struct {
	// Path is requested with GET; "" means no active check (always healthy).
	Path string
	// Interval between two checks of a healthy member; UnhealthyInterval (used when
	// shorter) while it is unhealthy, so that it comes back sooner.
	Interval, UnhealthyInterval time.Duration
	// Timeout of one check.
	Timeout time.Duration
	// Jitter lengthens each interval by a random part of up to Jitter.
	Jitter time.Duration
	// Rise passing checks in a row make a member healthy; Fall failing ones unhealthy.
	Rise, Fall int
	// StatusLo-StatusHi is the range of passing status codes.
	StatusLo, StatusHi int
	// HostValue is the Host header sent; "" sends the member address.
	HostValue string
	// StartUnhealthy makes a newly seen member wait for Rise passing checks.
	StartUnhealthy bool
}

// Passive is a group's ejection on failures of real requests.
type Passive struct {
	// Failures in a row eject a member; 0 turns passive ejection off.
	Failures int
	// Eject5xx counts 5xx answers (Status5xx) as failures; without it they are successes.
	Eject5xx bool
	// Ejection is the first ejection's length without active checks; it doubles with
	// each ejection in a row, up to MaxEjection.
	Ejection, MaxEjection time.Duration
}

// Target is one member to watch.
type Target struct {
	Group, Member, Addr string
	State               *router.MemberState
	// Peers are the states of every member of the group, this one included, so that
	// passive ejection never takes out the last usable one.
	Peers        []*router.MemberState
	Check        Check
	Passive      Passive
	DrainTimeout time.Duration
	// TLS, when set, makes checks HTTPS with this client config (the one the member's
	// requests use); nil checks in plain HTTP. A reload that keeps the same config
	// (the same pointer) keeps the member's check running.
	TLS *tls.Config
}

// Result is the latest outcome of a member's active checks, for the admin API.
type Result struct {
	At      time.Time
	OK      bool
	Status  int    // HTTP status, 0 when none came back
	Reason  string // why it failed, "" when OK
	Latency time.Duration
}

// Checker watches members: one scheduler goroutine runs every active check (through
// a small pool of workers), expires passive ejections and drain deadlines, and rotates
// the bound-session windows. Update says what to watch; Stop ends it.
type Checker struct {
	log    zerolog.Logger
	window time.Duration

	mu      sync.Mutex
	members map[string]*watched // by member id
	// byState is members by state, republished by Update, for Observe to read unlocked.
	byState atomic.Pointer[map[*router.MemberState]*watched]
	onOut   atomic.Pointer[func(*router.MemberState)] // SetOnOut
	// ejectMu makes "count the usable peers, then eject" one step, so that two members
	// failing at once cannot both be ejected past the last usable one.
	ejectMu sync.Mutex
	seen    map[string]bool    // member ids ever watched: the start state applies once
	counts  map[string]*counts // by member id, kept when a member stops being watched

	jobs   chan *watched
	done   chan *watched
	wake   chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	rotate time.Time
}

// watched is one member under watch. Fields after mu are guarded by it.
type watched struct {
	// passive is t.Passive, readable without mu by Observe.
	passive atomic.Pointer[Passive]
	t       Target
	client  *fasthttp.HostClient
	log     zerolog.Logger
	n       *counts // the member id's counters, shared with the watched it replaced

	mu           sync.Mutex
	gone         bool
	due          time.Time
	index        int // in the scheduler's heap, -1 when not in it
	okRun        int
	failRun      int
	last         Result
	ejections    int       // ejections in a row, for the back-off
	ejectedUntil time.Time // without active checks: when the ejection ends
	lastEjection time.Time
}

// Counts are a member's health counters since the process started, for metrics. They
// belong to the member id: a reload that changes the member's check keeps them.
type Counts struct {
	// OK and Fail count active check results.
	OK, Fail uint64
	// Up counts transitions to up: passing checks after being down, an ejection that
	// ended (timed out or an active check passed), an active check removed by a reload.
	Up uint64
	// Down counts transitions to down (failed active checks), Ejected passive ejections.
	Down, Ejected uint64
}

// counts holds a member id's Counts, updated as results and transitions are observed.
type counts struct {
	ok, fail, up, down, ejected atomic.Uint64
}

// maintenance is how often ejections, drains and windows are looked at.
const maintenance = 100 * time.Millisecond

// New starts a Checker that watches nothing yet. window is the bound-session window.
func New(log zerolog.Logger, window time.Duration) *Checker {
	c := &Checker{
		log:     log.With().Str("component", "health").Logger(),
		window:  window,
		members: map[string]*watched{},
		seen:    map[string]bool{},
		counts:  map[string]*counts{},
		jobs:    make(chan *watched, 64),
		done:    make(chan *watched, 64),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		rotate:  time.Now(),
	}
	const workers = 8
	for range workers {
		c.wg.Add(1)
		go c.worker()
	}
	c.wg.Add(1)
	go c.schedule()
	return c
}

// Update makes the Checker watch exactly ts. Members that stay (same id, address and
// settings) keep their counters; a member seen for the first time starts unhealthy
// when its check says so; a member without an active check is marked healthy.
func (c *Checker) Update(ts []Target) {
	c.mu.Lock()
	keep := map[string]bool{}
	for _, t := range ts {
		keep[t.Member] = true
		if w, ok := c.members[t.Member]; ok {
			w.mu.Lock()
			same := w.t.Addr == t.Addr && w.t.Check == t.Check && w.t.State == t.State && w.t.TLS == t.TLS
			w.t.Peers, w.t.Passive, w.t.DrainTimeout = t.Peers, t.Passive, t.DrainTimeout
			w.mu.Unlock()
			p := t.Passive
			w.passive.Store(&p)
			if same {
				continue
			}
			c.retire(w)
		}
		w := c.newWatched(t)
		if old, ok := c.members[t.Member]; ok {
			old.mu.Lock()
			w.ejections, w.ejectedUntil, w.lastEjection = old.ejections, old.ejectedUntil, old.lastEjection
			old.mu.Unlock()
		}
		// An ejection must always have a way to end: a passing active check or, without
		// one, a timer (also for a member that left and came back).
		if t.State.Ejected() && t.Check.Path == "" && w.ejectedUntil.IsZero() {
			w.ejectedUntil = time.Now().Add(max(t.Passive.Ejection, time.Second))
		}
		c.members[t.Member] = w
		first := !c.seen[t.Member]
		c.seen[t.Member] = true
		switch {
		case t.Check.Path == "":
			if t.State.SetHealthy(true) {
				w.n.up.Add(1)
				w.log.Info().Str("from", "down").Str("to", "up").Str("reason", "active check removed").Msg("member health changed")
			}
		case first && t.Check.StartUnhealthy:
			t.State.SetHealthy(false)
		}
	}
	for id, w := range c.members {
		if !keep[id] {
			c.retire(w)
			delete(c.members, id)
		}
	}
	byState := make(map[*router.MemberState]*watched, len(c.members))
	for _, w := range c.members {
		byState[w.t.State] = w
	}
	c.byState.Store(&byState)
	c.mu.Unlock()
	c.poke()
}

// newWatched builds the watch of t; c.mu is held.
func (c *Checker) newWatched(t Target) *watched {
	n, ok := c.counts[t.Member]
	if !ok {
		n = &counts{}
		c.counts[t.Member] = n
	}
	w := &watched{t: t, n: n, index: -1, log: c.log.With().Str("group", t.Group).Str("member", t.Member).Logger()}
	p := t.Passive
	w.passive.Store(&p)
	if t.Check.Path != "" {
		timeout := t.Check.Timeout
		// With TLS, fasthttp does the handshake after Dial, bounded by WriteTimeout (the
		// check's timeout), and the check's DoTimeout bounds it all.
		w.client = &fasthttp.HostClient{
			Addr:                      t.Addr,
			IsTLS:                     t.TLS != nil,
			TLSConfig:                 t.TLS,
			Dial:                      func(addr string) (net.Conn, error) { return fasthttp.DialTimeout(addr, timeout) },
			MaxConns:                  1,
			MaxIdemponentCallAttempts: 1,
			ReadTimeout:               timeout,
			WriteTimeout:              timeout,
			MaxIdleConnDuration:       2 * t.Check.Interval,
			NoDefaultUserAgentHeader:  true,
			Name:                      "sessiongate-health",
		}
		// Spread the first checks over a tenth of an interval (at most a second) so
		// that members are not probed in step.
		spread := min(t.Check.Interval/10, time.Second)
		w.due = time.Now().Add(time.Duration(rand.Int64N(int64(spread) + 1)))
	}
	return w
}

// retire stops watching w; a check in flight finishes and is dropped.
func (c *Checker) retire(w *watched) {
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	if w.client != nil {
		w.client.CloseIdleConnections()
	}
}

func (c *Checker) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Last returns the latest active check result of a member, if it has been checked.
func (c *Checker) Last(member string) (Result, bool) {
	c.mu.Lock()
	w, ok := c.members[member]
	c.mu.Unlock()
	if !ok {
		return Result{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, !w.last.At.IsZero()
}

// Counts returns the health counters of a member id (zero if it was never watched).
func (c *Checker) Counts(member string) Counts {
	c.mu.Lock()
	n, ok := c.counts[member]
	c.mu.Unlock()
	if !ok {
		return Counts{}
	}
	return Counts{OK: n.ok.Load(), Fail: n.fail.Load(), Up: n.up.Load(), Down: n.down.Load(), Ejected: n.ejected.Load()}
}

// Stop ends the scheduler and the workers and waits for them.
func (c *Checker) Stop() {
	c.once.Do(func() { close(c.stop) })
	c.wg.Wait()
	c.mu.Lock()
	for _, w := range c.members {
		c.retire(w)
	}
	c.mu.Unlock()
}

// dueHeap orders watched members by their next check.
type dueHeap []*watched

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *dueHeap) Push(x any)        { w := x.(*watched); w.index = len(*h); *h = append(*h, w) }
func (h *dueHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	w.index = -1
	*h = old[:len(old)-1]
	return w
}

// schedule is the one scheduler: it hands due checks to the workers and runs the
// periodic maintenance.
func (c *Checker) schedule() {
	defer c.wg.Done()
	var h dueHeap
	timer := time.NewTimer(maintenance)
	defer timer.Stop()
	for {
		// Take in members that are new since the last round.
		c.mu.Lock()
		for _, w := range c.members {
			if w.client != nil && w.index == -1 { // neither queued nor in flight
				heap.Push(&h, w)
			}
		}
		c.mu.Unlock()
		now := time.Now()
		for h.Len() > 0 && !h[0].due.After(now) {
			w := heap.Pop(&h).(*watched)
			if w.isGone() {
				continue
			}
			w.setInFlight(true)
			select {
			case c.jobs <- w:
			case <-c.stop:
				return
			}
		}
		c.maintain(now)
		next := maintenance
		if h.Len() > 0 {
			next = min(next, time.Until(h[0].due))
		}
		timer.Reset(max(next, time.Millisecond))
		select {
		case <-c.stop:
			return
		case <-timer.C:
		case <-c.wake:
		case w := <-c.done:
			w.setInFlight(false)
			if !w.isGone() {
				heap.Push(&h, w)
			}
		}
	}
}

func (w *watched) isGone() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone
}

// setInFlight marks (index -2) or clears (-1) that a worker holds the member; only
// the scheduler touches index.
func (w *watched) setInFlight(on bool) {
	if on {
		w.index = -2
	} else {
		w.index = -1
	}
}

func (c *Checker) worker() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case w := <-c.jobs:
			r := w.probe()
			w.observe(c, r)
			select {
			case c.done <- w:
			case <-c.stop:
				return
			}
		}
	}
}

func (w *watched) probe() Result {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(w.t.Check.Path)
	host := w.t.Check.HostValue
	if host == "" {
		host = w.t.Addr
	}
	req.Header.SetHost(host)
	req.UseHostHeader = true // as given, not the parsed (lower-cased) host
	if w.t.TLS != nil {
		req.URI().SetScheme("https") // the HostClient refuses a scheme not its own
	}
	resp.SkipBody = true
	start := time.Now()
	err := w.client.DoTimeout(req, resp, w.t.Check.Timeout)
	r := Result{At: start, Latency: time.Since(start)}
	switch code := resp.StatusCode(); {
	case err != nil:
		r.Reason = err.Error()
	case code < w.t.Check.StatusLo || code > w.t.Check.StatusHi:
		r.Status = code
		r.Reason = "status " + strconv.Itoa(code)
	default:
		r.Status = code
		r.OK = true
	}
	return r
}

// observe applies the rise/fall thresholds to one result, logs a transition once,
// and sets the next check time (sooner while unhealthy, plus jitter).
func (w *watched) observe(c *Checker, r Result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = r
	st := w.t.State
	ck := &w.t.Check
	if r.OK {
		w.n.ok.Add(1)
		w.okRun++
		w.failRun = 0
		if w.okRun >= ck.Rise && st.SetHealthy(true) {
			w.n.up.Add(1)
			w.log.Info().Str("from", "down").Str("to", "up").
				Str("reason", "passed "+strconv.Itoa(w.okRun)+" checks").Msg("member health changed")
		}
		if st.Healthy() && st.SetEjected(false) {
			w.n.up.Add(1)
			w.log.Info().Str("from", "ejected").Str("to", "up").Str("reason", "active check passed").Msg("member ejection ended")
		}
	} else {
		w.n.fail.Add(1)
		w.failRun++
		w.okRun = 0
		if w.failRun >= ck.Fall && st.SetHealthy(false) {
			w.n.down.Add(1)
			w.log.Warn().Str("from", "up").Str("to", "down").Str("reason", r.Reason).
				Int("failed_checks", w.failRun).Msg("member health changed")
			c.out(st)
		}
	}
	interval := ck.Interval
	if !st.Healthy() && ck.UnhealthyInterval > 0 {
		interval = min(interval, ck.UnhealthyInterval)
	}
	if ck.Jitter > 0 {
		interval += time.Duration(rand.Int64N(int64(ck.Jitter) + 1))
	}
	w.due = time.Now().Add(interval)
}

// maintain ends timed ejections, expires drains and rotates bound-session windows.
func (c *Checker) maintain(now time.Time) {
	rotate := c.window > 0 && now.Sub(c.rotate) >= c.window
	if rotate {
		c.rotate = now
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.members {
		st := w.t.State
		if rotate {
			st.RotateSessions()
		}
		w.mu.Lock()
		if !w.ejectedUntil.IsZero() && now.After(w.ejectedUntil) {
			w.ejectedUntil = time.Time{}
			if st.SetEjected(false) {
				w.n.up.Add(1)
				w.log.Info().Str("from", "ejected").Str("to", "up").Str("reason", "ejection time over").Msg("member ejection ended")
			}
		}
		if st.Admin() == router.AdminDrain && !st.DrainExpired() && w.t.DrainTimeout > 0 &&
			now.Sub(st.DrainSince()) >= w.t.DrainTimeout && st.SetDrainExpired(true) {
			w.log.Warn().Float64("drain_timeout_ms", ms(w.t.DrainTimeout)).Int("bound_sessions", st.BoundSessions()).
				Msg("member drain deadline passed: its sessions move")
		}
		w.mu.Unlock()
	}
}

// SetOnOut sets what is called, once, when active checks mark a member down (not on a
// passive ejection, which one slow endpoint can cause): the gateway ends the requests
// in flight on it there, so that idempotent
// ones go to the successor at once instead of waiting for client.read_timeout
// (HAProxy's on-marked-down shutdown-sessions). f must not block; it may be called
// with the Checker's locks held.
func (c *Checker) SetOnOut(f func(*router.MemberState)) { c.onOut.Store(&f) }

func (c *Checker) out(st *router.MemberState) {
	if f := c.onOut.Load(); f != nil {
		(*f)(st)
	}
}

// Fault is what one attempt of a real request says about its member's health. The
// gateway classifies; the Checker alone counts, resets and ejects (Observe).
type Fault uint8

const (
	// OK: the member answered.
	OK Fault = iota
	// Status5xx: it answered with a 5xx status, a failure where the group ejects on 5xx.
	Status5xx
	// Busy: the attempt failed for want of a connection (the pool was full, or every
	// pooled connection was one the member had closed while idle): counted as a failed
	// attempt, never towards ejection.
	Busy
	// Connect: it refused or did not accept the connection in time.
	Connect
	// Timeout: it did not answer in time.
	Timeout
	// Closed: it closed or reset the connection the request went out on.
	Closed
	// Broken: its answer could not be read (a head too large, a broken chunk).
	Broken
	// NumFaults sizes arrays indexed by Fault.
	NumFaults
)

var faultNames = [NumFaults]string{"ok", "status_5xx", "busy", "connect", "timeout", "closed", "broken"}

// String returns the fault's name as logged.
func (f Fault) String() string { return faultNames[f] }

// Observe records one attempt of a real request on st's member. OK (and Status5xx
// where the group does not eject on 5xx) ends the member's run of failures; Busy
// counts a failed attempt; any other fault counts one, extends the run and ejects the
// member once the run reaches its group's consecutive_failures, unless it is the last
// usable member of the group (panic mode). It takes no lock on success, nor on a
// failure that does not eject; it is safe for concurrent use and does not allocate.
func (c *Checker) Observe(st *router.MemberState, f Fault) {
	var w *watched
	if m := c.byState.Load(); m != nil {
		w = (*m)[st]
	}
	var p *Passive
	if w != nil {
		p = w.passive.Load()
	}
	if f == Status5xx && (p == nil || !p.Eject5xx) {
		f = OK
	}
	switch f {
	case OK:
		if st.Consecutive.Load() != 0 {
			st.Consecutive.Store(0)
		}
		return
	case Busy:
		st.Failures.Add(1)
		return
	}
	st.Failures.Add(1)
	n := int(st.Consecutive.Add(1))
	if p == nil || p.Failures == 0 || n < p.Failures || st.Ejected() {
		return
	}
	c.failure(w, st, n, f.String())
}

// failure ejects w's member after its n-th failure in a row, if its passive settings
// say so and a peer can take its sessions.
func (c *Checker) failure(w *watched, st *router.MemberState, n int, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.t.Passive
	if p.Failures == 0 || n < p.Failures || st.Ejected() {
		return
	}
	c.ejectMu.Lock()
	defer c.ejectMu.Unlock()
	others := 0
	for _, peer := range w.t.Peers {
		if peer != st && peer.UsableBound() {
			others++
		}
	}
	if others == 0 {
		if n == p.Failures { // once per run of failures
			w.log.Error().Int("failures", n).Str("reason", reason).
				Msg("panic mode: not ejecting the last usable member of the group")
		}
		return
	}
	now := time.Now()
	if !w.lastEjection.IsZero() && now.Sub(w.lastEjection) > p.MaxEjection+p.Ejection {
		w.ejections = 0 // well-behaved since: start the back-off over
	}
	w.ejections++
	w.lastEjection = now
	d := p.MaxEjection
	if shift := w.ejections - 1; shift < 20 && p.Ejection<<shift < p.MaxEjection {
		d = p.Ejection << shift
	}
	if w.t.Check.Path == "" {
		w.ejectedUntil = now.Add(d)
	}
	st.Consecutive.Store(0)
	if st.SetEjected(true) {
		w.n.ejected.Add(1)
		e := w.log.Warn().Str("from", "up").Str("to", "ejected").Int("failures", n).Str("reason", reason)
		if w.t.Check.Path == "" {
			e = e.Float64("ejection_ms", ms(d))
		} else {
			e = e.Str("until", "an active check passes")
		}
		e.Msg("member ejected")
	}
}

// ms is a duration in milliseconds, the unit of every duration in the logs.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
