package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"

	"github.com/sessiongate/sessiongate/internal/demo"
)

type kind uint8

const (
	kindWebSphere kind = iota
	kindTomcat
	kindLearned
	kindHashed
)

// session is one client session. Each belongs to one worker, so it needs no lock.
type session struct {
	kind   kind
	cookie []byte // the whole Cookie header; nil for a learned session not issued yet
	bound  int    // member index; -1 until known (learned, hashed)
}

// benchPath and benchHost are what every request of the load asks for.
const (
	benchPath = "/fb/account/summary?x=1"
	benchHost = "app.example.com"
)

const (
	cookieBefore = "theme=dark; lang=en; "
	cookieAfter  = "; _ga=GA1.2.3; csrf=abcdef"
)

func sessionCookie(key string) []byte {
	return []byte(cookieBefore + "JSESSIONID=" + key + cookieAfter)
}

// newSessions builds n sessions in the mix. With only >= 0 every routed key names
// member only and learned and hashed sessions are expected there (the direct phase);
// otherwise routed keys spread over all members.
func newSessions(n int, mix Mix, members []*demo.Member, only int) []*session {
	total := mix.WebSphere + mix.Tomcat + mix.Learned + mix.Hashed
	bounds := [4]float64{mix.WebSphere / total, (mix.WebSphere + mix.Tomcat) / total, (mix.WebSphere + mix.Tomcat + mix.Learned) / total, 1}
	out := make([]*session, n)
	var buf [16]byte
	for i := range out {
		_, _ = rand.Read(buf[:])
		x := (float64(i) + 0.5) / float64(n) // deterministic shares, spread in order
		k := kindHashed
		for j, b := range bounds {
			if x < b {
				k = kind(j)
				break
			}
		}
		m := i % len(members)
		if only >= 0 {
			m = only
		}
		s := &session{kind: k, bound: -1}
		switch k {
		case kindWebSphere:
			key := "0000" + hex.EncodeToString(buf[:])[:23] + ":" + members[m].Route
			for j := 1; j < len(members) && j < 3; j++ {
				key += ":" + members[(m+j)%len(members)].Route
			}
			s.cookie, s.bound = sessionCookie(key), m
		case kindTomcat:
			s.cookie, s.bound = sessionCookie(hex.EncodeToString(buf[:])+"."+members[m].Route), m
		case kindHashed:
			s.cookie = sessionCookie(string(demo.ClientPrefix) + hex.EncodeToString(buf[:]))
			if only >= 0 {
				s.bound = only
			}
		case kindLearned:
			if only >= 0 {
				s.bound = only
			}
		}
		out[i] = s
	}
	return out
}

// load is the measurement of one phase.
type load struct {
	opts     Options
	addr     string
	members  []*demo.Member
	sessions []*session
	name     string
	// tls, if set, is the load generator's TLS: each connection handshakes in
	// tlsDialer.dial. loadKind is the phase's Load; with LoadHandshake every request
	// asks for Connection: close, so each is sent on a new TLS connection; with LoadH2
	// the requests are HTTP/2 streams on Options.H2Conns connections (h2.go).
	tls      *tls.Config
	loadKind string

	measuring atomic.Bool
	stop      atomic.Bool
	count     atomic.Int64 // measured requests
	errs      atomic.Int64 // measured errors
	total     atomic.Int64 // all requests, warm-up included
}

type workerResult struct {
	hist       *hdrhistogram.Histogram
	errors     map[string]int64
	violations int64
}

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Minute/time.Microsecond*1000), 3) // ns, 1ns-60s
}

