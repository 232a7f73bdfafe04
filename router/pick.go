package router

import "github.com/cespare/xxhash/v2"

// Outcome says how the member of a request was chosen.
type Outcome uint8

// Outcomes, as logged and counted.
const (
	// OutcomeNone: no member could be chosen (the group has no usable member).
	OutcomeNone Outcome = iota
	// OutcomeRoute: the route id inside the session key named a usable member.
	OutcomeRoute
	// OutcomeLearned: a binding learned from a member's Set-Cookie named a usable member.
	OutcomeLearned
	// OutcomeCookie: the gateway's own signed affinity cookie named a usable member.
	OutcomeCookie
	// OutcomeHash: the key had no binding and rendezvous hashing chose the member.
	OutcomeHash
	// OutcomeBalanced: the request had no key (or no binding and no hash resolver) and
	// the balancer chose the member.
	OutcomeBalanced
	// OutcomeMoved: the key was bound to a member that cannot serve it now and the
	// request went to its failover member.
	OutcomeMoved
	// NumOutcomes sizes arrays indexed by Outcome.
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"none", "route", "learned", "cookie", "hash", "balanced", "moved"}

// String returns the outcome's name as used in logs and metrics.
func (o Outcome) String() string { return outcomeNames[o] }

// Status is what a Resolver knows of a key.
type Status uint8

// Resolver statuses.
const (
	// Miss: the resolver knows no binding for the key.
	Miss Status = iota
	// Hit: the key is bound to the returned member, which can serve it.
	Hit
	// Failover: the member the key is bound to cannot serve it; the returned member
	// holds its replica (a later WebSphere clone id) and can.
	Failover
	// Down: the key is bound to the returned member, which cannot serve it now.
	Down
	// Unknown: the key names a binding (a route id) that no member of the group has.
	Unknown
	// Malformed: the key is not in the configured format (a route_format of websphere or
	// tomcat and no route in it, or a separator followed by no route id).
	Malformed
)

// MoveReason says why a session left the member it was bound to.
type MoveReason uint8

// Move reasons, as logged and counted.
const (
	MoveNone MoveReason = iota
	// MoveMemberDown: the member failed its active health checks.
	MoveMemberDown
	// MoveEjected: passive failures (errors on real requests) took the member out.
	MoveEjected
	// MoveMaint: the operator put the member in maintenance.
	MoveMaint
	// MoveDrainingDeadline: the member was draining and its drain_timeout passed.
	MoveDrainingDeadline
	// MoveUnknownRoute: the key's route ids name no member of the group.
	MoveUnknownRoute
	// MoveMalformedKey: the key carries no readable route (see Malformed).
	MoveMalformedKey
	// MoveRetry: the request was retried on another member after its member failed it,
	// and that member is not out (a passing fault): the session is served elsewhere this
	// once, its binding left alone.
	MoveRetry
	NumMoveReasons
)

var moveReasonNames = [NumMoveReasons]string{"none", "member_down", "ejected", "maint", "draining_deadline", "unknown_route", "malformed_key", "retry"}

// String returns the reason's name as used in logs and metrics.
func (r MoveReason) String() string { return moveReasonNames[r] }

// Decision is the member chosen for a request and how.
type Decision struct {
	// Member is nil when no member may serve the request (503).
	Member  *Member
	Outcome Outcome
	// Reason is why the session moved, with OutcomeMoved; with OutcomeNone, why the
	// member it is bound to cannot serve it (a strict group does not move sessions).
	Reason MoveReason
	// Bound is the member the key was bound to when it moved (nil for unknown routes).
	Bound *Member
}

// Resolver finds the member a session key is bound to. Resolvers are configured once,
// in the order of session.affinity, and called on the request path: an implementation
// must be safe for concurrent use and must not allocate. A resolver that is not in the
// chain costs nothing.
type Resolver interface {
	// Resolve returns an index into g.Members and what it knows of the binding; the
	// index is ignored with Miss.
	Resolve(g *Group, key []byte, keyHash uint64) (int, Status)
}

