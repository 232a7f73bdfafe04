package router

import (
	"testing"
	"time"
)

// Realistic hot-path inputs, shared by the benchmarks and the alloc_test.go guards.
// Short inputs let escape analysis hide costs, so these are the sizes seen in production.
var (
	// Five cookies, the session cookie a WebSphere id: 4-char cache id, 23-char session
	// id and a 3-clone list.
	hotCookieHdr = []byte("_ga=GA1.2.1234567890.1700000000; lang=en-US; " +
		"JSESSIONID=0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2:Node3; theme=dark; " +
		"csrftoken=9f8e7d6c5b4a39281706f5e4d3c2b1a0")
	hotCookieHdrs  = [][]byte{hotCookieHdr}
	hotWebSphere   = []byte("0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2:Node3")
	hotTomcat      = []byte("9F86D081884C7D659A2FEAA0C55AD015.Node2")
	hotUnknown     = []byte("0000A1B2C3D4E5F6G7H8I9J0K1L:Node9") // route names no member
	hotUnbound     = []byte("9F86D081884C7D659A2FEAA0C55AD015")  // no route, not learned
	hotLearned     = []byte("5E884898DA28047151D0E56F8DC62927")  // no route, learned
	hotHost        = []byte("app.example.com:8080")
	hotURI         = []byte("/fb/account;jsessionid=0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2:Node3?x=1")
	hotURINoCookie = []byte("/fb/account?x=1&jsessionid=0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2:Node3")
)

// Sinks keep results alive so the compiler cannot drop the work.
var (
	sinkBytes   []byte
	sinkSource  Source
	sinkMember  *Member
	sinkOutcome Outcome
	sinkGroup   *Group
	sinkInt     int
)

// fixedStore is a learned-session store that does not allocate: a fixed array searched
// linearly, so alloc guards measure the router alone.
type fixedStore struct {
	n    int
	hash [8]uint64
	num  [8]uint32
}

func (s *fixedStore) Lookup(keyHash uint64) (uint32, bool) {
	for i := 0; i < s.n; i++ {
		if s.hash[i] == keyHash {
			return s.num[i], true
		}
	}
	return 0, false
}

func (s *fixedStore) add(keyHash uint64, num uint32) {
	s.hash[s.n], s.num[s.n] = keyHash, num
	s.n++
}

// hotFixture is a production-shaped table: several host and prefix groups, the request's
// group "fb" with five members Node1..Node5, the chain [route, learned, hash].
type hotFixture struct {
	tab   *Table
	g     *Group
	store *fixedStore
}

func newHotFixture(tb testing.TB, balance Balance) *hotFixture {
	tb.Helper()
	f := &hotFixture{store: &fixedStore{}}
	node := func(id string) MemberSpec {
		return MemberSpec{ID: id, Addr: "10.1.1." + id[len(id)-1:] + ":9080", Weight: 1}
	}
	other := func(id string) MemberSpec {
		return MemberSpec{ID: id, Addr: "10.2.2.1:9080", Weight: 1}
	}
	spec := Spec{
		Groups: []GroupSpec{
			{Name: "static", Hosts: []string{"app.example.com"}, PathPrefix: "/static", Members: []MemberSpec{other("s1")}},
			{Name: "fb", Hosts: []string{"app.example.com", "www.example.com"}, PathPrefix: "/fb",
				Members: []MemberSpec{node("Node1"), node("Node2"), node("Node3"), node("Node4"), node("Node5")}},
			{Name: "api", Hosts: []string{"api.example.com"}, PathPrefix: "/", Members: []MemberSpec{other("a1")}},
			{Name: "wild", Hosts: []string{"*.example.com"}, PathPrefix: "/", Members: []MemberSpec{other("w1")}},
			{Name: "default", Members: []MemberSpec{other("d1")}},
		},
		Key: KeySpec{
			Cookies:  [][]byte{[]byte("JSESSIONID")},
			URLParam: []byte("jsessionid"),
		},
		Balance: balance,
		Chain:   []Link{RouteResolver(FormatAuto), LearnedResolver(f.store), HashResolver()},
	}
	f.tab = mustTable(tb, spec, NewStates())
	f.g = f.tab.Group("fb")
	f.store.add(HashKey(hotLearned), f.g.Members[3].State.Num())
	return f
}

// pickCase is one resolver path of Pick on a hot fixture.
type pickCase struct {
	name    string
	setup   func(f *hotFixture)
	key     []byte
	outcome Outcome
}

var hotPickCases = []pickCase{
	{"route", nil, hotWebSphere, OutcomeRoute},
	{"route_tomcat", nil, hotTomcat, OutcomeRoute},
	{"failover", func(f *hotFixture) { f.g.Members[0].State.SetHealthy(false) }, hotWebSphere, OutcomeMoved},
	{"all_clones_down", func(f *hotFixture) {
		for _, m := range f.g.Members[:3] {
			m.State.SetHealthy(false)
		}
	}, hotWebSphere, OutcomeMoved},
	{"learned", nil, hotLearned, OutcomeLearned},
	{"learned_down", func(f *hotFixture) { f.g.Members[3].State.SetHealthy(false) }, hotLearned, OutcomeMoved},
	{"unknown_route_hash", nil, hotUnknown, OutcomeMoved},
	{"hash_no_route", nil, hotUnbound, OutcomeHash},
	{"balanced", nil, nil, OutcomeBalanced},
	{"balanced_member_down", func(f *hotFixture) { f.g.Members[1].State.SetHealthy(false) }, nil, OutcomeBalanced},
}

