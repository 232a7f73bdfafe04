package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// TargetOptions measure an existing deployment: a gateway (sessiongate or another)
// in front of real members, at a URL.
type TargetOptions struct {
	// URL is requested with GET by every session, e.g. http://gw.example:8080/app/.
	URL string
	// Sessions is the number of client sessions. Each starts without a cookie, takes
	// the session cookie the deployment sets, and sends it from then on. Default 1000.
	Sessions int
	// Keyless is the share of requests, 0-1, sent without any cookie. Default 0.
	Keyless float64
	// Conns is the number of keep-alive connections, one worker each. Default 16.
	Conns int
	// Duration is the measured time; Warmup is run first, unmeasured (sessions are
	// issued there). Defaults 10s and 2s.
	Duration, Warmup time.Duration
	// Cookie is the session cookie's name. Default JSESSIONID.
	Cookie string
	// MemberHeader is the response header naming the member that answered (set it on
	// the members, e.g. X-Served-By); a session answered by another member than the one
	// that answered it first is a sticky violation. "" checks no stickiness.
	MemberHeader string
	// Timeout bounds each request. Default 10s.
	Timeout time.Duration
	// PhaseLog, if set, receives one line per phase.
	PhaseLog io.Writer
}

// targetSession is one client session against a target.
type targetSession struct {
	cookie []byte // "JSESSIONID=..." once issued
	member string // who answered it first
}

// RunTarget measures o.URL: warm-up (which issues the sessions), then Duration of
// closed-loop load, each worker driving its own sessions so that no session has two
// requests in flight. It reports req/s, latency, errors and sticky violations.
func RunTarget(ctx context.Context, o TargetOptions) (*Phase, error) {
	if o.Sessions <= 0 {
		o.Sessions = 1000
	}
	if o.Conns <= 0 {
		o.Conns = 16
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	} else if o.Warmup == 0 {
		o.Warmup = 2 * time.Second
	}
	if o.Cookie == "" {
		o.Cookie = "JSESSIONID"
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Keyless < 0 || o.Keyless > 1 {
		return nil, fmt.Errorf("bench: -keyless %v: want 0-1", o.Keyless)
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bench: -target %q: want an http or https URL", o.URL)
	}
	client := &fasthttp.Client{
		MaxConnsPerHost:           o.Conns,
		ReadTimeout:               o.Timeout,
		WriteTimeout:              o.Timeout,
		MaxIdemponentCallAttempts: 1,
		NoDefaultUserAgentHeader:  true,
	}
	sessions := make([]*targetSession, o.Sessions)
	for i := range sessions {
		sessions[i] = &targetSession{}
	}
	run := func(name string, d time.Duration, measured bool) (Phase, error) {
		ph := Phase{Name: name, Errors: map[string]int64{}, hist: newHist()}
		var mu sync.Mutex
		var wg sync.WaitGroup
		end := time.Now().Add(d)
		start := time.Now()
		for w := range o.Conns {
			wg.Go(func() {
				hist := newHist()
				errs := map[string]int64{}
				var violations int64
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				n := 0
				for time.Now().Before(end) && ctx.Err() == nil {
					// Worker w drives sessions w, w+Conns, ...: one request in flight each.
					idx := w + (n%max(1, (o.Sessions-w+o.Conns-1)/o.Conns))*o.Conns
					n++
					var s *targetSession
					if idx < len(sessions) {
						s = sessions[idx]
					}
					keyless := s == nil || o.Keyless > 0 && float64(n%1000)/1000 < o.Keyless
					req.Reset()
					req.SetRequestURI(o.URL)
					if !keyless && s.cookie != nil {
						req.Header.SetBytesV(fasthttp.HeaderCookie, s.cookie)
					}
					t0 := time.Now()
					err := client.DoTimeout(req, resp, o.Timeout)
					lat := time.Since(t0)
					switch {
					case err != nil:
						errs[errorClass(err)]++
						continue
					case resp.StatusCode() >= 500:
						errs[strconv.Itoa(resp.StatusCode())]++
						continue
					}
					hist.RecordValue(int64(lat)) //nolint:errcheck // clamped by the histogram's range
					if keyless {
						continue
					}
					if s.cookie == nil {
						if v := resp.Header.PeekCookie(o.Cookie); len(v) > 0 {
							c := fasthttp.AcquireCookie()
							if c.ParseBytes(v) == nil {
								s.cookie = append([]byte(o.Cookie+"="), c.Value()...)
							}
							fasthttp.ReleaseCookie(c)
						}
					}
					if o.MemberHeader != "" && s.cookie != nil {
						m := string(resp.Header.Peek(o.MemberHeader))
						switch {
						case s.member == "":
							s.member = m
						case m != s.member && measured:
							violations++
						}
					}
				}
				mu.Lock()
				ph.hist.Merge(hist)
				for k, v := range errs {
					ph.Errors[k] += v
					ph.ErrorCount += v
				}
				ph.StickyViolations += violations
				mu.Unlock()
			})
		}
		wg.Wait()
		ph.Seconds = time.Since(start).Seconds()
		ph.summarize()
		phaseLine(o.PhaseLog, &ph)
		return ph, ctx.Err()
	}
	if o.Warmup > 0 {
		if _, err := run("warm-up", o.Warmup, false); err != nil {
			return nil, err
		}
	}
	ph, err := run("target", o.Duration, true)
	issued := 0
	for _, s := range sessions {
		if s.cookie != nil {
			issued++
		}
	}
	if issued == 0 && err == nil {
		err = errors.New("bench: the target issued no " + o.Cookie + " cookie: no session was measured for stickiness")
	}
	return &ph, err
}

// errorClass names a request error for the report.
func errorClass(err error) string {
	switch {
	case errors.Is(err, fasthttp.ErrTimeout):
		return "timeout"
	case errors.Is(err, fasthttp.ErrConnectionClosed):
		return "closed"
	}
	return "error"
}
