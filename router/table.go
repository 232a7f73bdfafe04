package router

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Spec is what a Table is built from. The gateway makes it from a validated config;
// NewTable still checks what the router relies on and names the field on error.
type Spec struct {
	Groups  []GroupSpec
	Key     KeySpec
	Balance Balance
	// Chain is the affinity resolver chain, tried in order.
	Chain []Link
	// TLSChain resolves the keys taken from TLS sessions (Group.DecideTLS): the links
	// after tls in session.affinity. Empty: requests are never keyed by TLS session.
	TLSChain []Link
}

// GroupSpec describes one target group.
type GroupSpec struct {
	Name string
	// Hosts are exact ("a.example.com") or wildcard ("*.example.com") host names; empty
	// means any host.
	Hosts      []string
	PathPrefix string
	Members    []MemberSpec
	// SwitchBack sends a moved session back to its original member once that member
	// can serve again; without it the session stays where its state now lives (the
	// learned binding is then consulted before the route in the key).
	SwitchBack bool
	// Strict groups never move a session: a key bound to a member that cannot serve it
	// gets no member (503).
	Strict bool
}

// MemberSpec describes one member.
type MemberSpec struct {
	ID     string
	Addr   string
	Route  string
	Weight int
}

// Member is one member of a group in a Table. Its fields are read-only; its runtime
// state is in State.
type Member struct {
	ID     string
	Addr   string
	Route  []byte
	Weight int
	// Index is the member's position in Table.Members, the same in every group; the
	// gateway keeps per-member objects (connection pools) in a slice indexed by it.
	Index int
	// State is the member's runtime state, shared across Tables by id.
	State *MemberState

	seed    uint64  // rendezvous seed: xxhash of the id, computed once
	logW    float64 // weight for weighted rendezvous
	weights bool    // the group has unequal weights
}

// Group is one target group in a Table.
type Group struct {
	Name string
	// Hosts are the host names the group answers, as configured (empty: any).
	Hosts []string
	// SwitchBack is the group's switch_back (see GroupSpec); Strict() its strict.
	SwitchBack bool
	Prefix     []byte
	Members    []*Member
	// Index is the group's position in Table.Groups.
	Index int

	chain   []Link
	balance Balance
	hashed  bool // the chain ends in hash: keys with no binding are hashed
	// tlsChain and tlsHashed are chain and hashed for keys of TLS sessions.
	tlsChain  []Link
	tlsHashed bool
	hasCookie bool // the chain has the cookie resolver
	strict    bool
	slots     []int // smooth weighted round-robin order of member indexes
	byRoute   map[string]int
	rr        atomic.Uint64
}

// Table is the immutable compiled routing snapshot: groups, members, host and path
// matching. Build it with NewTable; read it from any number of goroutines.
type Table struct {
	Groups  []*Group
	Members []*Member
	Key     KeySpec

	exact map[string][]*Group // lower-case host -> groups, longest prefix first
	wild  []wildHost          // longest suffix first
	any   []*Group            // groups for any host, longest prefix first
}

type wildHost struct {
	suffix []byte // ".example.com"
	groups []*Group
}

// maxHost bounds the host names Match will look up; longer ones match only groups that
// accept any host. DNS names are at most 253 bytes.
const maxHost = 255

// ErrSpec is a Spec that breaks what the router relies on. Specs come from a config
// that config.Validate accepted, which reports such problems to the user with the
// file's key path and line; an ErrSpec from NewTable is a bug in the caller.
var ErrSpec = errors.New("router: invalid spec")

// HasRoute reports whether a member of the group has route id r. Config-time speed:
// it indexes a map with the route (no allocation, as m[string(b)]).
func (g *Group) HasRoute(r []byte) bool {
	_, ok := g.byRoute[string(r)]
	return ok
}

