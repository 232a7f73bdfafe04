//go:build !race

package router

import (
	"testing"
	"time"
)

// The request path must not allocate (STYLE.md, hot-path rule 1). These guards run in
// the non-race build: make test runs them with go test -run Allocs.

func TestAllocsExtract(t *testing.T) {
	f := newHotFixture(t, BalanceRoundRobin)
	cases := []struct {
		name    string
		cookies [][]byte
		uri     []byte
		src     Source
	}{
		{"cookie", hotCookieHdrs, hotURI, SourceCookie},
		{"path_param", nil, hotURI, SourcePathParam},
		{"query", nil, hotURINoCookie, SourceQuery},
		{"none", [][]byte{[]byte("lang=en-US; theme=dark")}, []byte("/fb/account?x=1"), SourceNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, src := f.tab.Key.Extract(c.cookies, c.uri, nil); src != c.src {
				t.Fatalf("Extract source = %v, want %v", src, c.src)
			}
			if n := testing.AllocsPerRun(1000, func() {
				sinkBytes, sinkSource = f.tab.Key.Extract(c.cookies, c.uri, nil)
			}); n != 0 {
				t.Fatalf("Extract(%s) allocates %v times per run, want 0", c.name, n)
			}
		})
	}
	t.Run("peekers", func(t *testing.T) {
		name, param := []byte("JSESSIONID"), []byte("jsessionid")
		if n := testing.AllocsPerRun(1000, func() {
			sinkBytes, _ = PeekCookie(hotCookieHdr, name)
			sinkBytes = PeekPathParam(PeekPath(hotURI), param)
			sinkBytes = PeekQuery(hotURINoCookie, param, true)
		}); n != 0 {
			t.Fatalf("PeekCookie, PeekPath, PeekPathParam, PeekQuery allocate %v times per run, want 0", n)
		}
	})
}

func TestAllocsPeekRoutes(t *testing.T) {
	f := newHotFixture(t, BalanceRoundRobin)
	cases := []struct {
		name   string
		key    []byte
		format Format
		want   int // sum of member indexes named
	}{
		{"websphere_3clone", hotWebSphere, FormatWebSphere, 0 + 1 + 2},
		{"websphere_3clone_auto", hotWebSphere, FormatAuto, 0 + 1 + 2},
		{"tomcat", hotTomcat, FormatTomcat, 1},
		{"tomcat_auto", hotTomcat, FormatAuto, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := decodeAll(f.g, c.key, c.format); got != c.want {
				t.Fatalf("decodeAll(%q) = %d, want %d", c.key, got, c.want)
			}
			if n := testing.AllocsPerRun(1000, func() {
				sinkInt = decodeAll(f.g, c.key, c.format)
			}); n != 0 {
				t.Fatalf("PeekRoutes + NextRoute + MemberByRoute (%s) allocate %v times per run, want 0", c.name, n)
			}
		})
	}
}

func TestAllocsMatch(t *testing.T) {
	f := newHotFixture(t, BalanceRoundRobin)
	cases := []struct {
		name string
		host []byte
		uri  []byte
		want string
	}{
		{"exact", hotHost, hotURI, "fb"},
		{"exact_upper_case", []byte("APP.Example.com:8080"), hotURI, "fb"},
		{"wildcard", []byte("shop.example.com"), hotURI, "wild"},
		{"any_host", []byte("[::1]:8080"), hotURI, "default"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := PeekPath(c.uri)
			if g := f.tab.Match(c.host, path); groupName(g) != c.want {
				t.Fatalf("Match(%q, %q) = %s, want %s", c.host, path, groupName(g), c.want)
			}
			if n := testing.AllocsPerRun(1000, func() {
				sinkGroup = f.tab.Match(c.host, PeekPath(c.uri))
			}); n != 0 {
				t.Fatalf("Match(%q) allocates %v times per run, want 0", c.host, n)
			}
		})
	}
}

func TestAllocsPick(t *testing.T) {
	for _, balance := range []Balance{BalanceRoundRobin, BalanceLeastRequests} {
		for _, c := range hotPickCases {
			name := c.name
			if balance == BalanceLeastRequests {
				if c.outcome != OutcomeBalanced {
					continue
				}
				name += "_least_requests"
			}
			t.Run(name, func(t *testing.T) {
				g, h := c.prepare(t, balance)
				if n := testing.AllocsPerRun(1000, func() {
					sinkMember, sinkOutcome = g.Pick(c.key, h)
				}); n != 0 {
					t.Fatalf("Pick(%s) allocates %v times per run, want 0", name, n)
				}
			})
		}
	}
}

