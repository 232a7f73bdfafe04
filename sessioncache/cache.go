package sessioncache

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// Config sizes a Cache.
type Config struct {
	// MaxSessions bounds the number of bindings kept; the least valuable are evicted
	// past it (ristretto's TinyLFU). Required, positive.
	MaxSessions int64
	// TTL is how long a binding lives after it was learned. A binding that is used
	// after half its TTL is written again, so an active session keeps its binding.
	// Required, at least one second.
	TTL time.Duration
}

// Stats are the cache's counters since it was created.
type Stats struct {
	Hits, Misses uint64
	// Sets counts bindings offered; Refreshes those offered again because in use.
	Sets, Refreshes uint64
	// Drops counts writes ristretto dropped (buffers full); Rejections writes its
	// admission policy refused; Evictions bindings pushed out for room.
	Drops, Rejections, Evictions uint64
	// Entries is the number of bindings held now (approximate).
	Entries uint64
}

// Cache maps session key hashes to member numbers. All methods are safe for
// concurrent use.
type Cache struct {
	c         *ristretto.Cache[uint64, uint64]
	ttlSecs   uint32 // seconds a binding lives after it was written
	refreshAt uint32 // seconds after which a used binding is written again
	start     time.Time
	now       atomic.Uint32 // seconds since start, kept by a ticker

	sets, refreshes, drops atomic.Uint64

	stop     chan struct{}
	stopOnce sync.Once
}

// ErrConfig is returned by New for an unusable Config.
var ErrConfig = errors.New("sessioncache: bad config")

// New starts a Cache. Close it to stop its goroutines.
func New(cfg Config) (*Cache, error) {
	if cfg.MaxSessions <= 0 {
		return nil, fmt.Errorf("%w: max_sessions %d: must be positive", ErrConfig, cfg.MaxSessions)
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("%w: ttl %s: must be at least 1s", ErrConfig, cfg.TTL)
	}
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, uint64]{
		// Ten counters per entry, as ristretto's docs advise for a good hit ratio.
		NumCounters: cfg.MaxSessions * 10,
		// Every binding costs 1, so MaxCost is the number of bindings.
		MaxCost:            cfg.MaxSessions,
		IgnoreInternalCost: true,
		// Gets are counted for admission in batches of BufferItems per stripe; each
		// full batch is a channel send that wakes ristretto's policy goroutine (a
		// futex and two thread switches on a busy core). 1024 rather than the
		// documented 64: on the pinned bench the gateway's own thread switches fell
		// by 42% (sched_switch); TinyLFU gets the same counts in fewer, larger batches.
		BufferItems: 1024,
		Metrics:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("sessioncache: %w", err)
	}
	c := &Cache{
		c:         rc,
		ttlSecs:   uint32(cfg.TTL / time.Second),
		refreshAt: max(uint32(cfg.TTL/time.Second/2), 1), // never a write on every hit
		start:     time.Now(),
		stop:      make(chan struct{}),
	}
	go c.tick()
	return c, nil
}

func (c *Cache) tick() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.now.Store(uint32(time.Since(c.start) / time.Second))
		case <-c.stop:
			return
		}
	}
}

// Lookup returns the member number bound to keyHash, unless the binding is older than
// the TTL (to the second). A binding used after half its TTL is written again (an
// asynchronous ristretto write that may allocate, once per session per half TTL). Safe
// for concurrent use; allocation-free apart from that and from ristretto's own read
// buffers.
func (c *Cache) Lookup(keyHash uint64) (uint32, bool) {
	num, ok, _ := c.LookupRefresh(keyHash)
	return num, ok
}

// LookupRefresh is Lookup that also reports whether it wrote the binding again
// (refreshed), so that a shared store behind the cache can be refreshed too. Same
// guarantees as Lookup.
func (c *Cache) LookupRefresh(keyHash uint64) (num uint32, ok, refreshed bool) {
	num, _, ok, refreshed = c.LookupRefreshAt(keyHash)
	return num, ok, refreshed
}

// Absent is the member number of a known absence (LearnAbsent): a shared store in
// front of which the cache keeps "the store has no binding for this key", so that a
// session routed by its key does not ask the store on every request. Member numbers
// start at 1.
const Absent = 0

// LookupRefreshAt is LookupRefresh that also returns the second (Now) the entry was
// written. An Absent entry is returned as it is, and never refreshed: its holder judges
// its age.
func (c *Cache) LookupRefreshAt(keyHash uint64) (num, at uint32, ok, refreshed bool) {
	v, ok := c.c.Get(keyHash)
	if !ok {
		return 0, 0, false, false
	}
	num, at = unpack(v)
	now := c.now.Load()
	if now-at > c.ttlSecs {
		return 0, 0, false, false // expired: the next Learn writes over it
	}
	if num != Absent && now-at >= c.refreshAt {
		c.refreshes.Add(1)
		c.set(keyHash, pack(num, now))
		return num, at, true, true
	}
	return num, at, true, false
}

// LearnAbsent notes that the shared store has no binding for keyHash (Absent).
func (c *Cache) LearnAbsent(keyHash uint64) bool { return c.set(keyHash, pack(Absent, c.now.Load())) }

// Now is the cache's clock: seconds since it started, as LookupRefreshAt's at.
func (c *Cache) Now() uint32 { return c.now.Load() }

// Learn binds keyHash to member number num. It reports false when ristretto dropped the
// write at once; admission may still refuse it later (counted in Stats.Rejections).
// Call Wait to make the write visible to Lookup (tests only).
func (c *Cache) Learn(keyHash uint64, num uint32) bool {
	c.sets.Add(1)
	return c.set(keyHash, pack(num, c.now.Load()))
}

// set writes without ristretto's TTL: the value carries the second it was written and
// Lookup checks it, so ristretto keeps no expiration buckets: a binding takes 238-243
// bytes of heap at 1M sessions instead of 289 (`sessiongate bench -memory`, two runs). An expired
// binding that is not used again stays until evicted for room; MaxSessions bounds them.
func (c *Cache) set(keyHash, v uint64) bool {
	if !c.c.Set(keyHash, v, 1) {
		c.drops.Add(1)
		return false
	}
	return true
}

// Forget removes the binding of keyHash.
func (c *Cache) Forget(keyHash uint64) { c.c.Del(keyHash) }

// Wait blocks until the writes made so far are applied.
func (c *Cache) Wait() { c.c.Wait() }

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	m := c.c.Metrics
	added, evicted := m.KeysAdded(), m.KeysEvicted()
	var entries uint64
	if added > evicted {
		entries = added - evicted
	}
	return Stats{
		Hits:       m.Hits(),
		Misses:     m.Misses(),
		Sets:       c.sets.Load(),
		Refreshes:  c.refreshes.Load(),
		Drops:      c.drops.Load(),
		Rejections: m.SetsRejected(),
		Evictions:  evicted,
		Entries:    entries,
	}
}

// Close stops the cache's goroutines and frees it; Lookup then misses.
func (c *Cache) Close() {
	c.stopOnce.Do(func() {
		close(c.stop)
		c.c.Close()
	})
}

// pack keeps the member number and the second the binding was written in one word,
// so that a binding costs one 8-byte value.
func pack(num, at uint32) uint64 { return uint64(num)<<32 | uint64(at) }

func unpack(v uint64) (num, at uint32) { return uint32(v >> 32), uint32(v) }