// NewTable compiles a Spec. Member runtime states come from states, by id, so that a
// new Table carries the health and drain state of the members it shares with the old one.
// It checks only the invariants the router relies on (ErrSpec); validating a config
// is config's job.
func NewTable(spec Spec, states *States) (*Table, error) {
	if len(spec.Groups) == 0 {
		return nil, fmt.Errorf("%w: no group", ErrSpec)
	}
	if len(spec.Chain) == 0 {
		return nil, fmt.Errorf("%w: empty resolver chain", ErrSpec)
	}
	t := &Table{Key: spec.Key, exact: map[string][]*Group{}}
	wild := map[string][]*Group{}
	for gi, gs := range spec.Groups {
		if len(gs.Members) == 0 {
			return nil, fmt.Errorf("%w: group %d (%q): no member", ErrSpec, gi, gs.Name)
		}
		prefix := gs.PathPrefix
		if prefix == "" {
			prefix = "/"
		}
		if prefix[0] != '/' {
			return nil, fmt.Errorf("%w: group %d (%q): prefix %q does not start with /", ErrSpec, gi, gs.Name, prefix)
		}
		g := &Group{
			Name:       gs.Name,
			Hosts:      append([]string(nil), gs.Hosts...),
			SwitchBack: gs.SwitchBack,
			Prefix:     []byte(prefix),
			Index:      gi,
			chain:      groupChain(spec.Chain, gs.SwitchBack),
			balance:    spec.Balance,
			strict:     gs.Strict,
			byRoute:    map[string]int{},
		}
		_, g.hashed = spec.Chain[len(spec.Chain)-1].Resolver.(hashResolver)
		for _, l := range spec.Chain {
			if _, ok := l.Resolver.(cookieResolver); ok {
				g.hasCookie = true
			}
		}
		if len(spec.TLSChain) > 0 {
			g.tlsChain = groupChain(spec.TLSChain, gs.SwitchBack)
			_, g.tlsHashed = spec.TLSChain[len(spec.TLSChain)-1].Resolver.(hashResolver)
		}
		equal := true
		for mi, ms := range gs.Members {
			if ms.Weight <= 0 {
				return nil, fmt.Errorf("%w: group %d member %d (%q): weight %d is not positive", ErrSpec, gi, mi, ms.ID, ms.Weight)
			}
			route := ms.Route
			if route == "" {
				route = ms.ID
			}
			if _, dup := g.byRoute[route]; dup {
				return nil, fmt.Errorf("%w: group %d member %d (%q): route %q is not unique", ErrSpec, gi, mi, ms.ID, route)
			}
			m := &Member{
				ID:     ms.ID,
				Addr:   ms.Addr,
				Route:  []byte(route),
				Weight: ms.Weight,
				Index:  len(t.Members),
				State:  states.Get(ms.ID),
				seed:   xxhash.Sum64String(ms.ID),
				logW:   float64(ms.Weight),
			}
			if ms.Weight != gs.Members[0].Weight {
				equal = false
			}
			g.byRoute[route] = mi
			g.Members = append(g.Members, m)
			t.Members = append(t.Members, m)
		}
		for _, m := range g.Members {
			m.weights = !equal
		}
		g.slots = smoothWRR(g.Members)
		t.Groups = append(t.Groups, g)
		if len(gs.Hosts) == 0 {
			t.any = append(t.any, g)
		}
		for _, h := range gs.Hosts {
			h = strings.ToLower(h)
			if strings.HasPrefix(h, "*.") {
				wild[h[1:]] = append(wild[h[1:]], g)
			} else {
				t.exact[h] = append(t.exact[h], g)
			}
		}
	}
	byPrefix := func(gs []*Group) {
		sort.SliceStable(gs, func(i, j int) bool { return len(gs[i].Prefix) > len(gs[j].Prefix) })
	}
	byPrefix(t.any)
	for _, gs := range t.exact {
		byPrefix(gs)
	}
	for suffix, gs := range wild {
		byPrefix(gs)
		t.wild = append(t.wild, wildHost{suffix: []byte(suffix), groups: gs})
	}
	sort.Slice(t.wild, func(i, j int) bool { return len(t.wild[i].suffix) > len(t.wild[j].suffix) })
	return t, nil
}

