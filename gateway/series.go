package gateway

import (
	"encoding/json"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// The status page's charts come from a ring of one-second samples the gateway keeps
// itself: no external time-series store. A goroutine started by New and stopped by
// Shutdown reads the same atomics /metrics reads (the gateway counters and each
// member's router.MemberState), once per seriesInterval, and turns the difference from
// the previous reading into rates. The request path is not involved: it only adds to
// those atomics, as before.

// seriesInterval is how often the sampler reads the counters.
const seriesInterval = time.Second

// seriesLen is how many samples the ring keeps: five minutes at one a second.
const seriesLen = 300

// movesWindow is the trailing window moves per minute are computed over: a move is
// rare, and a per-second rate scaled by 60 would only show spikes.
const movesWindow = time.Minute

// seriesReading is one reading of the cumulative counters the sampler turns into rates.
type seriesReading struct {
	requests uint64 // gateway: requests handled
	errors   uint64 // gateway: requests answered with the gateway's own error (all kinds)
	moves    uint64 // gateway: sessions moved off their member (all reasons)
	members  []memberReading
}

// memberReading is one member's cumulative counters in a seriesReading.
type memberReading struct {
	group, id string
	requests  uint64
	failures  uint64
	latency   [router.NumLatencyBuckets + 1]uint64 // cumulative, as router.Latency
}

// seriesPoint is what one interval shows: rates over it, and the p99 of the
// responses that completed in it. P99 is NaN when none did.
type seriesPoint struct {
	rps, eps, p99 float64 // requests/s, errors/s, p99 in milliseconds
}

// seriesFrame is one sample: the interval that ended at at.
type seriesFrame struct {
	at      time.Time
	gateway seriesPoint
	movesPM float64 // moves per minute over the trailing movesWindow
	moves   uint64  // the cumulative moves at this sample, for movesPM of later ones
	members map[string]seriesPoint
}

// series is the ring of samples. add is called by the sampler goroutine (or a test),
// the admin handler reads with snapshot; mu orders them. It is never on the request path.
type series struct {
	mu     sync.Mutex
	frames []seriesFrame // ring of cap len(frames); frames[head] is the oldest once full
	head   int
	n      int
	prevAt time.Time
	prev   seriesReading // the reading the next interval is measured from
	prevOK bool
	// firstAt and firstMoves are the base reading's, for moves per minute early on.
	firstAt    time.Time
	firstMoves uint64
	groups     []seriesMember // the members of the last reading, in table order

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// seriesMember names a member in the order the page shows it.
type seriesMember struct{ group, id string }

func newSeries(n int) *series {
	return &series{frames: make([]seriesFrame, n), stop: make(chan struct{}), done: make(chan struct{})}
}

// start runs the sampler: a reading now (the base of the first interval) and one
// every interval until close. It returns at once.
func (r *series) start(interval time.Duration, read func() seriesReading) {
	go r.run(interval, read)
}

func (r *series) run(interval time.Duration, read func() seriesReading) {
	defer close(r.done)
	r.add(time.Now(), read())
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-tick.C:
			r.add(now, read())
		}
	}
}

// close stops the sampler and waits for its goroutine to end; it is idempotent. It
// must follow start (New always starts it), or it waits forever.
func (r *series) close() {
	r.stopOnce.Do(func() { close(r.stop) })
	<-r.done
}

