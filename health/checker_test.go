package health

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// member is a real fasthttp server whose health check answers 200 or 503.
type member struct {
	ok     atomic.Bool
	checks atomic.Int64
	addr   string
}

func startMember(t *testing.T) *member {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &member{addr: ln.Addr().String()}
	m.ok.Store(true)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) != "/hc" {
			ctx.SetStatusCode(404)
			return
		}
		m.checks.Add(1)
		if !m.ok.Load() {
			ctx.SetStatusCode(503)
		}
	}}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() })
	return m
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRiseAndFall(t *testing.T) {
	m := startMember(t)
	var logs syncBuffer
	c := New(zerolog.New(&logs), time.Minute)
	defer c.Stop()
	st := router.NewStates().Get("n1")
	c.Update([]Target{{Group: "g", Member: "n1", Addr: m.addr, State: st, Check: Check{
		Path: "/hc", Interval: 20 * time.Millisecond, Timeout: time.Second, Rise: 3, Fall: 2, StatusLo: 200, StatusHi: 399,
	}}})

	waitFor(t, "first checks", func() bool { return m.checks.Load() >= 3 })
	if !st.Healthy() {
		t.Fatal("member marked down while passing its checks")
	}

	m.ok.Store(false)
	base := m.checks.Load()
	waitFor(t, "member down", func() bool { return !st.Healthy() })
	if n := m.checks.Load() - base; n < 2 {
		t.Fatalf("member went down after %d failed checks, want at least Fall=2", n)
	}

	m.ok.Store(true)
	base = m.checks.Load()
	waitFor(t, "member up", func() bool { return st.Healthy() })
	if n := m.checks.Load() - base; n < 3 {
		t.Fatalf("member came back after %d passing checks, want at least Rise=3", n)
	}
	out := logs.String()
	if n := strings.Count(out, `"to":"down"`); n != 1 {
		t.Fatalf("logged %d down transitions, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, `"to":"up"`); n != 1 {
		t.Fatalf("logged %d up transitions, want 1:\n%s", n, out)
	}
	if r, ok := c.Last("n1"); !ok || !r.OK || r.Status != 200 {
		t.Fatalf("Last(n1) = %+v, %v; want a passing 200 result", r, ok)
	}
}

// A member that alternates pass/fail never reaches Fall=2 or Rise=2 in a row: its
// state must not change and nothing is logged.
func TestFlappingDoesNotFloodLog(t *testing.T) {
	m := startMember(t)
	var flip atomic.Bool
	var logs syncBuffer
	c := New(zerolog.New(&logs), time.Minute)
	defer c.Stop()
	st := router.NewStates().Get("n1")
	p := c.newWatched(Target{Group: "g", Member: "n1", Addr: m.addr, State: st, Check: Check{
		Path: "/hc", Interval: time.Hour, Timeout: time.Second, Rise: 2, Fall: 2, StatusLo: 200, StatusHi: 399,
	}})
	for range 50 {
		p.observe(c, Result{OK: flip.Load(), Reason: "status 503"})
		flip.Store(!flip.Load())
	}
	if !st.Healthy() {
		t.Fatal("alternating results marked the member down")
	}
	if logs.String() != "" {
		t.Fatalf("alternating results logged:\n%s", logs.String())
	}
}

func TestUnreachableMemberGoesDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := New(zerolog.Nop(), time.Minute)
	defer c.Stop()
	st := router.NewStates().Get("n1")
	c.Update([]Target{{Group: "g", Member: "n1", Addr: addr, State: st, Check: Check{
		Path: "/hc", Interval: 10 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 1, Fall: 1, StatusLo: 200, StatusHi: 399,
	}}})
	waitFor(t, "unreachable member down", func() bool { return !st.Healthy() })
	if r, ok := c.Last("n1"); !ok || r.OK || r.Reason == "" {
		t.Fatalf("Last(n1) = %+v, %v; want a failed result with a reason", r, ok)
	}
}

func TestUpdateWithoutPathMarksHealthyAndStops(t *testing.T) {
	m := startMember(t)
	m.ok.Store(false)
	c := New(zerolog.Nop(), time.Minute)
	defer c.Stop()
	st := router.NewStates().Get("n1")
	tgt := Target{Group: "g", Member: "n1", Addr: m.addr, State: st, Check: Check{
		Path: "/hc", Interval: 10 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1, StatusLo: 200, StatusHi: 399,
	}}
	c.Update([]Target{tgt})
	waitFor(t, "member down", func() bool { return !st.Healthy() })
	tgt.Check.Path = ""
	c.Update([]Target{tgt})
	if !st.Healthy() {
		t.Fatal("member without an active check is still down")
	}
	c.Update(nil)
	if _, ok := c.Last("n1"); ok {
		t.Fatal("removed member still has a prober")
	}
}

func groupStates(ids ...string) []*router.MemberState {
	s := router.NewStates()
	var out []*router.MemberState
	for _, id := range ids {
		out = append(out, s.Get(id))
	}
	return out
}