// groupChain is the chain a group runs. Without switch_back, a learned binding (set
// when a session moved) must win over the route in the key, which still names the
// original member: the learned resolver is moved in front of the route resolver.
func groupChain(chain []Link, switchBack bool) []Link {
	route, learned := -1, -1
	for i, l := range chain {
		switch l.Resolver.(type) {
		case routeResolver:
			route = i
		case learnedResolver:
			learned = i
		}
	}
	if switchBack || route < 0 || learned < 0 || learned < route {
		return chain
	}
	c := make([]Link, 0, len(chain))
	c = append(c, chain[:route]...)
	c = append(c, chain[learned], chain[route])
	for i := route + 1; i < len(chain); i++ {
		if i != learned {
			c = append(c, chain[i])
		}
	}
	return c
}

// Group returns the group with the given name, or nil.
func (t *Table) Group(name string) *Group {
	for _, g := range t.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// Match returns the group for a request's Host header value and path (from PeekPath),
// or nil. Exact host names are tried first, then wildcards (most specific first), then
// the groups for any host; within each, the longest path prefix wins. Host matching
// ignores ASCII case and the port.
//
// Safe for concurrent use; does not allocate.
func (t *Table) Match(host, path []byte) *Group {
	if len(path) == 0 {
		path = strSlash
	}
	host = hostName(host)
	if len(host) <= maxHost && (len(t.exact) > 0 || len(t.wild) > 0) {
		var buf [maxHost]byte
		lc := buf[:len(host)]
		for i, c := range host {
			lc[i] = lower(c)
		}
		if g := matchPrefix(t.exact[string(lc)], path); g != nil {
			return g
		}
		for i := range t.wild {
			w := &t.wild[i]
			if len(lc) > len(w.suffix) && string(lc[len(lc)-len(w.suffix):]) == string(w.suffix) {
				if g := matchPrefix(w.groups, path); g != nil {
					return g
				}
			}
		}
	}
	return matchPrefix(t.any, path)
}

func matchPrefix(groups []*Group, path []byte) *Group {
	for _, g := range groups {
		if hasPathPrefix(path, g.Prefix) {
			return g
		}
	}
	return nil
}

// hasPathPrefix reports whether path starts with prefix at a segment boundary.
func hasPathPrefix(path, prefix []byte) bool {
	if len(path) < len(prefix) || string(path[:len(prefix)]) != string(prefix) {
		return false
	}
	if len(path) == len(prefix) || prefix[len(prefix)-1] == '/' {
		return true
	}
	c := path[len(prefix)]
	return c == '/' || c == ';'
}

// hostName strips the port from a Host header value ("h:8080", "[::1]:8080").
func hostName(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := indexByte(h, ']'); i >= 0 {
			return h[:i+1]
		}
		return h
	}
	if i := indexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

// smoothWRR lays out one cycle of smooth weighted round robin (as in NGINX): each
// member appears Weight times, spread out. Weights are scaled down by their greatest
// common divisor so that the cycle stays short.
func smoothWRR(ms []*Member) []int {
	d := 0
	for _, m := range ms {
		d = gcd(d, m.Weight)
	}
	total := 0
	w := make([]int, len(ms))
	for i, m := range ms {
		w[i] = m.Weight / d
		total += w[i]
	}
	cur := make([]int, len(ms))
	slots := make([]int, 0, total)
	for range total {
		best := 0
		for i := range ms {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		slots = append(slots, best)
	}
	return slots
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// weightedScore is the weighted rendezvous score -w/ln(u) for u in (0,1) taken from h.
func weightedScore(h uint64, w float64) float64 {
	u := (float64(h>>11) + 0.5) / (1 << 53)
	return -w / math.Log(u)
}