// add records the interval from the previous reading to cur, taken at now. The first
// reading, and a member's first, only set the base.
func (r *series) add(now time.Time, cur seriesReading) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.groups = r.groups[:0]
	for _, m := range cur.members {
		r.groups = append(r.groups, seriesMember{m.group, m.id})
	}
	if !r.prevOK {
		r.prev, r.prevAt, r.prevOK = cur, now, true
		r.firstAt, r.firstMoves = now, cur.moves
		return
	}
	dt := now.Sub(r.prevAt).Seconds()
	if dt <= 0 {
		return
	}
	prev := make(map[string]*memberReading, len(r.prev.members))
	for i := range r.prev.members {
		prev[r.prev.members[i].id] = &r.prev.members[i]
	}
	f := &r.frames[(r.head+r.n)%len(r.frames)]
	if r.n == len(r.frames) {
		r.head = (r.head + 1) % len(r.frames) // the oldest is overwritten
	} else {
		r.n++
	}
	if f.members == nil {
		f.members = make(map[string]seriesPoint, len(cur.members))
	}
	clear(f.members)
	f.at = now
	f.moves = cur.moves
	var all, before [router.NumLatencyBuckets + 1]uint64
	for i := range cur.members {
		m := &cur.members[i]
		p, ok := prev[m.id]
		if !ok || m.requests < p.requests || m.failures < p.failures {
			continue // a new member: this reading is its base
		}
		var d [router.NumLatencyBuckets + 1]uint64
		for b := range d {
			d[b] = m.latency[b] - min(p.latency[b], m.latency[b])
			all[b] += m.latency[b]
			before[b] += min(p.latency[b], m.latency[b])
		}
		f.members[m.id] = seriesPoint{
			rps: float64(m.requests-p.requests) / dt,
			eps: float64(m.failures-p.failures) / dt,
			p99: latencyQuantile(0.99, &d),
		}
	}
	var d [router.NumLatencyBuckets + 1]uint64
	for b := range d {
		d[b] = all[b] - before[b]
	}
	f.gateway = seriesPoint{
		rps: float64(cur.requests-min(r.prev.requests, cur.requests)) / dt,
		eps: float64(cur.errors-min(r.prev.errors, cur.errors)) / dt,
		p99: latencyQuantile(0.99, &d),
	}
	f.movesPM = r.movesPerMinute(f)
	r.prev, r.prevAt = cur, now
}

// movesPerMinute is the rate of moves over the trailing movesWindow up to f, the
// newest frame: from the oldest frame (or the first reading) in the window.
func (r *series) movesPerMinute(f *seriesFrame) float64 {
	baseAt, base := f.at, f.moves
	i := r.n - 2
	for ; i >= 0; i-- {
		o := &r.frames[(r.head+i)%len(r.frames)]
		if f.at.Sub(o.at) > movesWindow {
			break
		}
		baseAt, base = o.at, o.moves
	}
	if i < 0 && r.n < len(r.frames) && f.at.Sub(r.firstAt) <= movesWindow {
		baseAt, base = r.firstAt, r.firstMoves // the ring has not wrapped: it is older than frame 0
	}
	dt := f.at.Sub(baseAt)
	if dt <= 0 || f.moves < base {
		return 0
	}
	return float64(f.moves-base) * float64(time.Minute) / float64(dt)
}

// latencyQuantile estimates the q-quantile in milliseconds of the responses counted in
// d, a cumulative histogram over router's latency bounds, by linear interpolation within
// the bucket the rank falls in (as Prometheus' histogram_quantile). A rank in the last,
// unbounded bucket answers the largest finite bound. NaN when d counts nothing.
func latencyQuantile(q float64, d *[router.NumLatencyBuckets + 1]uint64) float64 {
	total := d[router.NumLatencyBuckets]
	if total == 0 {
		return math.NaN()
	}
	bounds := &seriesBounds
	rank := q * float64(total)
	for i := range router.NumLatencyBuckets {
		if float64(d[i]) < rank {
			continue
		}
		lo, below := 0.0, 0.0
		if i > 0 {
			lo, below = ms(bounds[i-1]), float64(d[i-1])
		}
		in := float64(d[i]) - below
		if in <= 0 {
			return ms(bounds[i])
		}
		return lo + (ms(bounds[i])-lo)*(rank-below)/in
	}
	return ms(bounds[router.NumLatencyBuckets-1])
}

// seriesBounds are the upper bounds of router's latency buckets.
var seriesBounds = (&router.MemberState{}).Latency().Bounds

