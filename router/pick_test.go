package router

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// mapStore is a learned-session store for tests: key hash to member number.
type mapStore map[uint64]uint32

func (s mapStore) Lookup(keyHash uint64) (uint32, bool) {
	num, ok := s[keyHash]
	return num, ok
}

// pickFixture is one group of members m1..mn with routes clone1..clonen.
type pickFixture struct {
	tab   *Table
	g     *Group
	store mapStore
}

// newPickFixture builds a group with one member per weight and the resolver chain
// [route, learned, hash] (hashed) or [route, learned].
func newPickFixture(t testing.TB, hashed bool, balance Balance, weights ...int) *pickFixture {
	t.Helper()
	f := &pickFixture{store: mapStore{}}
	chain := []Link{RouteResolver(FormatAuto), LearnedResolver(f.store)}
	if hashed {
		chain = append(chain, HashResolver())
	}
	ms := make([]MemberSpec, len(weights))
	for i, w := range weights {
		n := strconv.Itoa(i + 1)
		ms[i] = MemberSpec{ID: "m" + n, Addr: "10.0.0." + n + ":8080", Route: "clone" + n, Weight: w}
	}
	f.tab = mustTable(t, Spec{
		Groups:  []GroupSpec{{Name: "app", Members: ms}},
		Key:     KeySpec{Cookies: [][]byte{[]byte("JSESSIONID")}},
		Balance: balance,
		Chain:   chain,
	}, NewStates())
	f.g = f.tab.Groups[0]
	return f
}

// m returns the member with the given id.
func (f *pickFixture) m(id string) *Member {
	for _, m := range f.g.Members {
		if m.ID == id {
			return m
		}
	}
	panic("BUG: no member " + id)
}

func (f *pickFixture) down(ids ...string) {
	for _, id := range ids {
		f.m(id).State.SetHealthy(false)
	}
}

func (f *pickFixture) admin(a Admin, ids ...string) {
	for _, id := range ids {
		f.m(id).State.SetAdmin(a)
	}
}

// learn binds key to the member with the given id, as the gateway does on Set-Cookie.
func (f *pickFixture) learn(key, id string) {
	f.store[HashKey([]byte(key))] = f.m(id).State.Num()
}

func memberID(m *Member) string {
	if m == nil {
		return "<nil>"
	}
	return m.ID
}

