package router

import (
	"sync"
	"sync/atomic"
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

// String returns the state's config and API name.
func (a Admin) String() string {
	if int(a) < len(adminNames) {
		return adminNames[a]
	}
	return "unknown"
}

// ParseAdmin maps "ready", "drain" or "maint" to an Admin state.
func ParseAdmin(s string) (Admin, bool) {
	for i, n := range adminNames {
		if s == n {
			return Admin(i), true
		}
	}
	return AdminReady, false
}

// flags layout: bit 0 set = down (failed health); bits 1-2 = Admin.
const (
	flagDown   = 1
	adminShift = 1
	adminMask  = 3 << adminShift
)

// MemberState is the runtime state of one member, shared by every Table that has a
// member with its id, so that it survives reloads. All methods are safe for concurrent
// use and do not allocate.
type MemberState struct {
	id  string
	num uint32

	flags atomic.Uint32

	// Inflight is the number of requests being proxied to the member now.
	Inflight atomic.Int64
	// Requests counts the requests proxied to the member.
	Requests atomic.Uint64
	// Failures counts the proxied requests that ended in an error (no response).
	Failures atomic.Uint64
}

// ID returns the member id the state belongs to.
func (s *MemberState) ID() string { return s.id }

// Num is a small number unique to the member id for the life of the process; the
// learned-session cache stores it in place of the id.
func (s *MemberState) Num() uint32 { return s.num }

// Healthy reports the health checker's verdict.
func (s *MemberState) Healthy() bool { return s.flags.Load()&flagDown == 0 }

// SetHealthy records the health checker's verdict and reports whether it changed.
func (s *MemberState) SetHealthy(ok bool) bool {
	for {
		old := s.flags.Load()
		nf := old | flagDown
		if ok {
			nf = old &^ flagDown
		}
		if nf == old {
			return false
		}
		if s.flags.CompareAndSwap(old, nf) {
			return true
		}
	}
}

// Admin returns the administrative state.
func (s *MemberState) Admin() Admin { return Admin(s.flags.Load() & adminMask >> adminShift) }

// SetAdmin sets the administrative state.
func (s *MemberState) SetAdmin(a Admin) {
	for {
		old := s.flags.Load()
		if s.flags.CompareAndSwap(old, old&^adminMask|uint32(a)<<adminShift) {
			return
		}
	}
}

// UsableBound reports whether the member may serve the sessions bound to it: healthy
// and not in maintenance (draining members keep their sessions).
func (s *MemberState) UsableBound() bool {
	f := s.flags.Load()
	return f&flagDown == 0 && Admin(f&adminMask>>adminShift) != AdminMaint
}

// UsableNew reports whether the member may take new sessions: healthy and ready.
func (s *MemberState) UsableNew() bool { return s.flags.Load() == 0 }

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
