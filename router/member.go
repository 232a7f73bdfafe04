package router

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Admin is a member's administrative state, set by the operator.
type Admin uint32

// Administrative states.
const (
	// AdminReady takes new sessions and bound ones.
	AdminReady Admin = iota
	// AdminDrain takes no new session but keeps serving the sessions bound to it.
	AdminDrain
	// AdminMaint takes nothing.
	AdminMaint
)

var adminNames = [...]string{"ready", "drain", "maint"}

// AdminNames are the administrative states' config and API names, in Admin order.
func AdminNames() []string { return adminNames[:] }

// String returns the state's config and API name.
func (a Admin) String() string { return nameOf(adminNames[:], int(a)) }

// ParseAdmin maps "ready", "drain" or "maint" to an Admin state.
func ParseAdmin(s string) (Admin, bool) {
	i, ok := indexOf(adminNames[:], s)
	return Admin(i), ok
}

// flags layout: bit 0 down (failed active checks); bits 1-2 Admin; bit 3 ejected
// (passive failures); bit 4 drain deadline passed. A member takes new sessions only
// when every bit is clear, so UsableNew is one load and one compare.
const (
	flagDown         = 1
	adminShift       = 1
	adminMask        = 3 << adminShift
	flagEjected      = 1 << 3
	flagDrainExpired = 1 << 4
)

// sketchWords sizes the bound-session sketch: 256 words of 64 bits per bucket, a
// linear-counting bitmap that estimates up to some tens of thousands of sessions.
const sketchWords = 256

// MemberState is the runtime state of one member, shared by every Table that has a
// member with its id, so that it survives reloads. All methods are safe for concurrent
// use and do not allocate.
type MemberState struct {
	id  string
	num uint32

	flags      atomic.Uint32
	drainSince atomic.Int64 // unix nanoseconds when the member entered drain

	// Inflight is the number of requests being proxied to the member now.
	Inflight atomic.Int64
	// Requests counts the requests proxied to the member.
	Requests atomic.Uint64
	// Failures counts the proxied requests that ended in an error (no response).
	Failures atomic.Uint64
	// Consecutive counts failures since the last success (passive health).
	Consecutive atomic.Uint32
	// RouteMismatches counts the session ids the member issued with a route that is not
	// its own and names no member of its group (a configured route that differs from
	// the application server's jvmRoute or clone id, case included).
	RouteMismatches atomic.Uint64
	routeSeen       atomic.Pointer[string] // the first such route
	// Responses counts the responses proxied from the member by status class: index
	// status/100 (1-5), and 0 for a status outside 100-599. Observe adds to it.
	Responses [6]atomic.Uint64

	// latency is the response-time histogram: one counter per bucket of latencyBounds
	// (not cumulative: Observe adds to one bucket), the last one past every bound, and
	// the sum of the observed times in microseconds.
	latency    [NumLatencyBuckets + 1]atomic.Uint64
	latencySum atomic.Uint64

	// sketch holds two buckets of session-key bits: the current window and the one
	// before; RotateSessions clears the older and makes it current.
	sketch [2][sketchWords]atomic.Uint64
	cur    atomic.Uint32
}

// NoteRouteMismatch counts a session id the member issued with a foreign route and
// reports whether it is the first: the caller logs once. It keeps the first route seen
// (a copy: it allocates, once per member).
func (s *MemberState) NoteRouteMismatch(route []byte) (first bool) {
	if s.RouteMismatches.Add(1) != 1 {
		return false
	}
	r := string(route)
	s.routeSeen.CompareAndSwap(nil, &r)
	return true
}

// RouteSeen is the first foreign route the member issued ("" if none).
func (s *MemberState) RouteSeen() string {
	if r := s.routeSeen.Load(); r != nil {
		return *r
	}
	return ""
}

// NumLatencyBuckets is the number of finite bounds of the response-time histogram.
const NumLatencyBuckets = 14

// latencyBounds are the upper bounds of the response-time histogram, inclusive as
// Prometheus' "le": from a fast local answer to the longest sane member timeout.
var latencyBounds = [NumLatencyBuckets]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second,
}

// Latency is a copy of a member's response-time histogram, for metrics.
type Latency struct {
	// Bounds are the buckets' upper bounds (inclusive), ascending.
	Bounds [NumLatencyBuckets]time.Duration
	// Cumulative[i] counts the responses that took at most Bounds[i]; the last element
	// counts them all (the +Inf bucket) and is the histogram's count.
	Cumulative [NumLatencyBuckets + 1]uint64
	// Sum is the total of the observed times in seconds. A float, because a
	// time.Duration of summed latency would overflow within months at high load.
	Sum float64
}

// Count is the number of responses observed (the +Inf bucket).
func (l Latency) Count() uint64 { return l.Cumulative[NumLatencyBuckets] }

// Observe records one response of the member: its status class and how long the
// request took. Safe for concurrent use: three atomic adds, no lock; does not allocate
// (TestAllocsObserve).
func (s *MemberState) Observe(status int, d time.Duration) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	s.Responses[class].Add(1)
	i := 0
	for i < NumLatencyBuckets && d > latencyBounds[i] {
		i++
	}
	s.latency[i].Add(1)
	if d > 0 {
		s.latencySum.Add(uint64((d + time.Microsecond/2) / time.Microsecond))
	}
}

// Latency returns a copy of the response-time histogram. Each counter is read once,
// so the buckets are consistent with each other and with the count; the sum may
// include an observation the buckets do not yet show.
func (s *MemberState) Latency() Latency {
	l := Latency{Bounds: latencyBounds}
	var n uint64
	for i := range s.latency {
		n += s.latency[i].Load()
		l.Cumulative[i] = n
	}
	l.Sum = float64(s.latencySum.Load()) / 1e6
	return l
}