// run drives the phase: warm-up, then measurement until Duration or Requests. measure
// is called when measurement starts and again when it ends.
func (l *load) run(ctx context.Context, onMeasure func(start bool)) (Phase, error) {
	ph := Phase{Name: l.name, Load: l.loadKind, Errors: map[string]int64{}}
	if l.loadKind == LoadH2 && l.tls == nil {
		return ph, errors.New("bench: the h2 load needs TLS")
	}
	var dialer *tlsDialer
	if l.tls != nil {
		dialer = &tlsDialer{cfg: l.tls, timeout: 10 * time.Second, measuring: &l.measuring}
	}
	// workers each send one request at a time: one per connection over HTTP/1.1, one per
	// stream with LoadH2.
	workers := l.opts.Conns
	var work func(w int, mine []*session, next time.Time, interval time.Duration) workerResult
	if l.loadKind == LoadH2 {
		workers = l.opts.H2Conns * l.opts.H2Streams
		clients := newH2Clients(l.opts.H2Conns, dialer)
		defer closeH2Clients(clients)
		url := "https://" + l.addr + benchPath
		work = func(w int, mine []*session, next time.Time, interval time.Duration) workerResult {
			return l.h2Worker(clients[w%len(clients)], url, mine, next, interval)
		}
	} else {
		hc := &fasthttp.HostClient{
			Addr:                      l.addr,
			MaxConns:                  workers,
			ReadTimeout:               10 * time.Second,
			WriteTimeout:              10 * time.Second,
			MaxIdemponentCallAttempts: 1,
			DisablePathNormalizing:    true,
		}
		if dialer != nil {
			hc.Dial = dialer.dial
		}
		defer hc.CloseIdleConnections()
		work = func(w int, mine []*session, next time.Time, interval time.Duration) workerResult {
			return l.worker(hc, mine, next, interval)
		}
	}
	results := make([]workerResult, workers)
	var wg sync.WaitGroup
	var interval time.Duration
	if l.opts.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(workers) / l.opts.Rate)
	}
	begin := time.Now()
	for w := range workers {
		var mine []*session
		for i := w; i < len(l.sessions); i += workers {
			mine = append(mine, l.sessions[i])
		}
		if len(mine) == 0 {
			mine = []*session{l.sessions[w%len(l.sessions)]}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the open-loop schedules of the workers over one interval.
			results[w] = work(w, mine, begin.Add(interval*time.Duration(w)/time.Duration(workers)), interval)
		}()
	}
	ctxDone := ctx.Done()
	stopProgress := l.progress(begin)
	if l.opts.Warmup > 0 {
		select {
		case <-time.After(l.opts.Warmup):
		case <-ctxDone:
		}
	}
	onMeasure(true)
	start := time.Now()
	l.measuring.Store(true)
	var deadline <-chan time.Time
	if l.opts.Duration > 0 {
		t := time.NewTimer(l.opts.Duration)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-deadline:
			break wait
		case <-ctxDone:
			break wait
		case <-tick.C:
			if l.opts.Requests > 0 && l.count.Load() >= l.opts.Requests {
				break wait
			}
		}
	}
	l.stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	onMeasure(false)
	stopProgress()

	hist := newHist()
	for _, r := range results {
		if r.hist != nil {
			hist.Merge(r.hist)
		}
		for k, v := range r.errors {
			ph.Errors[k] += v
			ph.ErrorCount += v
		}
		ph.StickyViolations += r.violations
	}
	if dialer != nil {
		ph.Handshakes = dialer.handshakes.Load()
		if n := dialer.resumed.Load(); n > 0 {
			ph.Errors["tls_resumed"] += n // a bug of the bench: handshake figures would be too good
			ph.ErrorCount += n
		}
	}
	ph.hist = hist
	ph.Seconds = elapsed.Seconds()
	ph.summarize()
	phaseLine(l.opts.PhaseLog, &ph)
	if ctx.Err() != nil {
		return ph, ctx.Err()
	}
	return ph, nil
}