// prepare builds a fixture for c and checks that Pick takes the intended path.
func (c pickCase) prepare(tb testing.TB, balance Balance) (*Group, uint64) {
	tb.Helper()
	f := newHotFixture(tb, balance)
	if c.setup != nil {
		c.setup(f)
	}
	h := HashKey(c.key)
	if m, o := f.g.Pick(c.key, h); m == nil || o != c.outcome {
		tb.Fatalf("Pick(%q) = %s, %v; want a member, %v", c.key, memberID(m), o, c.outcome)
	}
	return f.g, h
}

// hotPath is steps 1-4 of a request: match, extract, hash, pick.
func hotPath(t *Table, host, rawURI []byte, cookies [][]byte) (*Member, Outcome) {
	g := t.Match(host, PeekPath(rawURI))
	if g == nil {
		return nil, OutcomeNone
	}
	key, _ := t.Key.Extract(cookies, rawURI, nil)
	return g.Pick(key, HashKey(key))
}

func BenchmarkExtract(b *testing.B) {
	f := newHotFixture(b, BalanceRoundRobin)
	cases := []struct {
		name    string
		cookies [][]byte
		uri     []byte
	}{
		{"cookie_5", hotCookieHdrs, hotURI},
		{"path_param", nil, hotURI},
		{"query", nil, hotURINoCookie},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkBytes, sinkSource = f.tab.Key.Extract(c.cookies, c.uri, nil)
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	f := newHotFixture(b, BalanceRoundRobin)
	cases := []struct {
		name   string
		key    []byte
		format Format
	}{
		{"websphere_3clone", hotWebSphere, FormatWebSphere},
		{"websphere_3clone_auto", hotWebSphere, FormatAuto},
		{"tomcat", hotTomcat, FormatTomcat},
		{"tomcat_auto", hotTomcat, FormatAuto},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkInt = decodeAll(f.g, c.key, c.format)
			}
		})
	}
}

// decodeAll walks every route of key and sums the member indexes they name, so that the
// whole list is decoded and looked up.
func decodeAll(g *Group, key []byte, f Format) int {
	sum := 0
	list := PeekRoutes(key, f)
	for list != nil {
		var route []byte
		route, list = NextRoute(list)
		sum += g.MemberByRoute(route)
	}
	return sum
}

func BenchmarkMatch(b *testing.B) {
	f := newHotFixture(b, BalanceRoundRobin)
	cases := []struct {
		name string
		host []byte
		uri  []byte
	}{
		{"exact", hotHost, hotURI},
		{"wildcard", []byte("shop.example.com:8080"), hotURI},
		{"any_host", []byte("10.0.0.1:8080"), hotURI},
	}
	for _, c := range cases {
		path := PeekPath(c.uri)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkGroup = f.tab.Match(c.host, path)
			}
		})
	}
}

func BenchmarkPick(b *testing.B) {
	for _, c := range hotPickCases {
		b.Run(c.name, func(b *testing.B) {
			g, h := c.prepare(b, BalanceRoundRobin)
			b.ReportAllocs()
			for b.Loop() {
				sinkMember, sinkOutcome = g.Pick(c.key, h)
			}
		})
	}
	b.Run("balanced_least_requests", func(b *testing.B) {
		g, _ := pickCase{key: nil, outcome: OutcomeBalanced}.prepare(b, BalanceLeastRequests)
		b.ReportAllocs()
		for b.Loop() {
			sinkMember, sinkOutcome = g.Pick(nil, 0)
		}
	})
}

func BenchmarkHotPath(b *testing.B) {
	f := newHotFixture(b, BalanceRoundRobin)
	if m, o := hotPath(f.tab, hotHost, hotURI, hotCookieHdrs); memberID(m) != "Node1" || o != OutcomeRoute {
		b.Fatalf("hotPath = %s, %v; want Node1, route", memberID(m), o)
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkMember, sinkOutcome = hotPath(f.tab, hotHost, hotURI, hotCookieHdrs)
	}
}

func BenchmarkHotPathParallel(b *testing.B) {
	f := newHotFixture(b, BalanceRoundRobin)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ran, picked := 0, 0
		for pb.Next() {
			ran++
			if m, _ := hotPath(f.tab, hotHost, hotURI, hotCookieHdrs); m != nil {
				picked++
			}
		}
		if picked != ran {
			b.Errorf("hotPath chose no member in %d of %d runs", ran-picked, ran)
		}
	})
}

// observeDurations spread the observations over the histogram's buckets, as real
// responses do, so that the benchmark does not hit one counter only.
var observeDurations = [8]time.Duration{
	700 * time.Microsecond, 1800 * time.Microsecond, 4 * time.Millisecond, 12 * time.Millisecond,
	3 * time.Millisecond, 40 * time.Millisecond, 900 * time.Microsecond, 220 * time.Millisecond,
}

func BenchmarkObserve(b *testing.B) {
	st := NewStates().Get("Node1")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		st.Observe(200, observeDurations[i&7])
		i++
	}
}

// BenchmarkObserveParallel is the worst case: every goroutine answers for one member,
// so all of them add to the same counters.
func BenchmarkObserveParallel(b *testing.B) {
	st := NewStates().Get("Node1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			st.Observe(200, observeDurations[i&7])
			i++
		}
	})
	if got := st.Responses[2].Load(); got != st.Latency().Count() {
		b.Fatalf("Responses[2] = %d, histogram count %d; want equal", got, st.Latency().Count())
	}
}
