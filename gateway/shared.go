package gateway

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
	"github.com/sessiongate/sessiongate/sessioncache"
)

// localStore is the learned-session cache as bindings uses it: an interface so that
// the allocation guard measures bindings' own code, not ristretto's buffers.
type localStore interface {
	LookupRefreshAt(keyHash uint64) (num, at uint32, ok, refreshed bool)
	Learn(keyHash uint64, num uint32) bool
	LearnAbsent(keyHash uint64) bool
	Now() uint32
}

// bindings is the learned resolver's router.Store when session.shared is set: the
// local cache first, then the shared store within its budget. Redis holds member ids
// and the local cache member numbers (per process); bindings translates through the
// current snapshot. Without a shared store the resolver reads the cache directly.
type bindings struct {
	local  localStore
	shared *sessioncache.Shared
	snap   *atomic.Pointer[snapshot]
	// epoch is the cache second from which known absences count: Redis's flush of
	// this instance's tracking (a lost connection) voids those written before it.
	epoch atomic.Uint32
}

// Lookup returns the member number bound to keyHash. Safe for concurrent use. A local
// hit does not allocate (TestAllocsBindingsLocalHit); its refresh, once per session
// per half TTL, queues a write to the shared store. A local miss reads the shared
// store, which allocates and may wait up to session.shared.budget
// (BenchmarkSharedLookup); a hit there is copied into the local cache.
//
// Redis answering "no binding" is kept locally too (sessioncache.Absent), until Redis
// invalidates the key (it tracks every key this instance read, as long as the
// connection lives: a write by another instance, or an eviction from Redis's tracking
// table, sends the invalidation), the connection is lost (OnFlush), or the cache's TTL
// passes: a session routed by the route id in its key (WebSphere, Tomcat) is in no
// binding, and would otherwise ask Redis (or the client-side cache, which allocates)
// on every request.
func (b *bindings) Lookup(keyHash uint64) (uint32, bool) {
	num, at, ok, refreshed := b.local.LookupRefreshAt(keyHash)
	switch {
	case ok && num == sessioncache.Absent:
		if at >= b.epoch.Load() {
			return 0, false
		}
	case ok:
		if refreshed {
			if m := b.snap.Load().memberByNum(num); m != nil {
				b.shared.Refresh(keyHash, m.ID)
			}
		}
		return num, true
	}
	id, r := b.shared.Lookup(keyHash)
	if r == sessioncache.ReadMiss {
		b.local.LearnAbsent(keyHash)
		return 0, false
	}
	if r != sessioncache.ReadHit {
		return 0, false
	}
	m := b.snap.Load().byID[id]
	if m == nil {
		return 0, false // a member this instance's configuration does not have
	}
	num = m.State.Num()
	b.local.Learn(keyHash, num)
	return num, true
}

// memberByNum returns the member whose state number is num, or nil. A linear scan:
// it runs once per session per half TTL.
func (snap *snapshot) memberByNum(num uint32) *router.Member {
	for _, m := range snap.table.Members {
		if m.State.Num() == num {
			return m
		}
	}
	return nil
}

// share writes keyHash's binding to m through to the shared store, if there is one,
// before the answer goes out (within session.shared.budget): the client's next request
// may reach another instance at once, and must find the binding there. It runs once per
// new session and per move, never on a request of a known session (bench -instances
// saw 11 of 4,000 requests misrouted with the write queued instead).
func (s *Server) share(keyHash uint64, m *router.Member) {
	if s.shared != nil {
		s.shared.StoreNow(keyHash, m.ID)
	}
}