func TestPick(t *testing.T) {
	const (
		ws3      = wsID + ":clone1:clone2:clone3"
		ws1      = wsID + ":clone1"
		unknown  = wsID + ":clone9"
		unbound  = tomcatID // no route at all
		tomcat3  = tomcatID + ".clone3"
		wsPlus   = wsID + "+clone2+clone1"
		wsPct    = wsID + "%3Aclone4%3aclone1"
		viaHash  = "hash" // want: the key's rendezvous member after setup
		nobodyID = "<nil>"
	)
	tests := []struct {
		name    string
		setup   func(f *pickFixture)
		key     string
		want    string   // member id, viaHash or nobodyID
		notIn   []string // with viaHash: members that must not be chosen
		outcome Outcome
	}{
		{"websphere first clone", nil, ws3, "m1", nil, OutcomeRoute},
		{"websphere plus separators", nil, wsPlus, "m2", nil, OutcomeRoute},
		{"websphere encoded colon", nil, wsPct, "m4", nil, OutcomeRoute},
		{"tomcat jvmRoute", nil, tomcat3, "m3", nil, OutcomeRoute},
		{"first clone down: second clone", func(f *pickFixture) { f.down("m1") }, ws3, "m2", nil, OutcomeMoved},
		{"first two clones down: third clone", func(f *pickFixture) { f.down("m1", "m2") }, ws3, "m3", nil, OutcomeMoved},
		{"first clone in maintenance: second clone", func(f *pickFixture) { f.admin(AdminMaint, "m1") }, ws3, "m2", nil, OutcomeMoved},
		{"all clones down: rendezvous over the rest", func(f *pickFixture) { f.down("m1", "m2", "m3") },
			ws3, viaHash, []string{"m1", "m2", "m3"}, OutcomeMoved},
		{"only clone down: rendezvous over the rest", func(f *pickFixture) { f.down("m1") },
			ws1, viaHash, []string{"m1"}, OutcomeMoved},
		{"tomcat route down: rendezvous over the rest", func(f *pickFixture) { f.down("m3") },
			tomcat3, viaHash, []string{"m3"}, OutcomeMoved},
		{"unknown first clone: later clone is a route hit", nil, wsID + ":clone9:clone2", "m2", nil, OutcomeRoute},
		{"unknown route: learned", func(f *pickFixture) { f.learn(unknown, "m4") }, unknown, "m4", nil, OutcomeLearned},
		{"no route: learned", func(f *pickFixture) { f.learn(unbound, "m5") }, unbound, "m5", nil, OutcomeLearned},
		{"unknown route, not learned: moved by hash", nil, unknown, viaHash, nil, OutcomeMoved},
		{"no route, not learned: hash", nil, unbound, viaHash, nil, OutcomeHash},
		{"learned (moved) binding beats route without switch_back", func(f *pickFixture) { f.learn(ws3, "m5") }, ws3, "m5", nil, OutcomeLearned},
		{"learned member down: moved", func(f *pickFixture) { f.learn(unbound, "m5"); f.down("m5") },
			unbound, viaHash, []string{"m5"}, OutcomeMoved},
		{"learned member in maintenance: moved", func(f *pickFixture) { f.learn(unbound, "m5"); f.admin(AdminMaint, "m5") },
			unbound, viaHash, []string{"m5"}, OutcomeMoved},
		{"learned member draining: still bound", func(f *pickFixture) { f.learn(unbound, "m5"); f.admin(AdminDrain, "m5") },
			unbound, "m5", nil, OutcomeLearned},
		{"route down, learned usable: learned", func(f *pickFixture) { f.down("m1"); f.learn(ws1, "m4") },
			ws1, "m4", nil, OutcomeLearned},
		{"learned number of another table's member: hash", func(f *pickFixture) { f.store[HashKey([]byte(unbound))] = 999 },
			unbound, viaHash, nil, OutcomeHash},
		{"draining first clone keeps its sessions", func(f *pickFixture) { f.admin(AdminDrain, "m1") }, ws3, "m1", nil, OutcomeRoute},
		{"draining and down first clone: second clone", func(f *pickFixture) { f.admin(AdminDrain, "m1"); f.down("m1") },
			ws3, "m2", nil, OutcomeMoved},
		{"maintenance member serves no route", func(f *pickFixture) { f.admin(AdminMaint, "m1") },
			ws1, viaHash, []string{"m1"}, OutcomeMoved},
		{"empty key: balanced", nil, "", viaHash, nil, OutcomeBalanced},
		{"all down: route key", func(f *pickFixture) { f.down("m1", "m2", "m3", "m4", "m5") }, ws3, nobodyID, nil, OutcomeNone},
		{"all down: unbound key", func(f *pickFixture) { f.down("m1", "m2", "m3", "m4", "m5") }, unbound, nobodyID, nil, OutcomeNone},
		{"all down: learned key", func(f *pickFixture) { f.learn(unbound, "m2"); f.down("m1", "m2", "m3", "m4", "m5") },
			unbound, nobodyID, nil, OutcomeNone},
		{"all down: empty key", func(f *pickFixture) { f.down("m1", "m2", "m3", "m4", "m5") }, "", nobodyID, nil, OutcomeNone},
		{"all in maintenance: unbound key", func(f *pickFixture) { f.admin(AdminMaint, "m1", "m2", "m3", "m4", "m5") },
			unbound, nobodyID, nil, OutcomeNone},
		{"only a draining member left: unbound key hashed to it", func(f *pickFixture) {
			f.down("m1", "m2", "m3", "m4")
			f.admin(AdminDrain, "m5")
		}, unbound, "m5", nil, OutcomeHash},
		{"only a draining member left: empty key balanced to it", func(f *pickFixture) {
			f.down("m1", "m2", "m3", "m4")
			f.admin(AdminDrain, "m5")
		}, "", "m5", nil, OutcomeBalanced},
		{"only a draining member left: route key moved to it", func(f *pickFixture) {
			f.down("m1", "m2", "m3", "m4")
			f.admin(AdminDrain, "m5")
		}, ws1, "m5", nil, OutcomeMoved},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newPickFixture(t, true, BalanceRoundRobin, 1, 1, 1, 1, 1)
			if tc.setup != nil {
				tc.setup(f)
			}
			key := []byte(tc.key)
			h := HashKey(key)
			m, o := f.g.Pick(key, h)
			got := memberID(m)
			switch tc.want {
			case viaHash:
				if m == nil || slices.Contains(tc.notIn, got) {
					t.Errorf("Pick(%q) = %s, %v; want a member other than %q, %v", tc.key, got, o, tc.notIn, tc.outcome)
				}
				if len(key) > 0 {
					if want := f.g.Members[f.g.Rendezvous(h)].ID; got != want {
						t.Errorf("Pick(%q) = %s, %v; want the key's rendezvous member %s", tc.key, got, o, want)
					}
				}
			default:
				if got != tc.want {
					t.Errorf("Pick(%q) = %s, %v; want %s, %v", tc.key, got, o, tc.want, tc.outcome)
				}
			}
			if o != tc.outcome {
				t.Errorf("Pick(%q) = %s, %v; want outcome %v", tc.key, got, o, tc.outcome)
			}
		})
	}
}

func TestPickWithoutHash(t *testing.T) {
	f := newPickFixture(t, false, BalanceRoundRobin, 1, 1, 1)
	if m, o := f.g.Pick([]byte(wsID+":clone2"), HashKey([]byte(wsID+":clone2"))); memberID(m) != "m2" || o != OutcomeRoute {
		t.Errorf("Pick(route clone2) = %s, %v; want m2, route", memberID(m), o)
	}
	f.learn(tomcatID, "m3")
	if m, o := f.g.Pick([]byte(tomcatID), HashKey([]byte(tomcatID))); memberID(m) != "m3" || o != OutcomeLearned {
		t.Errorf("Pick(learned) = %s, %v; want m3, learned", memberID(m), o)
	}
	// Unbound keys are balanced like keyless requests: round robin visits every member.
	seen := map[string]int{}
	for i := range 300 {
		key := []byte(fmt.Sprintf("%s%06d", tomcatID[:26], i))
		m, o := f.g.Pick(key, HashKey(key))
		if o != OutcomeBalanced || m == nil {
			t.Fatalf("Pick(%q) = %s, %v; want a member, balanced", key, memberID(m), o)
		}
		seen[m.ID]++
	}
	if seen["m1"] != 100 || seen["m2"] != 100 || seen["m3"] != 100 {
		t.Errorf("unbound keys per member = %v, want 100 each", seen)
	}
	// A bound key whose member is down still moves by rendezvous, not by the balancer.
	f.down("m2")
	key := []byte(wsID + ":clone2")
	h := HashKey(key)
	m, o := f.g.Pick(key, h)
	if o != OutcomeMoved || m == nil || m.ID == "m2" || m != f.g.Members[f.g.Rendezvous(h)] {
		t.Errorf("Pick(route to down m2) = %s, %v; want its rendezvous member, moved", memberID(m), o)
	}
	f.down("m1", "m3")
	if m, o := f.g.Pick([]byte(tomcatID+"x"), HashKey([]byte(tomcatID+"x"))); m != nil || o != OutcomeNone {
		t.Errorf("Pick(unbound, all down) = %s, %v; want <nil>, none", memberID(m), o)
	}
}