// Link is one step of the resolver chain: the resolver and the outcome a Hit counts as.
type Link struct {
	Resolver Resolver
	Outcome  Outcome
}

// Store is the learned-session store the learned resolver reads: session key hash to
// member number (MemberState.Num). It may forget anything at any time.
type Store interface {
	Lookup(keyHash uint64) (num uint32, ok bool)
}

// RouteResolver reads the member's route id from the key itself.
func RouteResolver(f Format) Link { return Link{routeResolver{f}, OutcomeRoute} }

// LearnedResolver looks the key up in s.
func LearnedResolver(s Store) Link { return Link{learnedResolver{s}, OutcomeLearned} }

// CookieResolver is the gateway's signed affinity cookie: the member it names, when the
// request carries a valid one (DecideHint's pinned), is the session's member. It reads
// nothing of the key, so it also keeps a client without a session key on its member.
func CookieResolver() Link { return Link{cookieResolver{}, OutcomeCookie} }

type cookieResolver struct{}

// Resolve is never called: decide answers for the cookie link from the request's
// pinned member.
func (cookieResolver) Resolve(*Group, []byte, uint64) (int, Status) { return 0, Miss }

// HashResolver binds every key to a member by weighted rendezvous hashing over the
// members that take new sessions. It never misses, so it belongs last.
func HashResolver() Link { return Link{hashResolver{}, OutcomeHash} }

type routeResolver struct{ format Format }

// Resolve walks the route list: the first id naming a member that can serve wins (Hit
// for the first id, Failover for a later one); if ids name members but none can serve,
// Down with the first of them.
func (r routeResolver) Resolve(g *Group, key []byte, _ uint64) (int, Status) {
	list := PeekRoutes(key, r.format)
	first := -1
	for list != nil {
		var route []byte
		route, list = NextRoute(list)
		idx := g.MemberByRoute(route)
		if idx < 0 {
			continue
		}
		if g.Members[idx].State.UsableBound() {
			if first < 0 {
				return idx, Hit
			}
			return idx, Failover
		}
		if first < 0 {
			first = idx
		}
	}
	if first >= 0 {
		return first, Down
	}
	switch all := PeekRoutes(key, r.format); {
	case all == nil && r.format != FormatAuto:
		return 0, Malformed
	case all == nil:
		return 0, Miss
	case onlySeparators(all):
		return 0, Malformed
	}
	return 0, Unknown
}

// onlySeparators reports whether a route list holds no route id at all ("", ":", "::").
func onlySeparators(list []byte) bool {
	for list != nil {
		var route []byte
		route, list = NextRoute(list)
		if len(route) > 0 {
			return false
		}
	}
	return true
}

// firstBound returns the member named by the first route id of key that names one.
func (r routeResolver) firstBound(g *Group, key []byte) *Member {
	for list := PeekRoutes(key, r.format); list != nil; {
		var route []byte
		route, list = NextRoute(list)
		if idx := g.MemberByRoute(route); idx >= 0 {
			return g.Members[idx]
		}
	}
	return nil
}

type learnedResolver struct{ store Store }

func (r learnedResolver) Resolve(g *Group, _ []byte, keyHash uint64) (int, Status) {
	num, ok := r.store.Lookup(keyHash)
	if !ok {
		return 0, Miss
	}
	idx := g.MemberByNum(num)
	if idx < 0 {
		return 0, Miss
	}
	if g.Members[idx].State.UsableBound() {
		return idx, Hit
	}
	return idx, Down
}

type hashResolver struct{}

func (hashResolver) Resolve(g *Group, _ []byte, keyHash uint64) (int, Status) {
	if idx := g.Rendezvous(keyHash); idx >= 0 {
		return idx, Hit
	}
	return 0, Miss
}

// HashKey is the one hash of a session key used everywhere: rendezvous hashing and
// the learned-session store. Safe for concurrent use; does not allocate.
func HashKey(key []byte) uint64 { return xxhash.Sum64(key) }

