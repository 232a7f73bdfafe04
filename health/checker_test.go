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
	c := New(zerolog.New(&logs))
	defer c.Stop()
	st := router.NewStates().Get("n1")
	c.Update([]Target{{Group: "g", Member: "n1", Addr: m.addr, State: st, Check: Check{
		Path: "/hc", Interval: 20 * time.Millisecond, Timeout: time.Second, Rise: 3, Fall: 2,
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
	c := New(zerolog.New(&logs))
	defer c.Stop()
	st := router.NewStates().Get("n1")
	p := newProber(Target{Group: "g", Member: "n1", Addr: m.addr, State: st, Check: Check{
		Path: "/hc", Interval: time.Hour, Timeout: time.Second, Rise: 2, Fall: 2,
	}}, c.log)
	for range 50 {
		p.observe(Result{OK: flip.Load(), Reason: "status 503"})
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
	c := New(zerolog.Nop())
	defer c.Stop()
	st := router.NewStates().Get("n1")
	c.Update([]Target{{Group: "g", Member: "n1", Addr: addr, State: st, Check: Check{
		Path: "/hc", Interval: 10 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 1, Fall: 1,
	}}})
	waitFor(t, "unreachable member down", func() bool { return !st.Healthy() })
	if r, ok := c.Last("n1"); !ok || r.OK || r.Reason == "" {
		t.Fatalf("Last(n1) = %+v, %v; want a failed result with a reason", r, ok)
	}
}

func TestUpdateWithoutPathMarksHealthyAndStops(t *testing.T) {
	m := startMember(t)
	m.ok.Store(false)
	c := New(zerolog.Nop())
	defer c.Stop()
	st := router.NewStates().Get("n1")
	tgt := Target{Group: "g", Member: "n1", Addr: m.addr, State: st, Check: Check{
		Path: "/hc", Interval: 10 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1,
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