func TestPickDrainGetsNoNewKeys(t *testing.T) {
	f := newPickFixture(t, true, BalanceRoundRobin, 1, 1, 1, 1, 1)
	f.admin(AdminDrain, "m1")
	if m, o := f.g.Pick([]byte(wsID+":clone1"), HashKey([]byte(wsID+":clone1"))); memberID(m) != "m1" || o != OutcomeRoute {
		t.Errorf("Pick(route to draining m1) = %s, %v; want m1, route", memberID(m), o)
	}
	counts := map[string]int{}
	for i := range 2000 {
		key := testKey(i)
		m, o := f.g.Pick(key, HashKey(key))
		if o != OutcomeHash {
			t.Fatalf("Pick(%q) outcome = %v, want hash", key, o)
		}
		counts[memberID(m)]++
		if m, o := f.g.Pick(nil, 0); memberID(m) == "m1" {
			t.Fatalf("Pick(no key) = m1, %v; a draining member must get no new sessions", o)
		}
	}
	if counts["m1"] != 0 {
		t.Errorf("draining m1 got %d of 2000 new hashed keys, want 0 (all: %v)", counts["m1"], counts)
	}
	for _, id := range []string{"m2", "m3", "m4", "m5"} {
		if counts[id] == 0 {
			t.Errorf("%s got no hashed key (all: %v)", id, counts)
		}
	}
}

func TestPickMaintServesNothing(t *testing.T) {
	f := newPickFixture(t, true, BalanceRoundRobin, 1, 1, 1)
	f.admin(AdminMaint, "m2")
	f.learn(tomcatID, "m2")
	keys := [][]byte{[]byte(wsID + ":clone2"), []byte(tomcatID + ".clone2"), []byte(tomcatID), nil}
	for i := range 1000 {
		keys = append(keys, testKey(i))
	}
	for _, key := range keys {
		if m, o := f.g.Pick(key, HashKey(key)); m == nil || m.ID == "m2" {
			t.Fatalf("Pick(%q) = %s, %v; want a member other than m2 (maint)", key, memberID(m), o)
		}
	}
}

func TestPickRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		setup   func(f *pickFixture)
		picks   int
		want    map[string]int
		tol     float64 // allowed relative deviation from want; 0: exact
	}{
		{"equal weights", []int{1, 1, 1}, nil, 300, map[string]int{"m1": 100, "m2": 100, "m3": 100}, 0},
		{"weights 1 and 3", []int{1, 3}, nil, 400, map[string]int{"m1": 100, "m2": 300}, 0},
		{"weights 2 and 4 reduce to 1 and 2", []int{2, 4}, nil, 300, map[string]int{"m1": 100, "m2": 200}, 0},
		// A member that takes no new session has its share spread over the others by
		// weight, not handed to the member in the next slot.
		{"down member's share spread evenly", []int{1, 1, 1}, func(f *pickFixture) { f.down("m2") }, 3000,
			map[string]int{"m1": 1500, "m3": 1500}, 0.1},
		{"draining member's share spread evenly", []int{1, 1, 1}, func(f *pickFixture) { f.admin(AdminDrain, "m3") }, 3000,
			map[string]int{"m1": 1500, "m2": 1500}, 0.1},
		{"down member's share spread by weight", []int{1, 1, 3}, func(f *pickFixture) { f.down("m1") }, 5000,
			map[string]int{"m2": 1250, "m3": 3750}, 0.1},
		{"two of five down", []int{1, 1, 1, 1, 1}, func(f *pickFixture) { f.down("m2", "m3") }, 6000,
			map[string]int{"m1": 2000, "m4": 2000, "m5": 2000}, 0.1},
		{"only draining members left", []int{1, 1}, func(f *pickFixture) { f.admin(AdminDrain, "m1", "m2") }, 10,
			map[string]int{"m1": 10}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newPickFixture(t, true, BalanceRoundRobin, tc.weights...)
			if tc.setup != nil {
				tc.setup(f)
			}
			got := map[string]int{}
			for range tc.picks {
				m, o := f.g.Pick(nil, 0)
				if m == nil || o != OutcomeBalanced {
					t.Fatalf("Pick(no key) = %s, %v; want a member, balanced", memberID(m), o)
				}
				got[m.ID]++
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d keyless picks = %v, want %v", tc.picks, got, tc.want)
			}
			for id, want := range tc.want {
				if d := float64(got[id] - want); d > tc.tol*float64(want) || -d > tc.tol*float64(want) {
					t.Errorf("%d keyless picks = %v, want %v (±%.0f%%)", tc.picks, got, tc.want, tc.tol*100)
					break
				}
			}
		})
	}
}