// MemberByRoute returns the index of the member with the given route id, or -1.
// Safe for concurrent use; does not allocate.
func (g *Group) MemberByRoute(route []byte) int {
	if len(route) == 0 {
		return -1
	}
	// A linear scan beats the map up to about eight members (BenchmarkDecode).
	if len(g.Members) <= 8 {
		for i, m := range g.Members {
			if string(m.Route) == string(route) {
				return i
			}
		}
		return -1
	}
	if i, ok := g.byRoute[string(route)]; ok {
		return i
	}
	return -1
}

// Strict reports whether the group never moves a session (target_groups[].strict).
func (g *Group) Strict() bool { return g.strict }

// MemberByNum returns the index of the member whose state number is num, or -1.
// Safe for concurrent use; does not allocate.
func (g *Group) MemberByNum(num uint32) int {
	for i, m := range g.Members {
		if m.State.num == num {
			return i
		}
	}
	return -1
}

// Pick is Decide without the details: the member (nil when none may serve) and the
// outcome. Safe for concurrent use; does not allocate.
func (g *Group) Pick(key []byte, keyHash uint64) (*Member, Outcome) {
	d := g.Decide(key, keyHash)
	return d.Member, d.Outcome
}

// Decide chooses the member for a request with session key key (empty: no key) and
// keyHash = HashKey(key). It runs the resolver chain; a Hit or Failover decides. A key
// bound to a member that cannot serve it moves to the first usable member in the key's
// own rendezvous order, which every gateway instance with the same view of health
// computes alike, so a dead member's sessions spread over all survivors; in a strict
// group it does not move (Member nil). Keys without any binding are hashed when the
// chain ends in hash, else balanced, like requests without a key.
//
// Safe for concurrent use; does not allocate.
func (g *Group) Decide(key []byte, keyHash uint64) Decision {
	return g.decide(g.chain, g.hashed, key, keyHash, -1)
}

// DecideTLS is Decide for a key taken from the request's TLS session (Spec.TLSChain):
// it runs the links after tls in the chain. Safe for concurrent use; does not allocate.
func (g *Group) DecideTLS(key []byte, keyHash uint64) Decision {
	return g.decide(g.tlsChain, g.tlsHashed, key, keyHash, -1)
}

// DecideHint is Decide for a request whose signed affinity cookie names g.Members[pinned]
// (-1: none, or not valid): the cookie link of the chain answers with that member. A
// request without a key but with a cookie stays on the cookie's member while it can
// serve it, and is balanced anew (a move) when it cannot. fromTLS says the key is the
// TLS session's (DecideTLS). Safe for concurrent use; does not allocate.
func (g *Group) DecideHint(key []byte, keyHash uint64, pinned int, fromTLS bool) Decision {
	if fromTLS {
		return g.decide(g.tlsChain, g.tlsHashed, key, keyHash, pinned)
	}
	return g.decide(g.chain, g.hashed, key, keyHash, pinned)
}

// IndexOf returns the index of m in g.Members, or -1.
func (g *Group) IndexOf(m *Member) int {
	for i, x := range g.Members {
		if x == m {
			return i
		}
	}
	return -1
}