// ID returns the member id the state belongs to.
func (s *MemberState) ID() string { return s.id }

// Num is a small number unique to the member id for the life of the process; the
// learned-session cache stores it in place of the id.
func (s *MemberState) Num() uint32 { return s.num }

// setFlag sets or clears bits and reports whether anything changed.
func (s *MemberState) setFlag(bits uint32, on bool) bool {
	for {
		old := s.flags.Load()
		nf := old &^ bits
		if on {
			nf = old | bits
		}
		if nf == old {
			return false
		}
		if s.flags.CompareAndSwap(old, nf) {
			return true
		}
	}
}

// Healthy reports the active checker's verdict.
func (s *MemberState) Healthy() bool { return s.flags.Load()&flagDown == 0 }

// SetHealthy records the active checker's verdict and reports whether it changed.
func (s *MemberState) SetHealthy(ok bool) bool { return s.setFlag(flagDown, !ok) }

// Ejected reports whether passive failures took the member out.
func (s *MemberState) Ejected() bool { return s.flags.Load()&flagEjected != 0 }

// SetEjected ejects the member or brings it back; it reports whether that changed.
func (s *MemberState) SetEjected(on bool) bool { return s.setFlag(flagEjected, on) }

// DrainExpired reports whether the member has drained past its deadline, so that its
// bound sessions move too.
func (s *MemberState) DrainExpired() bool { return s.flags.Load()&flagDrainExpired != 0 }

// SetDrainExpired marks the drain deadline as passed (or not); it reports a change.
func (s *MemberState) SetDrainExpired(on bool) bool { return s.setFlag(flagDrainExpired, on) }

// Admin returns the administrative state.
func (s *MemberState) Admin() Admin { return Admin(s.flags.Load() & adminMask >> adminShift) }

// SetAdmin sets the administrative state. Entering drain starts the drain clock; any
// change clears an expired drain. It is for the operator's path, not the request path.
func (s *MemberState) SetAdmin(a Admin) {
	if a > AdminMaint {
		a = AdminMaint
	}
	for {
		old := s.flags.Load()
		if Admin(old&adminMask>>adminShift) == a {
			return
		}
		if a == AdminDrain {
			s.drainSince.Store(time.Now().UnixNano())
		}
		if s.flags.CompareAndSwap(old, old&^(adminMask|flagDrainExpired)|uint32(a)<<adminShift) {
			return
		}
	}
}

// DrainSince returns when the member entered drain (zero if it never did).
func (s *MemberState) DrainSince() time.Time {
	if n := s.drainSince.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// UsableBound reports whether the member may serve the sessions bound to it: healthy,
// not ejected, not in maintenance and not drained past its deadline (draining members
// keep their sessions until then).
func (s *MemberState) UsableBound() bool {
	f := s.flags.Load()
	return f&(flagDown|flagEjected|flagDrainExpired) == 0 && Admin(f&adminMask>>adminShift) != AdminMaint
}

// UsableNew reports whether the member may take new sessions: healthy, not ejected
// and ready.
func (s *MemberState) UsableNew() bool { return s.flags.Load() == 0 }

// Reason returns why the member cannot serve its bound sessions now (MoveNone if it can).
func (s *MemberState) Reason() MoveReason {
	f := s.flags.Load()
	switch {
	case f&flagDown != 0:
		return MoveMemberDown
	case f&flagEjected != 0:
		return MoveEjected
	case Admin(f&adminMask>>adminShift) == AdminMaint:
		return MoveMaint
	case f&flagDrainExpired != 0:
		return MoveDrainingDeadline
	}
	return MoveNone
}

// SeeSession records that a session with this key hash was served by the member.
// Safe for concurrent use; does not allocate.
func (s *MemberState) SeeSession(keyHash uint64) {
	b := &s.sketch[s.cur.Load()&1]
	bit := keyHash % (sketchWords * 64)
	w := &b[bit/64]
	if m := uint64(1) << (bit % 64); w.Load()&m == 0 {
		w.Or(m)
	}
}

// RotateSessions starts a new window: the older bucket is cleared and becomes current.
// BoundSessions then counts the sessions of the last two windows.
func (s *MemberState) RotateSessions() {
	next := (s.cur.Load() + 1) & 1
	for i := range s.sketch[next] {
		s.sketch[next][i].Store(0)
	}
	s.cur.Store(next)
}

// BoundSessions estimates how many distinct sessions the member served in the last two
// windows (linear counting over the union of both buckets).
func (s *MemberState) BoundSessions() int {
	zeros := 0
	for i := range sketchWords {
		zeros += 64 - bits.OnesCount64(s.sketch[0][i].Load()|s.sketch[1][i].Load())
	}
	const m = sketchWords * 64
	if zeros == 0 {
		return m * 8 // saturated: a floor, not an estimate
	}
	return int(math.Round(-m * math.Log(float64(zeros)/m)))
}

// States is the set of member runtime states, keyed by member id. It outlives Tables:
// the gateway keeps one States for the life of the process and every Table built from a
// new configuration takes the state of a member id it already knew.
type States struct {
	mu   sync.Mutex
	byID map[string]*MemberState
	next uint32
}

// NewStates returns an empty set.
func NewStates() *States { return &States{byID: map[string]*MemberState{}} }

// Get returns the state for id, creating it (healthy, ready) on first use. It is for
// configuration time; the request path reads states through Member.State.
func (s *States) Get(id string) *MemberState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.byID[id]
	if !ok {
		s.next++
		st = &MemberState{id: id, num: s.next}
		s.byID[id] = st
	}
	return st
}

// Lookup returns the state for id if there is one.
func (s *States) Lookup(id string) (*MemberState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.byID[id]
	return st, ok
}