func TestPickRoundRobinSmooth(t *testing.T) {
	// Weights 1 and 3: every window of four picks has exactly one m1, never m1 twice in a row.
	f := newPickFixture(t, true, BalanceRoundRobin, 1, 3)
	var seq []string
	for range 40 {
		m, _ := f.g.Pick(nil, 0)
		seq = append(seq, memberID(m))
	}
	for i := 0; i+4 <= len(seq); i++ {
		if n := countOf(seq[i:i+4], "m1"); n != 1 {
			t.Fatalf("picks %v: window %d has %d of m1, want 1", seq, i, n)
		}
	}
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func TestPickLeastRequests(t *testing.T) {
	tests := []struct {
		name     string
		weights  []int
		inflight []int64
		setup    func(f *pickFixture)
		want     string
	}{
		{"fewest in flight", []int{1, 1, 1}, []int64{5, 2, 7}, nil, "m2"},
		{"per weight", []int{1, 2, 1}, []int64{3, 5, 4}, nil, "m2"},
		{"weight outweighs count", []int{1, 4}, []int64{2, 6}, nil, "m2"},
		{"down member skipped", []int{1, 1, 1}, []int64{5, 0, 7}, func(f *pickFixture) { f.down("m2") }, "m1"},
		{"draining member skipped", []int{1, 1, 1}, []int64{5, 0, 7}, func(f *pickFixture) { f.admin(AdminDrain, "m2") }, "m1"},
		{"only draining members left", []int{1, 1, 1}, []int64{5, 3, 7},
			func(f *pickFixture) { f.down("m1"); f.admin(AdminDrain, "m2", "m3") }, "m2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newPickFixture(t, true, BalanceLeastRequests, tc.weights...)
			for i, n := range tc.inflight {
				f.g.Members[i].State.Inflight.Store(n)
			}
			if tc.setup != nil {
				tc.setup(f)
			}
			for range 10 {
				if m, o := f.g.Pick(nil, 0); memberID(m) != tc.want || o != OutcomeBalanced {
					t.Fatalf("Pick(no key) with in flight %v, weights %v = %s, %v; want %s, balanced",
						tc.inflight, tc.weights, memberID(m), o, tc.want)
				}
			}
		})
	}
}

func TestPickLeastRequestsTiesRotate(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *pickFixture)
		want  map[string]int
	}{
		{"all idle", nil, map[string]int{"m1": 100, "m2": 100, "m3": 100}},
		{"idle, middle member down", func(f *pickFixture) { f.down("m2") }, map[string]int{"m1": 150, "m3": 150}},
		{"idle, first member draining", func(f *pickFixture) { f.admin(AdminDrain, "m1") }, map[string]int{"m2": 150, "m3": 150}},
		{"one busy member", func(f *pickFixture) { f.m("m3").State.Inflight.Store(4) }, map[string]int{"m1": 150, "m2": 150}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newPickFixture(t, true, BalanceLeastRequests, 1, 1, 1)
			if tc.setup != nil {
				tc.setup(f)
			}
			got := map[string]int{}
			for range 300 {
				m, _ := f.g.Pick(nil, 0)
				got[memberID(m)]++
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("300 least_requests picks = %v, want %v", got, tc.want)
			}
		})
	}
	f := newPickFixture(t, true, BalanceLeastRequests, 1, 1, 1)
	f.down("m1", "m2", "m3")
	if m, o := f.g.Pick(nil, 0); m != nil || o != OutcomeNone {
		t.Errorf("Pick(no key, all down) = %s, %v; want <nil>, none", memberID(m), o)
	}
}

// testKey returns the i-th of a deterministic set of Tomcat-style session keys without route.
func testKey(i int) []byte {
	return []byte(fmt.Sprintf("%026X%06d", uint64(i)*0x9E3779B97F4A7C15, i))
}

const rendezvousKeys = 10000

// hashOwners returns the member id each test key hashes to.
func hashOwners(t *testing.T, g *Group) []string {
	t.Helper()
	owners := make([]string, rendezvousKeys)
	for i := range owners {
		key := testKey(i)
		m, o := g.Pick(key, HashKey(key))
		if m == nil || o != OutcomeHash {
			t.Fatalf("Pick(%q) = %s, %v; want a member, hash", key, memberID(m), o)
		}
		owners[i] = m.ID
	}
	return owners
}

func hashSpec(ms []MemberSpec) Spec {
	return Spec{Groups: []GroupSpec{{Name: "app", Members: ms}}, Chain: []Link{HashResolver()}}
}

func TestRendezvousDeterministic(t *testing.T) {
	spec := hashSpec(members(5))
	a := hashOwners(t, mustTable(t, spec, NewStates()).Groups[0])
	b := hashOwners(t, mustTable(t, spec, NewStates()).Groups[0])
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("key %q: table 1 picks %s, table 2 picks %s; want the same", testKey(i), a[i], b[i])
		}
	}
	// The chain in front of hash does not change the hashed member of an unbound key.
	f := newPickFixture(t, true, BalanceRoundRobin, 1, 1, 1, 1, 1)
	c := hashOwners(t, f.g)
	for i := range a {
		if a[i] != c[i] {
			t.Fatalf("key %q: hash-only chain picks %s, full chain picks %s; want the same", testKey(i), a[i], c[i])
		}
	}
}

