package health

import (
	"io"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestEjectionEndsAfterAddressChange(t *testing.T) {
	c := New(zerolog.New(io.Discard), time.Minute)
	defer c.Stop()
	peers := groupStates("n1", "n2")
	p := Passive{Failures: 1, Ejection: 100 * time.Millisecond, MaxEjection: time.Second}
	c.Update([]Target{
		{Group: "g", Member: "n1", Addr: "127.0.0.1:1", State: peers[0], Peers: peers, Passive: p},
		{Group: "g", Member: "n2", Addr: "127.0.0.1:2", State: peers[1], Peers: peers, Passive: p},
	})
	c.Observe(peers[0], Connect)
	if !peers[0].Ejected() {
		t.Fatal("not ejected")
	}
	// reload: n1 moves to a new address
	c.Update([]Target{
		{Group: "g", Member: "n1", Addr: "127.0.0.1:3", State: peers[0], Peers: peers, Passive: p},
		{Group: "g", Member: "n2", Addr: "127.0.0.1:2", State: peers[1], Peers: peers, Passive: p},
	})
	waitFor(t, "n1 still ejected 2s after a 100ms ejection (addr changed by reload)", func() bool { return !peers[0].Ejected() })
}

func TestEjectionEndsAfterCheckRemoved(t *testing.T) {
	m := startMember(t)
	c := New(zerolog.New(io.Discard), time.Minute)
	defer c.Stop()
	peers := groupStates("n1", "n2")
	p := Passive{Failures: 1, Ejection: 100 * time.Millisecond, MaxEjection: time.Second}
	ck := Check{Path: "/hc", Interval: time.Hour, Timeout: time.Second, Rise: 1, Fall: 1, StatusLo: 200, StatusHi: 399}
	c.Update([]Target{
		{Group: "g", Member: "n1", Addr: m.addr, State: peers[0], Peers: peers, Passive: p, Check: ck},
		{Group: "g", Member: "n2", Addr: "127.0.0.1:2", State: peers[1], Peers: peers, Passive: p},
	})
	waitFor(t, "first check", func() bool { return m.checks.Load() > 0 })
	c.Observe(peers[0], Connect)
	if !peers[0].Ejected() {
		t.Fatal("not ejected")
	}
	c.Update([]Target{
		{Group: "g", Member: "n1", Addr: m.addr, State: peers[0], Peers: peers, Passive: p},
		{Group: "g", Member: "n2", Addr: "127.0.0.1:2", State: peers[1], Peers: peers, Passive: p},
	})
	waitFor(t, "n1 still ejected after its active check was removed", func() bool { return !peers[0].Ejected() })
}

func TestEjectionEndsAfterRemoveAndReadd(t *testing.T) {
	c := New(zerolog.New(io.Discard), time.Minute)
	defer c.Stop()
	peers := groupStates("n1", "n2")
	// The ejection is long enough that it cannot end on its own timer before the
	// remove: it must be the re-added member's timer that ends it.
	p := Passive{Failures: 1, Ejection: time.Second, MaxEjection: 2 * time.Second}
	both := []Target{
		{Group: "g", Member: "n1", Addr: "127.0.0.1:1", State: peers[0], Peers: peers, Passive: p},
		{Group: "g", Member: "n2", Addr: "127.0.0.1:2", State: peers[1], Peers: peers, Passive: p},
	}
	c.Update(both)
	c.Observe(peers[0], Connect)
	if !peers[0].Ejected() {
		t.Fatalf("n1 Ejected() after Failure with Passive.Failures %d = false, want true", p.Failures)
	}
	if got := c.Counts("n1").Ejected; got != 1 {
		t.Fatalf("Counts(%q).Ejected after the failure = %d, want 1", "n1", got)
	}
	c.Update(both[1:])
	c.Update(both)
	if !peers[0].Ejected() {
		t.Fatal("n1 Ejected() right after remove+re-add = false, want true (the ejection runs its course)")
	}
	waitFor(t, "n1 still ejected after remove+re-add", func() bool { return !peers[0].Ejected() })
	waitFor(t, "the end of n1's ejection counted in Counts(n1).Up", func() bool { return c.Counts("n1").Up == 1 })
}