func (g *Group) decide(chain []Link, hashed bool, key []byte, keyHash uint64, pinned int) Decision {
	if len(key) == 0 {
		if pinned >= 0 && g.hasCookie {
			p := g.Members[pinned]
			if p.State.UsableBound() {
				return Decision{Member: p, Outcome: OutcomeCookie}
			}
			if g.strict {
				return Decision{Outcome: OutcomeNone, Reason: p.State.Reason(), Bound: p}
			}
			m, _ := g.balanced()
			return Decision{Member: m, Outcome: OutcomeMoved, Reason: p.State.Reason(), Bound: p}
		}
		m, o := g.balanced()
		return Decision{Member: m, Outcome: o}
	}
	var bound *Member
	why := MoveNone // a route resolver that found no usable binding in the key says why
	for i := range chain {
		l := &chain[i]
		var idx int
		var st Status
		if _, ok := l.Resolver.(cookieResolver); ok {
			idx, st = g.pinnedStatus(pinned)
		} else {
			idx, st = l.Resolver.Resolve(g, key, keyHash)
		}
		switch st {
		case Hit:
			if bound != nil {
				return g.moved(g.Members[idx], bound)
			}
			if why != MoveNone && l.Outcome == OutcomeHash {
				return Decision{Member: g.Members[idx], Outcome: OutcomeMoved, Reason: why}
			}
			return Decision{Member: g.Members[idx], Outcome: l.Outcome}
		case Failover:
			// A later clone id holds the replica of the first one's sessions.
			if bound == nil {
				if r, ok := l.Resolver.(routeResolver); ok {
					bound = r.firstBound(g, key)
				}
			}
			return g.moved(g.Members[idx], bound)
		case Down:
			if bound == nil {
				bound = g.Members[idx]
			}
		case Unknown:
			why = MoveUnknownRoute
		case Malformed:
			why = MoveMalformedKey
		}
	}
	if bound != nil {
		if idx := g.Rendezvous(keyHash); idx >= 0 {
			return g.moved(g.Members[idx], bound)
		}
		return Decision{Outcome: OutcomeNone, Reason: bound.State.Reason(), Bound: bound}
	}
	if hashed {
		return Decision{Outcome: OutcomeNone} // hash missed: nothing usable
	}
	m, o := g.balanced()
	if m != nil && why != MoveNone {
		return Decision{Member: m, Outcome: OutcomeMoved, Reason: why}
	}
	return Decision{Member: m, Outcome: o}
}

// moved is the decision to serve a session bound to bound (nil if unknown) on m; a
// strict group refuses it.
func (g *Group) moved(m, bound *Member) Decision {
	reason := MoveNone
	if bound != nil {
		reason = bound.State.Reason()
	}
	if g.strict {
		return Decision{Outcome: OutcomeNone, Reason: reason, Bound: bound}
	}
	return Decision{Member: m, Outcome: OutcomeMoved, Reason: reason, Bound: bound}
}

// Tried is the set of members a request was already sent to, so that a retry never
// goes to the same member twice. The zero value is empty; it holds up to four members.
type Tried struct {
	n   int
	idx [4]int
}

// Add records m.
func (t *Tried) Add(m *Member) {
	if t.n < len(t.idx) {
		t.idx[t.n] = m.Index
		t.n++
	}
}

// Has reports whether m was recorded.
func (t *Tried) Has(m *Member) bool {
	for _, i := range t.idx[:t.n] {
		if i == m.Index {
			return true
		}
	}
	return false
}

// Len is the number of members recorded.
func (t *Tried) Len() int { return t.n }

// Retry returns the member a failed request goes to next: the first usable member in
// the key's rendezvous order (by keyHash, or by a rotating number for requests without
// a key) that it has not tried; nil when none is left. For a key, that is the member
// Decide would move it to if the tried members were down. Safe for concurrent use;
// does not allocate.
func (g *Group) Retry(keyHash uint64, hasKey bool, tried *Tried) *Member {
	if !hasKey {
		keyHash = mix(g.rr.Add(1))
	}
	if idx := g.rendezvous(keyHash, true, tried); idx >= 0 {
		return g.Members[idx]
	}
	if idx := g.rendezvous(keyHash, false, tried); idx >= 0 {
		return g.Members[idx]
	}
	return nil
}

// Rendezvous returns the index of the member with the highest rendezvous score for
// keyHash among the members that take new sessions, falling back to members that serve
// bound sessions only (draining) when none does; -1 when no member is usable. Removing a
// member moves only the keys it had. Safe for concurrent use; does not allocate.
func (g *Group) Rendezvous(keyHash uint64) int {
	if idx := g.rendezvous(keyHash, true, nil); idx >= 0 {
		return idx
	}
	return g.rendezvous(keyHash, false, nil)
}