func TestRendezvousStability(t *testing.T) {
	const n = 5
	for _, weights := range [][]int{{1, 1, 1, 1, 1}, {2, 1, 3, 1, 1}} {
		ms := members(n)
		for i := range ms {
			ms[i].Weight = weights[i]
		}
		spec := hashSpec(ms)
		before := hashOwners(t, mustTable(t, spec, NewStates()).Groups[0])
		for gone := range n {
			goneID := ms[gone].ID
			rest := slices.Delete(slices.Clone(ms), gone, gone+1)

			down := mustTable(t, spec, NewStates())
			down.Members[gone].State.SetHealthy(false)
			removed := mustTable(t, hashSpec(rest), NewStates())

			for _, v := range []struct {
				how string
				g   *Group
			}{{"marked down", down.Groups[0]}, {"removed", removed.Groups[0]}} {
				t.Run(fmt.Sprintf("weights %v, %s %s", weights, goneID, v.how), func(t *testing.T) {
					after := hashOwners(t, v.g)
					moved := map[string]int{}
					for i := range before {
						switch {
						case before[i] != goneID && after[i] != before[i]:
							t.Fatalf("key %q moved from %s to %s, but only %s's keys may move",
								testKey(i), before[i], after[i], goneID)
						case before[i] == goneID && after[i] == goneID:
							t.Fatalf("key %q stayed on %s", testKey(i), goneID)
						case before[i] == goneID:
							moved[after[i]]++
						}
					}
					for _, m := range rest {
						if moved[m.ID] == 0 {
							t.Errorf("survivor %s got none of %s's keys (moved: %v)", m.ID, goneID, moved)
						}
					}
				})
			}
			// Back up: every key returns.
			down.Members[gone].State.SetHealthy(true)
			if back := hashOwners(t, down.Groups[0]); !slices.Equal(back, before) {
				t.Errorf("weights %v: after %s came back up, keys did not all return", weights, goneID)
			}
		}
	}
}

func TestRendezvousDistribution(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
	}{
		{"five equal", []int{1, 1, 1, 1, 1}},
		{"three equal", []int{1, 1, 1}},
		{"weights 2 and 1", []int{2, 1}},
		{"weights 2,1,1,1,1", []int{2, 1, 1, 1, 1}},
		{"weights 1,3,6", []int{1, 3, 6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms := members(len(tc.weights))
			total := 0
			for i, w := range tc.weights {
				ms[i].Weight = w
				total += w
			}
			owners := hashOwners(t, mustTable(t, hashSpec(ms), NewStates()).Groups[0])
			counts := map[string]int{}
			for _, id := range owners {
				counts[id]++
			}
			for i, m := range ms {
				want := float64(rendezvousKeys) * float64(tc.weights[i]) / float64(total)
				if got := float64(counts[m.ID]); got < 0.8*want || got > 1.2*want {
					t.Errorf("%s (weight %d) got %v of %d keys, want %.0f ±20%% (all: %v)",
						m.ID, tc.weights[i], got, rendezvousKeys, want, counts)
				}
			}
		})
	}
}

// setPickState sets one member's state in TestPickConcurrent: 0 up, 1 down,
// 2 draining, 3 in maintenance.
func setPickState(st *MemberState, s int) {
	st.SetHealthy(s != 1)
	switch s {
	case 2:
		st.SetAdmin(AdminDrain)
	case 3:
		st.SetAdmin(AdminMaint)
	default:
		st.SetAdmin(AdminReady)
	}
}

var pickStateNames = [4]string{"up", "down", "drain", "maint"}