// newShared starts the shared store of cfg, or returns nil when it has none.
func (s *Server) newShared(cfg *config.Config, cache *sessioncache.Cache, b *bindings) (*sessioncache.Shared, error) {
	sh := cfg.Session.Shared
	if len(sh.Redis.Addresses) == 0 {
		return nil, nil
	}
	pw, err := config.LoadRedisPassword(sh.Redis)
	if err != nil {
		return nil, fmt.Errorf("gateway: session.shared.redis.password_file: %w", err)
	}
	tc, err := config.LoadRedisTLS(sh.Redis.TLS)
	if err != nil {
		return nil, fmt.Errorf("gateway: session.shared.redis.tls: %w", err)
	}
	addrs := append([]string(nil), sh.Redis.Addresses...)
	log := s.log.With().Str("log", "shared_store").Strs("addresses", addrs).Logger()
	shared, err := sessioncache.NewShared(sessioncache.SharedConfig{
		Addresses:      addrs,
		Username:       sh.Redis.Username,
		Password:       pw,
		DB:             sh.Redis.DB,
		SentinelMaster: sh.Redis.SentinelMaster,
		TLS:            tc,
		Budget:         sh.Budget,
		KeyPrefix:      sh.KeyPrefix,
		TTL:            cfg.Session.Learned.TTL,
		OnChange: func(up bool, err error) {
			if up {
				log.Info().Msg("shared store answers again: reading and writing learned bindings")
				return
			}
			log.Error().Err(err).Msg("shared store degraded: not asked until it answers PING (local cache, route and hash serve meanwhile)")
		},
		// A binding this instance read changed in Redis (a move on another instance):
		// forget the local copy, so that the next request reads the new one.
		OnInvalidate: cache.Forget,
		// Redis no longer tracks what this instance read: known absences written up
		// to now are void (bindings.Lookup asks again).
		OnFlush: func() { b.epoch.Store(cache.Now() + 1) },
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: session.shared: %w", err)
	}
	return shared, nil
}

// closeShared sends the queued writes (for at most a second) and stops the store.
func (s *Server) closeShared() {
	if s.shared == nil {
		return
	}
	done := make(chan struct{})
	go func() { s.shared.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
	s.shared.Close()
}

// SharedStatus is the shared store's state on GET /api/groups.
type SharedStatus struct {
	Up        bool     `json:"up"`
	Addresses []string `json:"addresses"`
	Mode      string   `json:"mode"` // standalone, sentinel or cluster, as found; "" before a connection
	// Reads by result: hit, miss, timeout, error, skipped (down).
	Reads map[string]uint64 `json:"reads"`
	// Writes by result: ok, error, dropped (queue full), skipped (down).
	Writes map[string]uint64 `json:"writes"`
	// ClientCacheHits are reads answered without a round trip.
	ClientCacheHits uint64 `json:"client_cache_hits"`
	Invalidations   uint64 `json:"invalidations"`
	Degradations    uint64 `json:"degradations"`
	Queued          int    `json:"queued"`
	// ReadMeanMS is the mean read time; ReadP99MS the upper bound of the bucket
	// holding the 99th percentile.
	ReadMeanMS float64 `json:"read_mean_ms"`
	ReadP99MS  float64 `json:"read_p99_ms"`
	BudgetMS   float64 `json:"budget_ms"`
	LastError  string  `json:"last_error,omitempty"`
}

// sharedStatus describes the shared store, nil without one.
func (s *Server) sharedStatus() *SharedStatus {
	if s.shared == nil {
		return nil
	}
	cfg := s.sharedCfg // restart-only: the running store's settings
	st := s.shared.Stats()
	out := &SharedStatus{
		Up: st.Up, Addresses: cfg.Redis.Addresses, Mode: s.shared.Mode(),
		Reads: map[string]uint64{}, Writes: map[string]uint64{},
		ClientCacheHits: st.CacheHits, Invalidations: st.Invalidations, Degradations: st.Degradations,
		Queued: st.Queued, BudgetMS: ms(cfg.Budget), LastError: st.LastError,
		ReadP99MS: ms(st.Latency.Quantile(0.99)),
	}
	for r := range sessioncache.NumReadResults {
		out.Reads[r.String()] = st.Reads[r]
	}
	for r := range sessioncache.NumWriteResults {
		out.Writes[r.String()] = st.Writes[r]
	}
	if n := st.Latency.Count(); n > 0 {
		out.ReadMeanMS = st.Latency.Sum * 1000 / float64(n)
	}
	return out
}

// writeSharedMetrics writes the shared store's families, when there is one.
func (s *Server) writeSharedMetrics(p *promWriter) {
	if s.shared == nil {
		return
	}
	st := s.shared.Stats()
	p.family("sessiongate_shared_store_up", "gauge", "1 while the shared store is asked, 0 while degraded (Redis failed; local cache, route and hash serve).")
	p.gauge(b2u(st.Up), "sessiongate_shared_store_up")
	p.family("sessiongate_shared_store_reads_total", "counter", "Shared store reads on local misses, by result: hit, miss, timeout (past session.shared.budget), error, skipped (degraded).")
	for r := range sessioncache.NumReadResults {
		p.counter(st.Reads[r], "sessiongate_shared_store_reads_total", "result", r.String())
	}
	p.family("sessiongate_shared_store_client_cache_hits_total", "counter", "Shared store reads (hits and misses) answered by the client-side cache, without a round trip.")
	p.counter(st.CacheHits, "sessiongate_shared_store_client_cache_hits_total")
	p.family("sessiongate_shared_store_writes_total", "counter", "Shared store writes (learned, moved and refreshed bindings), by result: ok, error, dropped (queue full), skipped (degraded).")
	for r := range sessioncache.NumWriteResults {
		p.counter(st.Writes[r], "sessiongate_shared_store_writes_total", "result", r.String())
	}
	p.family("sessiongate_shared_store_write_queue", "gauge", "Shared store writes waiting to be sent.")
	p.gauge(uint64(st.Queued), "sessiongate_shared_store_write_queue")
	p.family("sessiongate_shared_store_invalidations_total", "counter", "Bindings Redis reported changed after this instance read them (the local copy is forgotten).")
	p.counter(st.Invalidations, "sessiongate_shared_store_invalidations_total")
	p.family("sessiongate_shared_store_degradations_total", "counter", "Times the shared store was taken out after failures in a row.")
	p.counter(st.Degradations, "sessiongate_shared_store_degradations_total")

	const dur = "sessiongate_shared_store_read_duration_seconds"
	p.family(dur, "histogram", "Time of the shared store reads that asked (all but skipped), client-side cache answers included.")
	l := &st.Latency
	for i, n := range l.Cumulative {
		le := "+Inf"
		if i < len(l.Bounds) {
			le = strconv.FormatFloat(l.Bounds[i].Seconds(), 'g', -1, 64)
		}
		p.counter(n, dur+"_bucket", "le", le)
	}
	metrics.WriteCounterFloat64(p.w, p.series(dur+"_sum"), l.Sum)
	p.counter(l.Count(), dur+"_count")
}