func (g *Group) rendezvous(keyHash uint64, fresh bool, tried *Tried) int {
	best, bestH, bestS := -1, uint64(0), 0.0
	for i, m := range g.Members {
		if fresh && !m.State.UsableNew() || !fresh && !m.State.UsableBound() || tried != nil && tried.Has(m) {
			continue
		}
		h := mix(keyHash ^ m.seed)
		if !m.weights {
			if best < 0 || h > bestH {
				best, bestH = i, h
			}
			continue
		}
		if s := weightedScore(h, m.logW); best < 0 || s > bestS {
			best, bestS = i, s
		}
	}
	return best
}

// Balance is how requests without a session key are spread.
type Balance uint8

// Balancers.
const (
	// BalanceRoundRobin is smooth weighted round robin.
	BalanceRoundRobin Balance = iota
	// BalanceLeastRequests takes the member with the fewest in-flight requests per weight.
	BalanceLeastRequests
)

var balanceNames = [...]string{"round_robin", "least_requests"}

// BalanceNames are the session.balance values, in Balance order.
func BalanceNames() []string { return balanceNames[:] }

// String returns the balancer's config name.
func (b Balance) String() string { return nameOf(balanceNames[:], int(b)) }

// ParseBalance maps a session.balance config value ("" is round_robin) to a Balance.
func ParseBalance(s string) (Balance, bool) {
	if s == "" {
		return BalanceRoundRobin, true
	}
	i, ok := indexOf(balanceNames[:], s)
	return Balance(i), ok
}

func (g *Group) balanced() (*Member, Outcome) {
	n := g.rr.Add(1)
	if g.balance == BalanceLeastRequests {
		if m := g.leastRequests(n, true); m != nil {
			return m, OutcomeBalanced
		}
		if m := g.leastRequests(n, false); m != nil {
			return m, OutcomeBalanced
		}
		return nil, OutcomeNone
	}
	if m := g.Members[g.slots[n%uint64(len(g.slots))]]; m.State.UsableNew() {
		return m, OutcomeBalanced
	}
	// The slot's member takes no new session. Handing its turn to the next slot would
	// give one neighbour its whole share (TestPickRoundRobin); spread it over the members
	// that do take new sessions, by weight, instead.
	if idx := g.rendezvous(mix(n), true, nil); idx >= 0 {
		return g.Members[idx], OutcomeBalanced
	}
	for _, m := range g.Members {
		if m.State.UsableBound() {
			return m, OutcomeBalanced
		}
	}
	return nil, OutcomeNone
}

// leastRequests returns a usable member with the lowest load; ties go to the
// (n mod ties)-th tied member in member order, so that they rotate evenly over the
// usable members only. Starting a scan at member n mod len instead would hand an
// unusable member's turns to its neighbour (TestPickLeastRequestsTiesRotate).
func (g *Group) leastRequests(n uint64, fresh bool) *Member {
	var first *Member
	var bestLoad float64
	ties := uint64(0)
	for _, m := range g.Members {
		if fresh && !m.State.UsableNew() || !fresh && !m.State.UsableBound() {
			continue
		}
		switch load := memberLoad(m); {
		case first == nil || load < bestLoad:
			first, bestLoad, ties = m, load, 1
		case load == bestLoad:
			ties++
		}
	}
	if ties <= 1 {
		return first
	}
	k := n % ties
	for _, m := range g.Members {
		if fresh && !m.State.UsableNew() || !fresh && !m.State.UsableBound() || memberLoad(m) != bestLoad {
			continue
		}
		if k == 0 {
			return m
		}
		k--
	}
	return first // loads changed between the two scans
}

// memberLoad is the member's load counting the request being placed.
func memberLoad(m *Member) float64 {
	return float64(m.State.Inflight.Load()+1) / float64(m.Weight)
}

// mix is the 64-bit finalizer of MurmurHash3: it spreads keyHash^seed so that
// rendezvous scores of one key are independent across members.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// pinnedStatus is the cookie link's answer: Hit when the cookie's member can serve its
// sessions, Down when it cannot, Miss without a valid cookie.
func (g *Group) pinnedStatus(pinned int) (int, Status) {
	if pinned < 0 || pinned >= len(g.Members) {
		return 0, Miss
	}
	if g.Members[pinned].State.UsableBound() {
		return pinned, Hit
	}
	return pinned, Down
}