// TestPickConcurrent runs Pick from several goroutines while another flips the health
// and admin state of m2 and m3 (run it under -race). m1 stays up and m4 stays down, so
// some answers never depend on timing. The flipper publishes each state it sets under
// a sequence number, so a Pick that no flip overlapped must give a member usable in
// that state, and for a key exactly the answer that state gives without concurrency:
// the same in every goroutine.
func TestPickConcurrent(t *testing.T) {
	f := newPickFixture(t, true, BalanceRoundRobin, 1, 2, 1, 1)
	lr := newPickFixture(t, true, BalanceLeastRequests, 1, 2, 1, 1)
	f.down("m4")
	lr.down("m4")
	const (
		routed  = wsID + ":clone1"        // always m1, route
		learned = tomcatID + "-m1"        // always m1, learned
		learnM2 = tomcatID + "-m2"        // m2 while it serves bound sessions, else moved
		ws2then = wsID + ":clone2:clone1" // m2 while it serves bound sessions, else m1
	)
	f.learn(learned, "m1")
	f.learn(learnM2, "m2")
	keys := [][]byte{[]byte(routed), []byte(learned), []byte(learnM2), []byte(ws2then),
		[]byte(wsID + ":clone4"), []byte(wsID + ":clone3:clone2"), []byte(tomcatID + ".clone3"), []byte(wsID + ":clone9")}
	for i := range 56 {
		keys = append(keys, testKey(i))
	}
	const states = 16 // 4 states of m2 times 4 of m3
	flip := func(x *pickFixture, s int) {
		setPickState(x.m("m2").State, s%4)
		setPickState(x.m("m3").State, s/4)
	}
	stateName := func(s int) string { return "m2 " + pickStateNames[s%4] + ", m3 " + pickStateNames[s/4] }

	type answer struct {
		m *Member
		o Outcome
	}
	var (
		want                   [states][]answer // by key, computed without concurrency
		usableNew, usableBound [states][4]bool  // by member index
	)
	// check reports whether m, o is a valid answer of x.g.Pick for keys[k] (k < 0: no
	// key); s is the state if no flip overlapped the Pick, else -1.
	check := func(x *pickFixture, k int, m *Member, o Outcome, s int) bool {
		t.Helper()
		var key []byte
		if k >= 0 {
			key = keys[k]
		}
		pick := "Pick"
		if x == lr {
			pick = "Pick (least_requests)"
		}
		i := slices.Index(x.g.Members, m)
		switch {
		case i < 0:
			t.Errorf("%s(%q) = %s, %v; want a member of the group (m1 is always up)", pick, key, memberID(m), o)
		case m.ID == "m4":
			t.Errorf("%s(%q) = m4, %v; want a member other than m4 (down)", pick, key, o)
		case string(key) == routed && (m.ID != "m1" || o != OutcomeRoute):
			t.Errorf("%s(%q) = %s, %v; want m1, route", pick, key, m.ID, o)
		case string(key) == learned && (m.ID != "m1" || o != OutcomeLearned):
			t.Errorf("%s(%q) = %s, %v; want m1, learned", pick, key, m.ID, o)
		case s < 0:
			return true
		case (o == OutcomeHash || o == OutcomeBalanced) && !usableNew[s][i]:
			t.Errorf("%s(%q) = %s, %v with %s; want a member that takes new sessions", pick, key, m.ID, o, stateName(s))
		case !usableBound[s][i]:
			t.Errorf("%s(%q) = %s, %v with %s; want a member that serves bound sessions", pick, key, m.ID, o, stateName(s))
		case k >= 0 && (m != want[s][k].m || o != want[s][k].o):
			t.Errorf("%s(%q) = %s, %v with %s; want %s, %v as without concurrency",
				pick, key, m.ID, o, stateName(s), memberID(want[s][k].m), want[s][k].o)
		default:
			return true
		}
		return false
	}
	for s := range states {
		flip(f, s)
		for i, m := range f.g.Members {
			usableNew[s][i], usableBound[s][i] = m.State.UsableNew(), m.State.UsableBound()
		}
		for k, key := range keys {
			m, o := f.g.Pick(key, HashKey(key))
			want[s] = append(want[s], answer{m, o})
			check(f, k, m, o, s)
		}
	}
	flip(f, 0)
	if t.Failed() {
		t.FailNow()
	}

	var (
		seq     atomic.Uint64 // odd while the flipper changes states
		cur     atomic.Int64  // the state set before seq last became even
		stop    atomic.Bool   // the flipper is done or a picker failed
		picks   atomic.Int64
		checked atomic.Int64 // picks that no flip overlapped
	)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				k := (i + w*17) % len(keys)
				key := keys[k]
				picks.Add(1)
				before := seq.Load()
				s := int(cur.Load())
				m, o := f.g.Pick(key, HashKey(key))
				mb, ob := f.g.Pick(nil, 0)
				ml, ol := lr.g.Pick(nil, 0)
				if ml != nil {
					ml.State.Inflight.Add(1)
				}
				if seq.Load() != before || before%2 == 1 {
					s = -1
				} else {
					checked.Add(1)
				}
				ok := check(f, k, m, o, s) && check(f, -1, mb, ob, s) && check(lr, -1, ml, ol, s)
				if ml != nil {
					ml.State.Inflight.Add(-1)
				}
				if !ok {
					stop.Store(true)
					return
				}
			}
		})
	}
	wg.Go(func() {
		defer stop.Store(true)
		for i := 1; i <= 20*states && !stop.Load(); i++ {
			s := i * 7 % states // every state, in an order that changes both members
			seq.Add(1)
			cur.Store(int64(s))
			flip(f, s)
			flip(lr, s)
			seq.Add(1)
			// Let the pickers go through about every key in this state before the next
			// flip; the picks that a flip overlaps are checked for what holds in any state.
			for n := picks.Load() + int64(len(keys)); picks.Load() < n && !stop.Load(); {
				runtime.Gosched()
			}
		}
	})
	wg.Wait()
	if checked.Load() == 0 {
		t.Errorf("no Pick ran between two flips: no exact answer was checked")
	}
}

func TestOutcomeString(t *testing.T) {
	want := map[Outcome]string{
		OutcomeNone: "none", OutcomeRoute: "route", OutcomeLearned: "learned",
		OutcomeHash: "hash", OutcomeBalanced: "balanced", OutcomeMoved: "moved",
	}
	for o, s := range want {
		if got := o.String(); got != s {
			t.Errorf("Outcome(%d).String() = %q, want %q", o, got, s)
		}
	}
}