// progress prints "phase elapsed req/s errors" every 250ms until the returned stop.
func (l *load) progress(begin time.Time) func() {
	if l.opts.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		last, lastT := l.total.Load(), time.Now()
		for {
			select {
			case <-done:
				fmt.Fprintf(l.opts.Progress, "\r%-60s\r", "")
				return
			case now := <-t.C:
				n := l.total.Load()
				state := "warm-up"
				if l.measuring.Load() {
					state = "measure"
				}
				fmt.Fprintf(l.opts.Progress, "\r%-22s %-7s %6.1fs %10.0f req/s  errors %d   ",
					strings.TrimSpace(l.name+" "+l.loadKind), state, now.Sub(begin).Seconds(), float64(n-last)/now.Sub(lastT).Seconds(), l.errs.Load())
				last, lastT = n, now
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (l *load) worker(hc *fasthttp.HostClient, sessions []*session, next time.Time, interval time.Duration) workerResult {
	res := workerResult{hist: newHist(), errors: map[string]int64{}}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(benchPath)
	req.Header.SetHost(benchHost)
	if l.loadKind == LoadHandshake {
		req.SetConnectionClose()
	}
	var cookie fasthttp.Cookie
	for i := 0; !l.stop.Load(); i++ {
		s := sessions[i%len(sessions)]
		// fasthttp parses a Cookie header into its cookie list and appends to it.
		req.Header.DelAllCookies()
		if s.cookie != nil {
			req.Header.SetBytesV(fasthttp.HeaderCookie, s.cookie)
		}
		t0 := time.Now()
		if interval > 0 {
			if d := next.Sub(t0); d > 0 {
				time.Sleep(d)
			}
			t0 = next // latency from the intended send time
			next = next.Add(interval)
		}
		measured := l.measuring.Load()
		if measured && l.opts.Requests > 0 && l.count.Add(1) > l.opts.Requests {
			break
		}
		err := hc.Do(req, resp)
		lat := time.Since(t0)
		l.total.Add(1)
		bad := ""
		switch {
		case err != nil:
			bad = errKind(err)
		case resp.StatusCode() != fasthttp.StatusOK:
			bad = "status_" + strconv.Itoa(resp.StatusCode())
		}
		got := -1
		if bad == "" {
			got, bad = l.answeredBy(resp.Header.Peek(demo.HeaderMember))
		}
		if bad != "" {
			l.failed(&res, bad, measured)
			continue
		}
		if s.kind == kindLearned && s.cookie == nil {
			if raw := resp.Header.PeekCookie("JSESSIONID"); len(raw) > 0 && cookie.ParseBytes(raw) == nil {
				s.cookie = sessionCookie(string(cookie.Value()))
			}
		}
		l.answered(&res, s, got, lat, measured)
	}
	return res
}

// answeredBy is the index of the member whose id the answer names, or "no_member_id".
func (l *load) answeredBy(id []byte) (int, string) {
	if i := l.memberIndex(id); i >= 0 {
		return i, ""
	}
	return -1, "no_member_id"
}

// failed counts a failed request of the kind bad, when measured.
func (l *load) failed(res *workerResult, bad string, measured bool) {
	if measured {
		res.errors[bad]++
		l.errs.Add(1)
	}
}

// answered books a good answer of session s from member got: a session not bound yet
// is bound to it; when measured, its latency is recorded and an answer from another
// member than the session's counts as a sticky violation.
func (l *load) answered(res *workerResult, s *session, got int, lat time.Duration, measured bool) {
	if s.bound < 0 {
		s.bound = got
	}
	if measured {
		if got != s.bound {
			res.violations++
		}
		_ = res.hist.RecordValue(lat.Nanoseconds())
	}
}

func (l *load) memberIndex(id []byte) int {
	for i, m := range l.members {
		if string(id) == m.ID {
			return i
		}
	}
	return -1
}

// errKind names a transport error for the report's error counts.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "conn_refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "conn_reset"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "conn_closed"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no_free_conns"
	}
	return "transport"
}

// phaseLine writes one line per measured phase to w (nil: none), for logs that are not
// a terminal, where the live progress line is not shown.
func phaseLine(w io.Writer, ph *Phase) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, "bench: %s: %.1fs, %d requests, %.0f req/s, p99 %s, errors %d, sticky violations %d\n",
		ph.label(), ph.Seconds, ph.Requests, ph.RPS, fmtDur(ph.P99), ph.ErrorCount, ph.StickyViolations)
}
