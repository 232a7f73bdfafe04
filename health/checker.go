package health

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// Check is one group's active check settings.
type Check struct {
	// Path is requested with GET; "" means no active check (always healthy).
	Path string
	// Interval between two checks of one member; Timeout of one check.
	Interval, Timeout time.Duration
	// Rise passing checks in a row make a member healthy; Fall failing ones unhealthy.
	Rise, Fall int
	// HostValue is the Host header sent; "" sends the member address.
	HostValue string
}

// Target is one member to check.
type Target struct {
	Group, Member, Addr string
	State               *router.MemberState
	Check               Check
}

// Result is the latest outcome of a member's checks, for the admin API.
type Result struct {
	At      time.Time
	OK      bool
	Status  int    // HTTP status, 0 when none came back
	Reason  string // why it failed, "" when OK
	Latency time.Duration
}

// Checker runs active checks. Update sets what it checks; Stop ends it.
type Checker struct {
	log zerolog.Logger

	mu      sync.Mutex
	probers map[string]*prober // by member id
	wg      sync.WaitGroup
}

// New returns a Checker that checks nothing yet.
func New(log zerolog.Logger) *Checker {
	return &Checker{log: log.With().Str("component", "health").Logger(), probers: map[string]*prober{}}
}

// Update makes the Checker check exactly ts: it starts probers for new members, restarts
// those whose address or settings changed and stops those that left. A member without
// an active check is marked healthy.
func (c *Checker) Update(ts []Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := map[string]bool{}
	for _, t := range ts {
		keep[t.Member] = true
		if p, ok := c.probers[t.Member]; ok {
			if p.t.Addr == t.Addr && p.t.Check == t.Check && p.t.State == t.State {
				continue
			}
			p.stop()
			delete(c.probers, t.Member)
		}
		if t.Check.Path == "" {
			if t.State.SetHealthy(true) {
				c.log.Info().Str("group", t.Group).Str("member", t.Member).Str("from", "down").Str("to", "up").
					Str("reason", "active check removed").Msg("member health changed")
			}
			continue
		}
		p := newProber(t, c.log)
		c.probers[t.Member] = p
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			p.run()
		}()
	}
	for id, p := range c.probers {
		if !keep[id] {
			p.stop()
			delete(c.probers, id)
		}
	}
}

// Last returns the latest check result of a member, if it has been checked.
func (c *Checker) Last(member string) (Result, bool) {
	c.mu.Lock()
	p, ok := c.probers[member]
	c.mu.Unlock()
	if !ok {
		return Result{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last, !p.last.At.IsZero()
}

// Stop ends every prober and waits for them.
func (c *Checker) Stop() {
	c.mu.Lock()
	for id, p := range c.probers {
		p.stop()
		delete(c.probers, id)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

type prober struct {
	t      Target
	log    zerolog.Logger
	client *fasthttp.HostClient
	done   chan struct{}
	once   sync.Once

	okRun, failRun int

	mu   sync.Mutex
	last Result
}

func newProber(t Target, log zerolog.Logger) *prober {
	timeout := t.Check.Timeout
	return &prober{
		t:   t,
		log: log.With().Str("group", t.Group).Str("member", t.Member).Logger(),
		client: &fasthttp.HostClient{
			Addr:                      t.Addr,
			Dial:                      func(addr string) (net.Conn, error) { return fasthttp.DialTimeout(addr, timeout) },
			MaxConns:                  1,
			MaxIdemponentCallAttempts: 1,
			ReadTimeout:               timeout,
			WriteTimeout:              timeout,
			MaxIdleConnDuration:       2 * t.Check.Interval,
			NoDefaultUserAgentHeader:  true,
			Name:                      "sessiongate-health",
		},
		done: make(chan struct{}),
	}
}

func (p *prober) stop() { p.once.Do(func() { close(p.done) }) }

func (p *prober) run() {
	// Spread the first checks over one interval so that members are not probed in step.
	first := time.Duration(rand.Int64N(int64(p.t.Check.Interval)/10 + 1))
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-p.done:
			p.client.CloseIdleConnections()
			return
		case <-timer.C:
		}
		p.observe(p.probe())
		timer.Reset(p.t.Check.Interval)
	}
}

func (p *prober) probe() Result {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(p.t.Check.Path)
	host := p.t.Check.HostValue
	if host == "" {
		host = p.t.Addr
	}
	req.Header.SetHost(host)
	resp.SkipBody = true
	start := time.Now()
	err := p.client.DoTimeout(req, resp, p.t.Check.Timeout)
	r := Result{At: start, Latency: time.Since(start)}
	switch {
	case err != nil:
		r.Reason = err.Error()
	case resp.StatusCode() < 200 || resp.StatusCode() > 399:
		r.Status = resp.StatusCode()
		r.Reason = "status " + strconv.Itoa(r.Status)
	default:
		r.Status = resp.StatusCode()
		r.OK = true
	}
	return r
}

// observe applies the rise/fall thresholds to one result; it logs a transition once.
func (p *prober) observe(r Result) {
	p.mu.Lock()
	p.last = r
	p.mu.Unlock()
	if r.OK {
		p.okRun++
		p.failRun = 0
		if p.okRun >= p.t.Check.Rise && p.t.State.SetHealthy(true) {
			p.log.Info().Str("from", "down").Str("to", "up").
				Str("reason", "passed "+strconv.Itoa(p.okRun)+" checks").Msg("member health changed")
		}
		return
	}
	p.failRun++
	p.okRun = 0
	if p.failRun >= p.t.Check.Fall && p.t.State.SetHealthy(false) {
		p.log.Warn().Str("from", "up").Str("to", "down").Str("reason", r.Reason).
			Int("failed_checks", p.failRun).Msg("member health changed")
	}
}