func TestParseBalance(t *testing.T) {
	tests := []struct {
		in   string
		want Balance
		ok   bool
	}{
		{"round_robin", BalanceRoundRobin, true},
		{"", BalanceRoundRobin, true},
		{"least_requests", BalanceLeastRequests, true},
		{"least_conn", BalanceRoundRobin, false},
		{"Round_Robin", BalanceRoundRobin, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got, ok := ParseBalance(tc.in); got != tc.want || ok != tc.ok {
				t.Errorf("ParseBalance(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestMemberByRoute(t *testing.T) {
	// Up to eight members are scanned, more are looked up in the map: both agree.
	for _, n := range []int{1, 8, 9, 20} {
		ms := members(n)
		for i := range ms {
			ms[i].Route = "clone" + strconv.Itoa(i+1)
		}
		g := mustTable(t, hashSpec(ms), NewStates()).Groups[0]
		for i := range n {
			if got := g.MemberByRoute([]byte(ms[i].Route)); got != i {
				t.Errorf("%d members: MemberByRoute(%q) = %d, want %d", n, ms[i].Route, got, i)
			}
			if got := g.MemberByNum(g.Members[i].State.Num()); got != i {
				t.Errorf("%d members: MemberByNum(%d) = %d, want %d", n, g.Members[i].State.Num(), got, i)
			}
		}
		for _, r := range []string{"", "clone0", "clone", "Clone1", "m1"} {
			if got := g.MemberByRoute([]byte(r)); got != -1 {
				t.Errorf("%d members: MemberByRoute(%q) = %d, want -1", n, r, got)
			}
		}
	}
}

// newGroupFixture is newPickFixture's group with switch_back and strict set.
func newGroupFixture(t *testing.T, switchBack, strict bool) *pickFixture {
	t.Helper()
	f := &pickFixture{store: mapStore{}}
	ms := []MemberSpec{}
	for i := 1; i <= 3; i++ {
		n := strconv.Itoa(i)
		ms = append(ms, MemberSpec{ID: "m" + n, Addr: "10.0.0." + n + ":8080", Route: "clone" + n, Weight: 1})
	}
	f.tab = mustTable(t, Spec{
		Groups: []GroupSpec{{Name: "app", Members: ms, SwitchBack: switchBack, Strict: strict}},
		Key:    KeySpec{Cookies: [][]byte{[]byte("JSESSIONID")}},
		Chain:  []Link{RouteResolver(FormatAuto), LearnedResolver(f.store), HashResolver()},
	}, NewStates())
	f.g = f.tab.Groups[0]
	return f
}

func TestDecideSwitchBack(t *testing.T) {
	const key = wsID + ":clone1"
	for _, tc := range []struct {
		name       string
		switchBack bool
		want       string
		outcome    Outcome
	}{
		{"stays where it moved", false, "m2", OutcomeLearned},
		{"switches back", true, "m1", OutcomeRoute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newGroupFixture(t, tc.switchBack, false)
			f.down("m1")
			d := f.g.Decide([]byte(key), HashKey([]byte(key)))
			if d.Outcome != OutcomeMoved || d.Reason != MoveMemberDown || memberID(d.Bound) != "m1" {
				t.Fatalf("Decide with m1 down = %s, %s, %s, bound %s; want moved, member_down, bound m1",
					memberID(d.Member), d.Outcome, d.Reason, memberID(d.Bound))
			}
			// The gateway learns the move; m1 then comes back.
			f.learn(key, d.Member.ID)
			f.m("m1").State.SetHealthy(true)
			want := tc.want
			if want == "m2" {
				want = d.Member.ID
			}
			if m, o := f.g.Pick([]byte(key), HashKey([]byte(key))); memberID(m) != want || o != tc.outcome {
				t.Fatalf("Pick after m1 is back = %s, %s; want %s, %s", memberID(m), o, want, tc.outcome)
			}
		})
	}
}

func TestDecideStrict(t *testing.T) {
	f := newGroupFixture(t, false, true)
	for _, key := range []string{wsID + ":clone1", wsID + ":clone1:clone2"} {
		f.down("m1")
		d := f.g.Decide([]byte(key), HashKey([]byte(key)))
		if d.Member != nil || d.Outcome != OutcomeNone || d.Reason != MoveMemberDown {
			t.Fatalf("strict Decide(%q) with m1 down = %s, %s, %s; want <nil>, none, member_down",
				key, memberID(d.Member), d.Outcome, d.Reason)
		}
	}
	if m, o := f.g.Pick([]byte(wsID+":clone2"), HashKey([]byte(wsID+":clone2"))); memberID(m) != "m2" || o != OutcomeRoute {
		t.Fatalf("strict Pick of a usable route = %s, %s; want m2, route", memberID(m), o)
	}
}

func TestDecideReasons(t *testing.T) {
	const key = wsID + ":clone1"
	for _, tc := range []struct {
		name  string
		setup func(s *MemberState)
		want  MoveReason
	}{
		{"down", func(s *MemberState) { s.SetHealthy(false) }, MoveMemberDown},
		{"ejected", func(s *MemberState) { s.SetEjected(true) }, MoveEjected},
		{"maint", func(s *MemberState) { s.SetAdmin(AdminMaint) }, MoveMaint},
		{"drain deadline", func(s *MemberState) { s.SetAdmin(AdminDrain); s.SetDrainExpired(true) }, MoveDrainingDeadline},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newGroupFixture(t, false, false)
			tc.setup(f.m("m1").State)
			d := f.g.Decide([]byte(key), HashKey([]byte(key)))
			if d.Outcome != OutcomeMoved || d.Reason != tc.want || d.Member == nil || d.Member.ID == "m1" {
				t.Fatalf("Decide = %s, %s, %s; want moved off m1, %s", memberID(d.Member), d.Outcome, d.Reason, tc.want)
			}
		})
	}
	f := newGroupFixture(t, false, false)
	d := f.g.Decide([]byte(wsID+":clone9"), HashKey([]byte(wsID+":clone9")))
	if d.Outcome != OutcomeMoved || d.Reason != MoveUnknownRoute || d.Bound != nil {
		t.Fatalf("Decide(unknown route) = %s, %s; want moved, unknown_route", d.Outcome, d.Reason)
	}
}

func TestRetryOrder(t *testing.T) {
	f := newGroupFixture(t, false, false)
	for i := range 200 {
		key := []byte(fmt.Sprintf("key-%d", i))
		h := HashKey(key)
		var tried Tried
		first := f.g.Members[f.g.Rendezvous(h)]
		tried.Add(first)
		next := f.g.Retry(h, true, &tried)
		// The retry goes where Decide moves the key once the first member is down.
		first.State.SetHealthy(false)
		want := f.g.Members[f.g.Rendezvous(h)]
		first.State.SetHealthy(true)
		if next != want {
			t.Fatalf("Retry(%s) after %s = %s, want %s", key, first.ID, memberID(next), want.ID)
		}
		tried.Add(next)
		third := f.g.Retry(h, true, &tried)
		if third == nil || third == first || third == next {
			t.Fatalf("second Retry(%s) = %s, want the remaining member", key, memberID(third))
		}
		tried.Add(third)
		if m := f.g.Retry(h, true, &tried); m != nil {
			t.Fatalf("Retry with every member tried = %s, want nil", m.ID)
		}
	}
}

func TestBoundSessions(t *testing.T) {
	s := NewStates().Get("m")
	for i := range 1000 {
		s.SeeSession(HashKey([]byte(strconv.Itoa(i))))
		s.SeeSession(HashKey([]byte(strconv.Itoa(i)))) // seen twice, counted once
	}
	if n := s.BoundSessions(); n < 950 || n > 1050 {
		t.Fatalf("BoundSessions after 1000 distinct sessions = %d, want about 1000", n)
	}
	s.RotateSessions()
	if n := s.BoundSessions(); n < 950 {
		t.Fatalf("BoundSessions one window later = %d, want the previous window still counted", n)
	}
	s.RotateSessions()
	if n := s.BoundSessions(); n != 0 {
		t.Fatalf("BoundSessions two idle windows later = %d, want 0", n)
	}
}

func TestDecideMalformedKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format Format
		key    string
		want   MoveReason
		out    Outcome
	}{
		{"websphere format, no clone list", FormatWebSphere, "0000abcdefghijklmnopqrstuvw", MoveMalformedKey, OutcomeMoved},
		{"tomcat format, no jvmRoute", FormatTomcat, "5F1C0A9E3B7D4C2A8E6F0B1D3C5A7E9F", MoveMalformedKey, OutcomeMoved},
		{"empty clone list", FormatAuto, "0000abc:", MoveMalformedKey, OutcomeMoved},
		{"only separators", FormatAuto, "0000abc::+", MoveMalformedKey, OutcomeMoved},
		{"auto, no route at all: plain hash", FormatAuto, "opaque", MoveNone, OutcomeHash},
		{"unknown route", FormatAuto, "0000abc:zz", MoveUnknownRoute, OutcomeMoved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := mustTable(t, Spec{
				Groups: []GroupSpec{{Name: "g", Members: []MemberSpec{
					{ID: "m1", Addr: "10.0.0.1:80", Route: "r1", Weight: 1},
					{ID: "m2", Addr: "10.0.0.2:80", Route: "r2", Weight: 1},
				}}},
				Key:   KeySpec{Cookies: [][]byte{[]byte("JSESSIONID")}},
				Chain: []Link{RouteResolver(tc.format), HashResolver()},
			}, NewStates())
			d := tab.Groups[0].Decide([]byte(tc.key), HashKey([]byte(tc.key)))
			if d.Member == nil || d.Outcome != tc.out || d.Reason != tc.want {
				t.Fatalf("Decide(%q) = %s, %s, %s; want a member, %s, %s", tc.key, memberID(d.Member), d.Outcome, d.Reason, tc.out, tc.want)
			}
		})
	}
}