func TestPassiveEjectionWithoutActiveChecks(t *testing.T) {
	var logs syncBuffer
	c := New(zerolog.New(&logs), time.Minute)
	defer c.Stop()
	peers := groupStates("n1", "n2")
	p := Passive{Failures: 3, Ejection: 200 * time.Millisecond, MaxEjection: time.Second}
	c.Update([]Target{
		{Group: "g", Member: "n1", Addr: "127.0.0.1:1", State: peers[0], Peers: peers, Passive: p},
		{Group: "g", Member: "n2", Addr: "127.0.0.1:2", State: peers[1], Peers: peers, Passive: p},
	})
	c.Observe(peers[0], Connect)
	c.Observe(peers[0], Connect)
	if peers[0].Ejected() {
		t.Fatal("ejected after 2 failures, want 3")
	}
	start := time.Now()
	c.Observe(peers[0], Connect)
	if !peers[0].Ejected() || peers[0].UsableBound() {
		t.Fatal("not ejected after 3 failures")
	}
	waitFor(t, "ejection to end", func() bool { return !peers[0].Ejected() })
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("ejection lasted %v, want at least 200ms", d)
	}
	// A second ejection in a row lasts twice as long.
	start = time.Now()
	for range 3 {
		c.Observe(peers[0], Connect)
	}
	waitFor(t, "second ejection to end", func() bool { return !peers[0].Ejected() })
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("second ejection lasted %v, want at least 400ms (doubled)", d)
	}
	if n := strings.Count(logs.String(), "member ejected"); n != 2 {
		t.Fatalf("logged %d ejections, want 2:\n%s", n, logs.String())
	}
}

func TestPassiveNeverEjectsLastUsableMember(t *testing.T) {
	var logs syncBuffer
	c := New(zerolog.New(&logs), time.Minute)
	defer c.Stop()
	peers := groupStates("n1", "n2")
	p := Passive{Failures: 2, Ejection: time.Second, MaxEjection: time.Minute}
	c.Update([]Target{
		{Group: "g", Member: "n1", Addr: "127.0.0.1:1", State: peers[0], Peers: peers, Passive: p},
		{Group: "g", Member: "n2", Addr: "127.0.0.1:2", State: peers[1], Peers: peers, Passive: p},
	})
	peers[1].SetHealthy(false)
	for range 10 {
		c.Observe(peers[0], Connect)
	}
	if peers[0].Ejected() {
		t.Fatal("the last usable member was ejected")
	}
	if n := strings.Count(logs.String(), "panic mode"); n != 1 {
		t.Fatalf("logged panic mode %d times for one run of failures, want 1:\n%s", n, logs.String())
	}
}

func TestPassiveEjectionEndsOnActiveCheck(t *testing.T) {
	m := startMember(t)
	c := New(zerolog.Nop(), time.Minute)
	defer c.Stop()
	peers := groupStates("n1", "n2")
	ck := Check{Path: "/hc", Interval: 50 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1, StatusLo: 200, StatusHi: 399}
	p := Passive{Failures: 1, Ejection: time.Hour, MaxEjection: time.Hour}
	c.Update([]Target{
		{Group: "g", Member: "n1", Addr: m.addr, State: peers[0], Peers: peers, Passive: p, Check: ck},
		{Group: "g", Member: "n2", Addr: "127.0.0.1:2", State: peers[1], Peers: peers, Passive: p},
	})
	c.Observe(peers[0], Timeout)
	if !peers[0].Ejected() {
		t.Fatal("not ejected")
	}
	waitFor(t, "a passing check to end the ejection", func() bool { return !peers[0].Ejected() })
}

func TestDrainDeadline(t *testing.T) {
	c := New(zerolog.Nop(), time.Minute)
	defer c.Stop()
	peers := groupStates("n1")
	c.Update([]Target{{Group: "g", Member: "n1", Addr: "127.0.0.1:1", State: peers[0], Peers: peers, DrainTimeout: 300 * time.Millisecond}})
	start := time.Now()
	peers[0].SetAdmin(router.AdminDrain)
	if !peers[0].UsableBound() || peers[0].UsableNew() {
		t.Fatal("a draining member must keep bound sessions and take no new ones")
	}
	waitFor(t, "drain deadline", func() bool { return peers[0].DrainExpired() })
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("drain expired after %v, want at least 300ms", d)
	}
	if peers[0].UsableBound() {
		t.Fatal("bound sessions still stay after the drain deadline")
	}
	peers[0].SetAdmin(router.AdminReady)
	if peers[0].DrainExpired() || !peers[0].UsableNew() {
		t.Fatal("ready did not clear the expired drain")
	}
}

func TestStartUnhealthyAndStatusRange(t *testing.T) {
	m := startMember(t)
	c := New(zerolog.Nop(), time.Minute)
	defer c.Stop()
	st := router.NewStates().Get("n1")
	// 200 is outside 201-299: the member never passes.
	ck := Check{Path: "/hc", Interval: 20 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 1,
		StatusLo: 201, StatusHi: 299, StartUnhealthy: true}
	c.Update([]Target{{Group: "g", Member: "n1", Addr: m.addr, State: st, Check: ck}})
	if st.Healthy() {
		t.Fatal("start: unhealthy member is healthy before any check")
	}
	waitFor(t, "checks", func() bool { return m.checks.Load() >= 3 })
	if st.Healthy() {
		t.Fatal("member with status 200 outside 201-299 became healthy")
	}
	ck.StatusLo = 200
	c.Update([]Target{{Group: "g", Member: "n1", Addr: m.addr, State: st, Check: ck}})
	waitFor(t, "member up", func() bool { return st.Healthy() })
}

func TestUnhealthyIntervalIsFaster(t *testing.T) {
	m := startMember(t)
	m.ok.Store(false)
	c := New(zerolog.Nop(), time.Minute)
	defer c.Stop()
	st := router.NewStates().Get("n1")
	c.Update([]Target{{Group: "g", Member: "n1", Addr: m.addr, State: st, Check: Check{
		Path: "/hc", Interval: time.Hour, UnhealthyInterval: 20 * time.Millisecond, Timeout: time.Second,
		Rise: 1, Fall: 1, StatusLo: 200, StatusHi: 399,
	}}})
	waitFor(t, "several checks at the unhealthy interval", func() bool { return m.checks.Load() >= 5 })
}
