//go:build !race

package sessioncache

import (
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// Lookup's hit path must not allocate (STYLE.md, hot-path rule 1). These guards run in
// the non-race build: make test runs them with go test -run Allocs.

var (
	sinkV           uint64
	sinkNum, sinkAt uint32
	sinkOK          bool
)

// allocBindings are bindings as the gateway writes them: small member numbers
// (MemberState.Num counts from 1) and seconds since the cache started, from a fresh
// start to past 2^31 seconds.
var allocBindings = []struct{ num, at uint32 }{{1, 0}, {3, 86_400}, {42, 1 << 31}, {1<<32 - 1, 1<<32 - 1}}

// TestAllocsPack guards pack (Learn, and Lookup's refresh) and unpack (every Lookup
// hit) directly, on inputs read at run time so that nothing is folded away.
func TestAllocsPack(t *testing.T) {
	vs := make([]uint64, len(allocBindings))
	for i, b := range allocBindings {
		vs[i] = pack(b.num, b.at)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		b := allocBindings[i%len(allocBindings)]
		sinkV = pack(b.num, b.at)
		i++
	}); n != 0 {
		t.Fatalf("pack allocates %v times per run, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		sinkNum, sinkAt = unpack(vs[i%len(vs)])
		i++
	}); n != 0 {
		t.Fatalf("unpack allocates %v times per run, want 0", n)
	}
}

// newGuardCache is the Cache that New builds (same TTL and refresh arithmetic) over a
// ristretto cache whose read buffer holds more Gets than a guard makes. ristretto's Get
// allocates when a full read buffer goes to its policy, once per full batch of New's
// BufferItems, so a guard of New's Cache would measure ristretto too
// (STYLE.md). With a buffer of 2^17 keys that never happens during a guard: Lookup's
// own code (decode, TTL check, refresh decision) is measured exactly, with no
// tolerance, and none of ristretto's allocating internals runs.
func newGuardCache(t *testing.T, ttl time.Duration) *Cache {
	t.Helper()
	c := newTestCache(t, 1000, ttl)
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, uint64]{
		NumCounters:        10_000,
		MaxCost:            1000,
		IgnoreInternalCost: true,
		BufferItems:        1 << 17,
		Metrics:            true,
	})
	if err != nil {
		t.Fatalf("ristretto.NewCache: %v", err)
	}
	c.c.Close()
	c.c = rc // closed by newTestCache's cleanup
	return c
}

// setAdmitted writes v for keyHash until ristretto holds it (bounded).
func setAdmitted(t *testing.T, c *Cache, keyHash, v uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.set(keyHash, v)
		c.Wait()
		if got, ok := c.c.Get(keyHash); ok && got == v {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("binding %#x never admitted", keyHash)
		}
	}
}

// TestAllocsLookup guards Lookup on a hit, on an expired binding and on a miss. The
// refresh path (a used binding past half its TTL) writes through ristretto's Set,
// which allocates, once per session per half TTL; it is benchmarked, not guarded.
func TestAllocsLookup(t *testing.T) {
	c := newGuardCache(t, time.Hour)
	const ( // key hashes spread over 64 bits, as HashKey's are
		fresh   uint64 = 0x9e3779b97f4a7c15
		expired uint64 = 0x3c6ef372fe94f82a
		unknown uint64 = 0xdaa66d2c7ddf743f
	)
	learnAdmitted(t, c, fresh, 3)
	// Written an hour and a second ago (modulo 2^32, as Lookup computes ages).
	setAdmitted(t, c, expired, pack(4, c.now.Load()-c.ttlSecs-1))
	refreshes := c.Stats().Refreshes
	for _, tc := range []struct {
		name    string
		keyHash uint64
		num     uint32
		ok      bool
	}{
		{"hit", fresh, 3, true},
		{"expired", expired, 0, false},
		{"miss", unknown, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if num, ok := c.Lookup(tc.keyHash); num != tc.num || ok != tc.ok {
				t.Fatalf("Lookup(%#x) = %d, %v; want %d, %v", tc.keyHash, num, ok, tc.num, tc.ok)
			}
			if n := testing.AllocsPerRun(1000, func() {
				sinkNum, sinkOK = c.Lookup(tc.keyHash)
			}); n != 0 {
				t.Fatalf("Lookup(%#x) (%s) allocates %v times per run, want 0", tc.keyHash, tc.name, n)
			}
		})
	}
	if got := c.Stats().Refreshes; got != refreshes {
		t.Fatalf("Stats().Refreshes = %d after the guards, want %d: they went through the refresh path", got, refreshes)
	}
}