// TestDecideHint: the cookie link answers from the pinned member; a keyless request
// stays on it while it can serve, moves to a balanced member when it cannot, and is
// refused in a strict group; a key's own route wins when route comes first.
func TestDecideHint(t *testing.T) {
	ms := []MemberSpec{{ID: "m1", Addr: "10.0.0.1:1", Route: "c1", Weight: 1}, {ID: "m2", Addr: "10.0.0.2:1", Route: "c2", Weight: 1}, {ID: "m3", Addr: "10.0.0.3:1", Route: "c3", Weight: 1}}
	for _, strict := range []bool{false, true} {
		tab := mustTable(t, Spec{
			Groups: []GroupSpec{{Name: "app", Members: ms, Strict: strict}},
			Key:    KeySpec{Cookies: [][]byte{[]byte("JSESSIONID")}},
			Chain:  []Link{RouteResolver(FormatAuto), CookieResolver(), HashResolver()},
		}, NewStates())
		g := tab.Groups[0]
		if d := g.DecideHint(nil, 0, 1, false); d.Member != g.Members[1] || d.Outcome != OutcomeCookie {
			t.Fatalf("keyless, pinned m2: %s %v", memberID(d.Member), d.Outcome)
		}
		if d := g.DecideHint(nil, 0, -1, false); d.Outcome != OutcomeBalanced {
			t.Fatalf("keyless, no cookie: %v", d.Outcome)
		}
		key := []byte("0000abcdefghijklmnopqrstuvw:c3")
		if d := g.DecideHint(key, HashKey(key), 1, false); d.Member != g.Members[2] || d.Outcome != OutcomeRoute {
			t.Fatalf("route before cookie: %s %v", memberID(d.Member), d.Outcome)
		}
		plain := []byte("no-route-in-it")
		if d := g.DecideHint(plain, HashKey(plain), 1, false); d.Member != g.Members[1] || d.Outcome != OutcomeCookie {
			t.Fatalf("route-less key, pinned m2: %s %v", memberID(d.Member), d.Outcome)
		}
		g.Members[1].State.SetHealthy(false)
		d := g.DecideHint(nil, 0, 1, false)
		switch {
		case strict && (d.Member != nil || d.Bound != g.Members[1]):
			t.Fatalf("strict, pinned member down: %s, bound %s", memberID(d.Member), memberID(d.Bound))
		case !strict && (d.Member == nil || d.Member == g.Members[1] || d.Outcome != OutcomeMoved || d.Reason != MoveMemberDown):
			t.Fatalf("pinned member down: %s %v %v", memberID(d.Member), d.Outcome, d.Reason)
		}
		if d := g.DecideHint(plain, HashKey(plain), 1, false); !strict && (d.Member == g.Members[1] || d.Outcome != OutcomeMoved) {
			t.Fatalf("route-less key, pinned member down: %s %v", memberID(d.Member), d.Outcome)
		}
		g.Members[1].State.SetHealthy(true)
	}
}