// seriesReading reads the counters the sampler needs, from the snapshot in use.
func (s *Server) seriesReading() seriesReading {
	r := seriesReading{requests: s.stats.requests.Load()}
	for k := range s.stats.errors {
		r.errors += s.stats.errors[k].Load()
	}
	for k := range s.stats.moves {
		r.moves += s.stats.moves[k].Load()
	}
	for _, g := range s.snap.Load().table.Groups {
		for _, m := range g.Members {
			r.members = append(r.members, memberReading{
				group: g.Name, id: m.ID,
				requests: m.State.Requests.Load(), failures: m.State.Failures.Load(),
				latency: m.State.Latency().Cumulative,
			})
		}
	}
	return r
}

// SeriesStatus is the body of the status page's series request: the last samples,
// oldest first, one column per series. A null is an interval without data (a p99
// without responses, a member not yet sampled twice).
type SeriesStatus struct {
	IntervalMS int64 `json:"interval_ms"`
	// At is the end of each interval, in Unix milliseconds.
	At      []int64       `json:"at"`
	Gateway SeriesGateway `json:"gateway"`
	Members []SeriesOf    `json:"members"`
}

// SeriesGateway is the gateway-wide series: errors are the requests the gateway
// answered with its own error, p99 is over every member's responses, and moves are
// per minute over the trailing minute.
type SeriesGateway struct {
	RPS     []seriesValue `json:"rps"`
	Errors  []seriesValue `json:"errors_per_s"`
	P99     []seriesValue `json:"p99_ms"`
	MovesPM []seriesValue `json:"moves_per_min"`
}

// SeriesOf is one member's series: errors are its failures (no response).
type SeriesOf struct {
	Group  string        `json:"group"`
	ID     string        `json:"id"`
	RPS    []seriesValue `json:"rps"`
	Errors []seriesValue `json:"errors_per_s"`
	P99    []seriesValue `json:"p99_ms"`
}

// seriesValue is a sample value that encodes NaN as null.
type seriesValue float64

func (v seriesValue) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(v), 'f', 3, 64), nil
}

// snapshot copies the ring out, oldest first, for the members of the latest reading.
func (r *series) snapshot() SeriesStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := SeriesStatus{IntervalMS: seriesInterval.Milliseconds(), At: make([]int64, r.n)}
	g := &out.Gateway
	g.RPS, g.Errors, g.P99, g.MovesPM = values(r.n), values(r.n), values(r.n), values(r.n)
	for _, m := range r.groups {
		out.Members = append(out.Members, SeriesOf{Group: m.group, ID: m.id, RPS: values(r.n), Errors: values(r.n), P99: values(r.n)})
	}
	for i := range r.n {
		f := &r.frames[(r.head+i)%len(r.frames)]
		out.At[i] = f.at.UnixMilli()
		g.RPS[i], g.Errors[i], g.P99[i] = seriesValue(f.gateway.rps), seriesValue(f.gateway.eps), seriesValue(f.gateway.p99)
		g.MovesPM[i] = seriesValue(f.movesPM)
		for j := range out.Members {
			m := &out.Members[j]
			if p, ok := f.members[m.ID]; ok {
				m.RPS[i], m.Errors[i], m.P99[i] = seriesValue(p.rps), seriesValue(p.eps), seriesValue(p.p99)
			}
		}
	}
	return out
}

// values is n nulls.
func values(n int) []seriesValue {
	v := make([]seriesValue, n)
	for i := range v {
		v[i] = seriesValue(math.NaN())
	}
	return v
}

// handleSeries answers the series as JSON. Like every read of the admin API it needs
// no token; handleAdmin has checked the Host.
func (s *Server) handleSeries(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		adminError(ctx, fasthttp.StatusMethodNotAllowed, "use GET")
		return
	}
	b, err := json.Marshal(s.series.snapshot())
	if err != nil {
		adminError(ctx, fasthttp.StatusInternalServerError, "encoding failed")
		return
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}
