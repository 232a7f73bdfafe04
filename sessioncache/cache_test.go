package sessioncache

import (
	"errors"
	"testing"
	"time"
)

func newTestCache(t *testing.T, max int64, ttl time.Duration) *Cache {
	t.Helper()
	c, err := New(Config{MaxSessions: max, TTL: ttl})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"zero sessions", Config{MaxSessions: 0, TTL: time.Minute}},
		{"negative sessions", Config{MaxSessions: -1, TTL: time.Minute}},
		{"short ttl", Config{MaxSessions: 10, TTL: time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("New(%+v) error = %v, want ErrConfig", tc.cfg, err)
			}
		})
	}
}

func TestLearnLookupForget(t *testing.T) {
	c := newTestCache(t, 1000, time.Minute)
	if _, ok := c.Lookup(42); ok {
		t.Fatalf("Lookup(42) on an empty cache found a binding")
	}
	// ristretto's admission may refuse a first write of a key it has never seen;
	// learning again (as a member re-issuing the cookie would) gets it in.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.Learn(42, 7)
		c.Wait()
		if num, ok := c.Lookup(42); ok {
			if num != 7 {
				t.Fatalf("Lookup(42) = %d, want 7", num)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Lookup(42) still misses after Learn+Wait for 5s")
		}
	}
	c.Learn(42, 9)
	c.Wait()
	if num, ok := c.Lookup(42); !ok || num != 9 {
		t.Fatalf("Lookup(42) after rebinding = %d, %v; want 9, true", num, ok)
	}
	c.Forget(42)
	c.Wait()
	if _, ok := c.Lookup(42); ok {
		t.Fatalf("Lookup(42) after Forget found a binding")
	}
	st := c.Stats()
	if st.Sets < 2 || st.Hits < 2 || st.Misses < 2 {
		t.Fatalf("Stats() = %+v, want at least 2 sets, 2 hits, 2 misses", st)
	}
}

func TestBoundedByMaxSessions(t *testing.T) {
	const max = 1000
	c := newTestCache(t, max, time.Minute)
	for i := range uint64(20 * max) {
		c.Learn(i*0x9e3779b97f4a7c15, 1)
		if i%64 == 0 {
			c.Wait()
		}
	}
	c.Wait()
	st := c.Stats()
	if st.Entries > max {
		t.Fatalf("Stats().Entries = %d after %d sets, want at most %d", st.Entries, 20*max, max)
	}
	if st.Sets != 20*max {
		t.Fatalf("Stats().Sets = %d, want %d", st.Sets, 20*max)
	}
	if st.Rejections+st.Evictions+st.Drops == 0 {
		t.Fatalf("Stats() = %+v: 20x over capacity but nothing rejected, evicted or dropped", st)
	}
}

// learnAdmitted learns keyHash -> num until ristretto's admission takes it (bounded).
func learnAdmitted(t *testing.T, c *Cache, keyHash uint64, num uint32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.Learn(keyHash, num)
		c.Wait()
		if _, ok := c.Lookup(keyHash); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("binding never admitted")
		}
	}
}

func TestRefreshKeepsUsedBindings(t *testing.T) {
	c := newTestCache(t, 100, 3*time.Second) // refresh after 1s of age (coarse clock)
	learnAdmitted(t, c, 5, 3)
	// Use the binding for 3x its TTL: each use after half the TTL rewrites it.
	end := time.Now().Add(7 * time.Second)
	for time.Now().Before(end) {
		if _, ok := c.Lookup(5); !ok {
			t.Fatalf("binding in use expired; stats %+v", c.Stats())
		}
		c.Wait()
		time.Sleep(100 * time.Millisecond) // pacing the use, not waiting for state
	}
	if c.Stats().Refreshes == 0 {
		t.Fatalf("Stats().Refreshes = 0 after using a binding for 3 TTLs")
	}
}

func TestUnusedBindingExpires(t *testing.T) {
	c := newTestCache(t, 100, time.Second)
	learnAdmitted(t, c, 9, 2)
	deadline := time.Now().Add(5 * time.Second)
	_, at := unpack(func() uint64 { v, _ := c.c.Get(9); return v }())
	for c.now.Load() <= at+1 { // the coarse clock passes the TTL, with nobody using it
		if time.Now().After(deadline) {
			t.Fatal("clock did not advance")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if num, ok := c.Lookup(9); ok {
		t.Fatalf("binding to %d still there after its TTL", num)
	}
}

func TestPack(t *testing.T) {
	for _, tc := range []struct{ num, at uint32 }{{0, 0}, {1, 2}, {1<<32 - 1, 1<<32 - 1}, {7, 1 << 31}} {
		if num, at := unpack(pack(tc.num, tc.at)); num != tc.num || at != tc.at {
			t.Errorf("unpack(pack(%d, %d)) = %d, %d", tc.num, tc.at, num, at)
		}
	}
}

var sink uint32

func BenchmarkLookup(b *testing.B) {
	c, err := New(Config{MaxSessions: 1 << 16, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for i := range uint64(1 << 12) {
		c.Learn(i*0x9e3779b97f4a7c15, uint32(i))
	}
	c.Wait()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := uint64(0)
		for pb.Next() {
			n, _ := c.Lookup((i & (1<<12 - 1)) * 0x9e3779b97f4a7c15)
			sink += n
			i++
		}
	})
}