func TestAllocsHotPath(t *testing.T) {
	f := newHotFixture(t, BalanceRoundRobin)
	cases := []struct {
		name    string
		cookies [][]byte
		uri     []byte
		want    Outcome
	}{
		{"cookie_route", hotCookieHdrs, hotURI, OutcomeRoute},
		{"path_param_route", nil, hotURI, OutcomeRoute},
		{"no_key", nil, []byte("/fb/account?x=1"), OutcomeBalanced},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if m, o := hotPath(f.tab, hotHost, c.uri, c.cookies); m == nil || o != c.want {
				t.Fatalf("hotPath = %s, %v; want a member, %v", memberID(m), o, c.want)
			}
			if n := testing.AllocsPerRun(1000, func() {
				sinkMember, sinkOutcome = hotPath(f.tab, hotHost, c.uri, c.cookies)
			}); n != 0 {
				t.Fatalf("Match + Extract + HashKey + Pick (%s) allocate %v times per run, want 0", c.name, n)
			}
		})
	}
}

// TestAllocsFailover guards the failover path: Decide moving a session off a down
// member, Retry choosing the next member, and the bound-session sketch.
func TestAllocsFailover(t *testing.T) {
	f := newGroupFixture(t, false, false)
	key := []byte(wsID + ":clone1")
	h := HashKey(key)
	f.down("m1")
	var d Decision
	if n := testing.AllocsPerRun(1000, func() { d = f.g.Decide(key, h) }); n != 0 {
		t.Fatalf("Decide (moved) allocates %v times per run, want 0", n)
	}
	if d.Outcome != OutcomeMoved {
		t.Fatalf("Decide = %s, want moved", d.Outcome)
	}
	if n := testing.AllocsPerRun(1000, func() {
		var tried Tried
		tried.Add(f.g.Members[1])
		sinkMember = f.g.Retry(h, true, &tried)
	}); n != 0 {
		t.Fatalf("Retry allocates %v times per run, want 0", n)
	}
	st := f.g.Members[1].State
	if n := testing.AllocsPerRun(1000, func() { st.SeeSession(h); h++ }); n != 0 {
		t.Fatalf("SeeSession allocates %v times per run, want 0", n)
	}
}

// TestAllocsObserve guards the per-response accounting: status class, latency bucket
// and sum.
func TestAllocsObserve(t *testing.T) {
	st := NewStates().Get("Node1")
	d := 3 * time.Millisecond
	if n := testing.AllocsPerRun(1000, func() { st.Observe(200, d); d += time.Microsecond }); n != 0 {
		t.Fatalf("Observe allocates %v times per run, want 0", n)
	}
}

func TestAllocsCheckPath(t *testing.T) {
	path := []byte("/fb;jsessionid=0000A1B2C3D4E5F6G7H8I9J0K1L:Node1/account/%2e%2e/orders/..%2fadmin/x.html")
	var dot, slash bool
	if n := testing.AllocsPerRun(1000, func() { dot, slash = CheckPath(path) }); n != 0 {
		t.Fatalf("CheckPath: %v allocs/op, want 0", n)
	}
	if !dot || !slash {
		t.Fatalf("CheckPath(%q) = %v, %v; want true, true", path, dot, slash)
	}
}

// TestAllocsDecideHint guards the cookie link: pinned and keyless, pinned with a key,
// pinned member down (a keyless move).
func TestAllocsDecideHint(t *testing.T) {
	ms := []MemberSpec{{ID: "m1", Addr: "10.0.0.1:1", Route: "c1", Weight: 1}, {ID: "m2", Addr: "10.0.0.2:1", Route: "c2", Weight: 1}}
	tab := mustTable(t, Spec{
		Groups: []GroupSpec{{Name: "app", Members: ms}},
		Key:    KeySpec{Cookies: [][]byte{[]byte("JSESSIONID")}},
		Chain:  []Link{RouteResolver(FormatAuto), CookieResolver(), HashResolver()},
	}, NewStates())
	g := tab.Groups[0]
	key := []byte("no-route-in-it")
	h := HashKey(key)
	var d Decision
	for _, c := range []struct {
		name string
		key  []byte
		down bool
	}{{"keyless", nil, false}, {"route-less key", key, false}, {"keyless, member down", nil, true}} {
		g.Members[1].State.SetHealthy(!c.down)
		if n := testing.AllocsPerRun(1000, func() { d = g.DecideHint(c.key, h, 1, false) }); n != 0 {
			t.Fatalf("DecideHint(%s) allocates %v times per run, want 0", c.name, n)
		}
	}
	_ = d
}
