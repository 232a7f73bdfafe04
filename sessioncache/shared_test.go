package sessioncache

import (
	"encoding/hex"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/redistest"
)

// raceEnabled reports whether the test binary was built with -race.
var raceEnabled = func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}()

// waitUntil polls cond until it holds or a deadline (longer under -race) passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	d := 20 * time.Second
	if raceEnabled {
		d *= 3
	}
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// changes records a Shared store's OnChange calls.
type changes struct {
	mu  sync.Mutex
	ups []bool
}

func (c *changes) add(up bool, _ error) {
	c.mu.Lock()
	c.ups = append(c.ups, up)
	c.mu.Unlock()
}

func (c *changes) list() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bool(nil), c.ups...)
}

// newTestShared is a Shared store on r with a budget that a loaded 2-core machine
// keeps (the default, 2ms, is for production), and a fast prober.
func newTestShared(t *testing.T, r *redistest.Server, mod func(*SharedConfig)) *Shared {
	t.Helper()
	cfg := SharedConfig{
		Addresses: []string{r.Addr},
		Budget:    100 * time.Millisecond,
		KeyPrefix: "sg:",
		TTL:       time.Hour,
		ProbeMin:  20 * time.Millisecond,
		ProbeMax:  200 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewShared(cfg)
	if err != nil {
		t.Fatalf("NewShared: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestNewSharedRejectsBadConfig(t *testing.T) {
	ok := SharedConfig{Addresses: []string{"127.0.0.1:1"}, Budget: time.Millisecond, TTL: time.Minute}
	for _, tc := range []struct {
		name string
		mod  func(*SharedConfig)
	}{
		{"no address", func(c *SharedConfig) { c.Addresses = nil }},
		{"zero budget", func(c *SharedConfig) { c.Budget = 0 }},
		{"short ttl", func(c *SharedConfig) { c.TTL = time.Millisecond }},
		{"long prefix", func(c *SharedConfig) { c.KeyPrefix = string(make([]byte, 65)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mod(&cfg)
			if s, err := NewShared(cfg); err == nil {
				s.Close()
				t.Fatalf("NewShared(%+v) = nil error, want ErrSharedConfig", cfg)
			}
		})
	}
}

func TestSharedKeyRoundTrip(t *testing.T) {
	s := &Shared{cfg: SharedConfig{KeyPrefix: "sg:"}}
	for _, h := range []uint64{0, 1, 0x9e3779b97f4a7c15, 1<<64 - 1} {
		k := string(s.appendKey(nil, h))
		if len(k) != 11 {
			t.Errorf("appendKey(%#x) = %q: %d bytes, want 11", h, k, len(k))
		}
		if got, ok := s.parseKey(k); !ok || got != h {
			t.Errorf("parseKey(appendKey(%#x)) = %#x, %v", h, got, ok)
		}
	}
	for _, k := range []string{"", "sg:", "xx:12345678", "sg:1234567", "sg:123456789"} {
		if h, ok := s.parseKey(k); ok {
			t.Errorf("parseKey(%q) = %#x, true; want false", k, h)
		}
	}
}

// TestSharedTwoInstances: a binding one instance writes is read by another, a repeated
// read is answered by the client-side cache, and a later write by the first instance
// invalidates the second's copy (RESP3 tracking).
func TestSharedTwoInstances(t *testing.T) {
	r := redistest.Start(t)
	var invalidated atomic.Uint64
	a := newTestShared(t, r, nil)
	b := newTestShared(t, r, func(c *SharedConfig) {
		c.OnInvalidate = func(h uint64) { invalidated.Store(h) }
	})
	const k uint64 = 0x9e3779b97f4a7c15
	if id, res := b.Lookup(k); res != ReadMiss {
		t.Fatalf("Lookup before any write = %q, %s; want miss", id, res)
	}
	if !a.Store(k, "m1") {
		t.Fatal("Store refused on an up store")
	}
	a.Wait()
	// b's cached miss was invalidated by a's write.
	waitUntil(t, "b's invalidation", func() bool { return invalidated.Load() == k })
	if id, res := b.Lookup(k); res != ReadHit || id != "m1" {
		t.Fatalf("b.Lookup = %q, %s; want m1, hit", id, res)
	}
	before := b.Stats().CacheHits
	if id, res := b.Lookup(k); res != ReadHit || id != "m1" {
		t.Fatalf("second b.Lookup = %q, %s; want m1, hit", id, res)
	}
	if got := b.Stats().CacheHits; got != before+1 {
		t.Fatalf("CacheHits = %d after a repeated read, want %d (no round trip)", got, before+1)
	}
	invalidated.Store(0)
	a.Store(k, "m2")
	a.Wait()
	waitUntil(t, "b's invalidation of m1", func() bool { return invalidated.Load() == k })
	if id, res := b.Lookup(k); res != ReadHit || id != "m2" {
		t.Fatalf("b.Lookup after the move = %q, %s; want m2, hit", id, res)
	}
	if pttl, err := r.Do("PTTL", "sg:"+string(hexBytes(k))); err != nil || pttl == "-1" || pttl == "-2" {
		t.Fatalf("PTTL of the binding = %q, %v; want a TTL", pttl, err)
	}
	st := a.Stats()
	if st.Writes[WriteOK] != 2 || !st.Up {
		t.Fatalf("a.Stats() = %+v; want 2 ok writes, up", st)
	}
}

// hexBytes is the 8 big-endian bytes of h.
func hexBytes(h uint64) []byte {
	s := &Shared{}
	return s.appendKey(nil, h)
}

// TestSharedRefresh: a refresh extends the binding Redis has without overwriting it
// (another instance may have moved the session), and writes it where there is none.
func TestSharedRefresh(t *testing.T) {
	r := redistest.Start(t)
	s := newTestShared(t, r, nil)
	const k uint64 = 42
	key := "sg:" + string(hexBytes(k))
	if _, err := r.Do("SET", key, "moved", "PX", "5000"); err != nil {
		t.Fatal(err)
	}
	s.Refresh(k, "old")
	s.Wait()
	if v, _ := r.Do("GET", key); v != "moved" {
		t.Fatalf("after Refresh the binding is %q, want moved (kept)", v)
	}
	if pttl, _ := r.Do("PTTL", key); len(pttl) < 7 { // an hour is 3600000 ms
		t.Fatalf("PTTL after Refresh = %s ms, want about an hour", pttl)
	}
	s.Refresh(k+1, "m3")
	s.Wait()
	if v, _ := r.Do("GET", "sg:"+string(hexBytes(k+1))); v != "m3" {
		t.Fatalf("Refresh of an absent binding wrote %q, want m3", v)
	}
	if st := s.Stats(); st.Writes[WriteOK] != 2 || st.Writes[WriteError] != 0 {
		t.Fatalf("Stats().Writes = %v, want 2 ok", st.Writes)
	}
}

// outage drives a store through a Redis outage made by down and ended by up: reads
// stay within the budget, the store degrades once, skips Redis while down, and reads
// and writes resume once Redis answers.
func outage(t *testing.T, down, up func(*redistest.Server)) {
	r := redistest.Start(t)
	var ch changes
	s := newTestShared(t, r, func(c *SharedConfig) { c.OnChange = ch.add })
	s.Store(1, "m1")
	s.Wait()
	if _, res := s.Lookup(1); res != ReadHit {
		t.Fatalf("Lookup before the outage: %s, want hit", res)
	}
	down(r)
	budget := s.cfg.Budget
	worst := time.Duration(0)
	for i := uint64(0); s.Up(); i++ {
		if i == 1000 {
			t.Fatalf("still up after 1000 failing reads: %+v", s.Stats())
		}
		start := time.Now()
		s.Lookup(1000 + i) // not cached
		worst = max(worst, time.Since(start))
	}
	// Generous: the budget plus scheduling on a loaded machine, never a stall.
	if limit := budget + time.Second; worst > limit {
		t.Fatalf("slowest read during the outage took %s, want at most %s", worst, limit)
	}
	waitUntil(t, "the degradation to be reported", func() bool { return len(ch.list()) >= 1 })
	start := time.Now()
	if _, res := s.Lookup(2000); res != ReadSkipped {
		t.Fatalf("Lookup while down = %s, want skipped", res)
	}
	if d := time.Since(start); d > budget {
		t.Fatalf("a skipped read took %s, longer than the budget %s", d, budget)
	}
	if s.Store(3, "m3") {
		t.Fatal("Store while down was queued")
	}
	up(r)
	waitUntil(t, "the store to come back", s.Up)
	waitUntil(t, "the recovery to be reported", func() bool { return len(ch.list()) >= 2 })
	if got := ch.list(); len(got) != 2 || got[0] || !got[1] {
		t.Fatalf("OnChange calls %v, want [false true]: one log line each way", got)
	}
	if !s.Store(4, "m4") {
		t.Fatal("Store after recovery was not queued")
	}
	s.Wait()
	waitUntil(t, "a read after recovery", func() bool { id, res := s.Lookup(4); return res == ReadHit && id == "m4" })
	st := s.Stats()
	if st.Degradations != 1 || st.Reads[ReadSkipped] == 0 || st.Writes[WriteSkipped] == 0 || st.LastError == "" {
		t.Fatalf("Stats() = %+v; want 1 degradation, skipped reads and writes, the last error", st)
	}
	if st.Reads[ReadTimeout]+st.Reads[ReadError] < 3 {
		t.Fatalf("Stats().Reads = %v; want at least 3 failed reads", st.Reads)
	}
}

func TestSharedRedisKilled(t *testing.T) {
	outage(t, (*redistest.Server).Stop, func(r *redistest.Server) { r.Restart() })
}

func TestSharedRedisPaused(t *testing.T) {
	outage(t, (*redistest.Server).Pause, (*redistest.Server).Resume)
}

func TestSharedRedisSlow(t *testing.T) {
	outage(t, func(r *redistest.Server) {
		go r.Do("DEBUG", "SLEEP", "3") //nolint:errcheck // the server sleeps; the reply does not matter
		waitUntil(t, "the server to sleep", func() bool {
			c := make(chan struct{})
			go func() { r.Do("PING"); close(c) }() //nolint:errcheck // timing it
			select {
			case <-c:
				return false
			case <-time.After(200 * time.Millisecond):
				return true
			}
		})
	}, func(*redistest.Server) {})
}

// TestSharedStartsDown: a Redis that does not answer at start does not fail NewShared;
// the store starts down and comes up when Redis does.
func TestSharedStartsDown(t *testing.T) {
	r := redistest.Start(t)
	r.Stop()
	var ch changes
	s := newTestShared(t, r, func(c *SharedConfig) { c.OnChange = ch.add })
	if s.Up() {
		t.Fatal("up without a server")
	}
	if _, res := s.Lookup(1); res != ReadSkipped {
		t.Fatalf("Lookup = %s, want skipped", res)
	}
	r.Restart()
	waitUntil(t, "the store to come up", s.Up)
	s.Store(1, "m1")
	s.Wait()
	if id, res := s.Lookup(1); res != ReadHit || id != "m1" {
		t.Fatalf("Lookup = %q, %s; want m1, hit", id, res)
	}
}

// TestSharedQueueFull: writes past the queue are dropped and counted, never blocking.
func TestSharedQueueFull(t *testing.T) {
	r := redistest.Start(t)
	s := newTestShared(t, r, func(c *SharedConfig) { c.QueueLen = 4 })
	r.Pause()
	defer r.Resume()
	for i := range uint64(10_000) {
		s.Store(i, "m1")
	}
	if st := s.Stats(); st.Writes[WriteDropped] == 0 {
		t.Fatalf("Stats().Writes = %v after 10,000 writes to a paused server with a queue of 4: none dropped", st.Writes)
	}
}

// TestSharedMemoryPerBinding measures what one binding costs Redis (MEMORY USAGE),
// with the key as written (prefix + 8 bytes) and, for comparison, with 16 hex digits.
func TestSharedMemoryPerBinding(t *testing.T) {
	r := redistest.Start(t)
	s := newTestShared(t, r, nil)
	const n = 10_000
	before := usedMemory(t, r)
	for i := range uint64(n) {
		s.Store(i*0x9e3779b97f4a7c15, "websphere-node-01")
	}
	s.Wait()
	after := usedMemory(t, r)
	bin, err := r.Do("MEMORY", "USAGE", "sg:"+string(hexBytes(0x9e3779b97f4a7c15)))
	if err != nil {
		t.Fatal(err)
	}
	hexKey := "sg:" + hex.EncodeToString(hexBytes(1))
	if _, err := r.Do("SET", hexKey, "websphere-node-01", "PX", "3600000"); err != nil {
		t.Fatal(err)
	}
	hx, _ := r.Do("MEMORY", "USAGE", hexKey)
	t.Logf("MEMORY USAGE of one binding (17-byte member id, TTL): binary key %s bytes, hex key %s bytes; used_memory per binding over %d: %d bytes",
		bin, hx, n, (after-before)/n)
	if b, _ := strconv.Atoi(bin); b == 0 {
		t.Fatalf("MEMORY USAGE = %q", bin)
	}
}

func usedMemory(t *testing.T, r *redistest.Server) int {
	t.Helper()
	info, err := r.Do("INFO", "memory")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range splitLines(info) {
		if v, ok := cutPrefix(line, "used_memory:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no used_memory in INFO")
	return 0
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		line := s[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		out = append(out, line)
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return out
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return s, false
}

// BenchmarkSharedLookup measures a shared read: answered by the client-side cache
// (a hot binding), and a round trip to Redis (a key read for the first time).
func BenchmarkSharedLookup(b *testing.B) {
	r := redistest.Start(b)
	s, err := NewShared(SharedConfig{Addresses: []string{r.Addr}, Budget: time.Second, KeyPrefix: "sg:", TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.Store(7, "websphere-node-01")
	s.Wait()
	b.Run("client-cache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, res := s.Lookup(7); res != ReadHit {
				b.Fatalf("Lookup = %s", res)
			}
		}
	})
	b.Run("round-trip", func(b *testing.B) {
		b.ReportAllocs()
		i := uint64(1 << 40)
		for b.Loop() {
			i++
			if _, res := s.Lookup(i); res != ReadMiss {
				b.Fatalf("Lookup = %s", res)
			}
		}
	})
}
