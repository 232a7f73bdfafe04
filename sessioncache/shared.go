package sessioncache

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// SharedConfig configures a Shared store.
type SharedConfig struct {
	// Addresses are host:port of the Redis server, of the Cluster's seed nodes, or, with
	// SentinelMaster, of the sentinels. Required.
	Addresses []string
	// Username and Password authenticate to Redis (ACL user, or requirepass with no
	// Username). Sentinels are asked without them.
	Username, Password string
	// DB is the logical database (SELECT); a Cluster has only 0.
	DB int
	// SentinelMaster is the master set name the sentinels at Addresses watch; "" for a
	// standalone server or a Cluster (detected by rueidis).
	SentinelMaster string
	// TLS is the TLS to Redis (and the sentinels); nil for plain TCP.
	TLS *tls.Config
	// Budget bounds every read: past it Lookup returns ReadTimeout. Required, positive.
	Budget time.Duration
	// KeyPrefix starts every key; the rest is the key hash as 8 big-endian bytes.
	KeyPrefix string
	// TTL is a binding's lifetime in Redis (SET ... PX), as the local cache's. At least 1s.
	TTL time.Duration
	// QueueLen bounds the writes waiting for the writer; past it they are dropped.
	// Default 8192.
	QueueLen int
	// FailAfter is the number of failures in a row (timeouts, connection errors) that
	// take the store down. Default 3.
	FailAfter int
	// ProbeMin and ProbeMax bound the back-off of the PING probes while down. Defaults
	// 100ms and 5s.
	ProbeMin, ProbeMax time.Duration
	// OnChange is told of every change of state, from the prober goroutine: down with
	// the error that took the store down, up with nil. Optional.
	OnChange func(up bool, err error)
	// OnInvalidate is told of a key hash whose binding Redis reports changed (RESP3
	// tracking) after this instance read it, from rueidis' reader goroutine: it must
	// be quick. The gateway forgets its local copy. Optional.
	OnInvalidate func(keyHash uint64)
	// OnFlush is told that Redis invalidated every key this instance read (a lost
	// connection, a FLUSHALL): what was read before is no longer tracked.
	OnFlush func()
}

// ReadResult is the outcome of a shared read.
type ReadResult uint8

// Read results, as counted and exported.
const (
	// ReadHit: Redis (or the client-side cache Redis keeps in step) has a binding.
	ReadHit ReadResult = iota
	// ReadMiss: no binding anywhere.
	ReadMiss
	// ReadTimeout: no answer within the budget.
	ReadTimeout
	// ReadError: a connection error or an error reply.
	ReadError
	// ReadSkipped: the store is down and was not asked.
	ReadSkipped
	NumReadResults
)

var readResultNames = [NumReadResults]string{"hit", "miss", "timeout", "error", "skipped"}

// String returns the result's name as used in metrics.
func (r ReadResult) String() string { return readResultNames[r] }

// WriteResult is the outcome of a shared write.
type WriteResult uint8

// Write results, as counted and exported.
const (
	// WriteOK: Redis applied it.
	WriteOK WriteResult = iota
	// WriteError: Redis did not answer in time, or refused it.
	WriteError
	// WriteDropped: the queue was full.
	WriteDropped
	// WriteSkipped: the store was down.
	WriteSkipped
	NumWriteResults
)

var writeResultNames = [NumWriteResults]string{"ok", "error", "dropped", "skipped"}

// String returns the result's name as used in metrics.
func (r WriteResult) String() string { return writeResultNames[r] }

// NumSharedLatencyBuckets is the number of finite bounds of the read-time histogram.
const NumSharedLatencyBuckets = 10

// sharedLatencyBounds are the read-time histogram's upper bounds (inclusive): from an
// answer of the client-side cache to far past any sane budget.
var sharedLatencyBounds = [NumSharedLatencyBuckets]time.Duration{
	10 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond,
	500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 50 * time.Millisecond,
}

// SharedLatency is a copy of the read-time histogram of the reads that asked (every
// result but ReadSkipped).
type SharedLatency struct {
	Bounds [NumSharedLatencyBuckets]time.Duration
	// Cumulative[i] counts the reads that took at most Bounds[i]; the last element
	// counts them all.
	Cumulative [NumSharedLatencyBuckets + 1]uint64
	// Sum is the total read time in seconds.
	Sum float64
}

// Count is the number of reads observed.
func (l SharedLatency) Count() uint64 { return l.Cumulative[NumSharedLatencyBuckets] }

// Quantile returns the upper bound of the bucket holding quantile q (0-1) of the
// reads, 0 with none, and the largest bound for reads past every bound.
func (l SharedLatency) Quantile(q float64) time.Duration {
	n := l.Count()
	if n == 0 {
		return 0
	}
	want := uint64(q * float64(n))
	for i, c := range l.Cumulative[:NumSharedLatencyBuckets] {
		if c >= want && c > 0 {
			return l.Bounds[i]
		}
	}
	return l.Bounds[NumSharedLatencyBuckets-1]
}

// SharedStats are a Shared store's state and counters since it was created.
type SharedStats struct {
	Up     bool
	Reads  [NumReadResults]uint64
	Writes [NumWriteResults]uint64
	// CacheHits counts the hits and misses answered by the client-side cache, without
	// a round trip.
	CacheHits uint64
	// Invalidations counts the keys Redis reported changed after this instance read them.
	Invalidations uint64
	// Degradations counts the times the store went down.
	Degradations uint64
	// Queued is the number of writes waiting now.
	Queued    int
	Latency   SharedLatency
	LastError string // the last error that took the store down or kept it down
}

// Shared is the second tier of learned bindings: a Redis store that gateway instances
// share, read with server-assisted client-side caching (RESP3 tracking, opt-in) and
// written asynchronously. It maps a key hash to a member id (not a number: numbers are
// per process). It is a hint like Cache: a read that misses the budget, a full write
// queue or a Redis outage only lose bindings.
//
// After FailAfter failures in a row it goes down: reads and writes are skipped (and
// counted) without asking Redis, and one goroutine PINGs it with back-off until it
// answers. All methods are safe for concurrent use.
type Shared struct {
	cfg      SharedConfig
	client   atomic.Pointer[redisClient] // nil until a first connection succeeded
	up       atomic.Bool
	fails    atomic.Uint32
	cacheTTL time.Duration

	queue chan write
	wake  chan struct{} // cap 1: the store went down
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once

	reads         [NumReadResults]atomic.Uint64
	writes        [NumWriteResults]atomic.Uint64
	cacheHits     atomic.Uint64
	invalidations atomic.Uint64
	downs         atomic.Uint64
	latency       [NumSharedLatencyBuckets + 1]atomic.Uint64
	latencySum    atomic.Uint64 // microseconds
	lastErr       atomic.Pointer[string]
}

type redisClient struct{ c rueidis.Client }

// write is one queued write: a binding (SET) or the refresh of one in use (SET NX and
// PEXPIRE: it extends whatever binding Redis has, and writes ours only where there is
// none, so that a refresh never undoes another instance's newer move). With done set
// it is Wait's marker.
type write struct {
	keyHash uint64
	id      string
	refresh bool
	done    chan struct{}
}

const (
	// maxKeyPrefix bounds KeyPrefix (config validates it: session.shared.key_prefix).
	maxKeyPrefix = 64
	// maxBatch is the most writes sent in one pipeline.
	maxBatch = 256
	// writeTimeout bounds one pipeline of writes; they are off the request path.
	writeTimeout = time.Second
	// probeTimeout bounds a PING of the prober, and a connection attempt's dial.
	probeTimeout = time.Second
	// clientCacheTTL bounds how long the client-side cache keeps an answer. Redis
	// invalidates it when the key changes; the bound covers a lost invalidation.
	clientCacheTTL = time.Minute
	// clientCacheBytes is the client-side cache of each connection (rueidis' default
	// is 128 MiB): ~40,000 answers.
	clientCacheBytes = 8 << 20
	// connBuffer is each connection's read and write buffer (rueidis' default is
	// 512 KiB); commands and answers are a few dozen bytes.
	connBuffer = 64 << 10
)

// ErrSharedConfig is returned by NewShared for an unusable SharedConfig.
var ErrSharedConfig = errors.New("sessioncache: bad shared store config")

// NewShared starts a Shared store. It tries to connect at once; when Redis does not
// answer it starts down and its prober keeps trying, so a Redis outage never stops the
// gateway from starting. Close it to stop its goroutines.
func NewShared(cfg SharedConfig) (*Shared, error) {
	switch {
	case len(cfg.Addresses) == 0:
		return nil, fmt.Errorf("%w: no address", ErrSharedConfig)
	case cfg.Budget <= 0:
		return nil, fmt.Errorf("%w: budget %s: must be positive", ErrSharedConfig, cfg.Budget)
	case cfg.TTL < time.Second:
		return nil, fmt.Errorf("%w: ttl %s: must be at least 1s", ErrSharedConfig, cfg.TTL)
	case len(cfg.KeyPrefix) > maxKeyPrefix:
		return nil, fmt.Errorf("%w: key prefix of %d bytes: at most %d", ErrSharedConfig, len(cfg.KeyPrefix), maxKeyPrefix)
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 8192
	}
	if cfg.FailAfter <= 0 {
		cfg.FailAfter = 3
	}
	if cfg.ProbeMin <= 0 {
		cfg.ProbeMin = 100 * time.Millisecond
	}
	if cfg.ProbeMax < cfg.ProbeMin {
		cfg.ProbeMax = max(5*time.Second, cfg.ProbeMin)
	}
	s := &Shared{
		cfg:      cfg,
		cacheTTL: min(cfg.TTL, clientCacheTTL),
		queue:    make(chan write, cfg.QueueLen),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	if err := s.connect(); err != nil {
		s.setErr(err)
		s.downs.Add(1)
		s.wake <- struct{}{}
	} else {
		s.up.Store(true)
	}
	s.wg.Add(2)
	go s.writeLoop()
	go s.probeLoop()
	return s, nil
}

// connect makes the rueidis client. rueidis dials at once: a server that does not
// answer fails here.
func (s *Shared) connect() error {
	opt := rueidis.ClientOption{
		InitAddress:         s.cfg.Addresses,
		Username:            s.cfg.Username,
		Password:            s.cfg.Password,
		SelectDB:            s.cfg.DB,
		TLSConfig:           s.cfg.TLS,
		ClientName:          "sessiongate",
		Dialer:              net.Dialer{Timeout: probeTimeout},
		CacheSizeEachConn:   clientCacheBytes,
		ReadBufferEachConn:  connBuffer,
		WriteBufferEachConn: connBuffer,
		// A stalled server is the prober's to find; rueidis' own check of a silent
		// connection (10s by default) only needs to be shorter than an outage.
		ConnWriteTimeout: 3 * time.Second,
		OnInvalidations:  s.invalidated,
	}
	if s.cfg.SentinelMaster != "" {
		opt.Sentinel = rueidis.SentinelOption{
			MasterSet: s.cfg.SentinelMaster,
			TLSConfig: s.cfg.TLS,
			Dialer:    net.Dialer{Timeout: probeTimeout},
		}
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return fmt.Errorf("sessioncache: redis %v: %w", s.cfg.Addresses, err)
	}
	s.client.Store(&redisClient{c})
	return nil
}

// Lookup returns the member id bound to keyHash. It waits at most the budget; a hot
// binding (or a known absence) comes from the client-side cache without a round trip.
// Safe for concurrent use. It allocates (the key, the command, the context): it runs
// only on a miss of the local cache.
func (s *Shared) Lookup(keyHash uint64) (string, ReadResult) {
	if !s.up.Load() {
		s.reads[ReadSkipped].Add(1)
		return "", ReadSkipped
	}
	rc := s.client.Load()
	var buf [maxKeyPrefix + 8]byte
	key := string(s.appendKey(buf[:0], keyHash))
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Budget)
	start := time.Now()
	res := rc.c.DoCache(ctx, rc.c.B().Get().Key(key).Cache().ToStaticTTL(), s.cacheTTL)
	d := time.Since(start)
	cancel()
	s.observe(d)
	v, err := res.ToString()
	var r ReadResult
	switch {
	case err == nil:
		r = ReadHit
	case rueidis.IsRedisNil(err):
		r = ReadMiss
	case isTimeout(err):
		r = ReadTimeout
	default:
		r = ReadError
	}
	s.reads[r].Add(1)
	switch {
	case r <= ReadMiss && res.IsCacheHit():
		// Answered locally: says nothing of the server.
		s.cacheHits.Add(1)
	case r <= ReadMiss:
		s.succeeded()
	case r == ReadTimeout || !isReply(err):
		s.failed(err)
	}
	return v, r
}

// Store writes keyHash's binding to member id, asynchronously: it reports false when
// the write was dropped (queue full) or skipped (store down). Safe for concurrent use;
// does not block. id must not change (a member id from the config).
func (s *Shared) Store(keyHash uint64, id string) bool {
	return s.enqueue(write{keyHash: keyHash, id: id})
}

// StoreNow writes keyHash's binding to member id and waits for Redis's answer, at most
// the budget. It is for a binding another instance may be asked about at once: a
// session just issued (the client's next request can reach any instance within a
// millisecond) or just moved. Past the budget the request goes on; the write may still
// land. It reports whether Redis answered OK. Safe for concurrent use; it allocates.
func (s *Shared) StoreNow(keyHash uint64, id string) bool {
	rc := s.client.Load()
	if !s.up.Load() || rc == nil {
		s.writes[WriteSkipped].Add(1)
		return false
	}
	var buf [maxKeyPrefix + 8]byte
	key := string(s.appendKey(buf[:0], keyHash))
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Budget)
	err := rc.c.Do(ctx, rc.c.B().Set().Key(key).Value(id).Px(s.cfg.TTL).Build()).Error()
	cancel()
	switch {
	case err == nil:
		s.writes[WriteOK].Add(1)
		s.succeeded()
		return true
	case isReply(err):
		s.writes[WriteError].Add(1)
	default:
		s.writes[WriteError].Add(1)
		s.failed(err)
	}
	return false
}

// Refresh extends keyHash's binding in Redis, writing id where Redis has none (a
// binding in use, as Cache refreshes it). Like Store, it does not block.
func (s *Shared) Refresh(keyHash uint64, id string) bool {
	return s.enqueue(write{keyHash: keyHash, id: id, refresh: true})
}

func (s *Shared) enqueue(w write) bool {
	if !s.up.Load() {
		s.writes[WriteSkipped].Add(1)
		return false
	}
	select {
	case s.queue <- w:
		return true
	default:
		s.writes[WriteDropped].Add(1)
		return false
	}
}

// Wait blocks until the writes queued so far are sent and answered, or skipped (tests,
// and a gateway's shutdown).
func (s *Shared) Wait() {
	done := make(chan struct{})
	select {
	case s.queue <- write{done: done}:
	case <-s.stop:
		return
	}
	select {
	case <-done:
	case <-s.stop:
	}
}

// Mode is the kind of Redis rueidis found: "standalone", "sentinel" or "cluster";
// "" before a first connection.
func (s *Shared) Mode() string {
	if rc := s.client.Load(); rc != nil {
		return string(rc.c.Mode())
	}
	return ""
}

// Up reports whether the store is asked (not degraded).
func (s *Shared) Up() bool { return s.up.Load() }

// Stats returns the state and counters.
func (s *Shared) Stats() SharedStats {
	st := SharedStats{
		Up:            s.up.Load(),
		CacheHits:     s.cacheHits.Load(),
		Invalidations: s.invalidations.Load(),
		Degradations:  s.downs.Load(),
		Queued:        len(s.queue),
		Latency:       SharedLatency{Bounds: sharedLatencyBounds},
	}
	for i := range s.reads {
		st.Reads[i] = s.reads[i].Load()
	}
	for i := range s.writes {
		st.Writes[i] = s.writes[i].Load()
	}
	var n uint64
	for i := range s.latency {
		n += s.latency[i].Load()
		st.Latency.Cumulative[i] = n
	}
	st.Latency.Sum = float64(s.latencySum.Load()) / 1e6
	if e := s.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}

// Close stops the writer and the prober and closes the connections. Queued writes are
// lost; call Wait first to send them.
func (s *Shared) Close() {
	s.once.Do(func() {
		close(s.stop)
		s.wg.Wait()
		if rc := s.client.Load(); rc != nil {
			rc.c.Close()
		}
	})
}

// appendKey appends the Redis key of keyHash: the prefix, then the hash as 8
// big-endian bytes. Binary rather than 16 hex digits: Redis keeps keys in sds strings
// rounded up by jemalloc, and "sg:" plus 8 bytes fits a smaller size class than plus
// 16 (the cost per binding, MEMORY USAGE, is measured by TestSharedMemoryPerBinding).
func (s *Shared) appendKey(dst []byte, keyHash uint64) []byte {
	dst = append(dst, s.cfg.KeyPrefix...)
	return binary.BigEndian.AppendUint64(dst, keyHash)
}

// parseKey is appendKey's inverse, for invalidations.
func (s *Shared) parseKey(key string) (uint64, bool) {
	p := s.cfg.KeyPrefix
	if len(key) != len(p)+8 || key[:len(p)] != p {
		return 0, false
	}
	return binary.BigEndian.Uint64([]byte(key[len(p):])), true
}

// invalidated is rueidis' OnInvalidations: keys Redis reports changed. nil means
// everything (a flush, or a lost connection): the local cache keeps its bindings,
// which are hints, rather than sending every session to Redis again; OnFlush lets its
// holder drop what it knew only from Redis (known absences).
func (s *Shared) invalidated(keys []rueidis.RedisMessage) {
	if keys == nil {
		if s.cfg.OnFlush != nil {
			s.cfg.OnFlush()
		}
		return
	}
	for i := range keys {
		k, err := keys[i].ToString()
		if err != nil {
			continue
		}
		if h, ok := s.parseKey(k); ok {
			s.invalidations.Add(1)
			if s.cfg.OnInvalidate != nil {
				s.cfg.OnInvalidate(h)
			}
		}
	}
}

func (s *Shared) observe(d time.Duration) {
	i := 0
	for i < NumSharedLatencyBuckets && d > sharedLatencyBounds[i] {
		i++
	}
	s.latency[i].Add(1)
	s.latencySum.Add(uint64(d / time.Microsecond))
}

func (s *Shared) succeeded() {
	if s.fails.Load() != 0 {
		s.fails.Store(0)
	}
}

// failed counts a failure; the one that reaches FailAfter takes the store down and
// wakes the prober (which logs it): no goroutine or log per failure.
func (s *Shared) failed(err error) {
	if s.fails.Add(1) < uint32(s.cfg.FailAfter) || !s.up.CompareAndSwap(true, false) {
		return
	}
	s.downs.Add(1)
	s.setErr(err)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Shared) setErr(err error) {
	msg := err.Error()
	s.lastErr.Store(&msg)
}

// probeLoop waits for the store to go down, then PINGs it with back-off until it
// answers, and brings it up again.
func (s *Shared) probeLoop() {
	defer s.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
		if s.cfg.OnChange != nil {
			var err error
			if e := s.lastErr.Load(); e != nil {
				err = errors.New(*e)
			}
			s.cfg.OnChange(false, err)
		}
		for delay := s.cfg.ProbeMin; ; delay = min(2*delay, s.cfg.ProbeMax) {
			t.Reset(delay)
			select {
			case <-s.stop:
				t.Stop()
				return
			case <-t.C:
			}
			if err := s.ping(); err != nil {
				s.setErr(err)
				continue
			}
			s.fails.Store(0)
			s.up.Store(true)
			if s.cfg.OnChange != nil {
				s.cfg.OnChange(true, nil)
			}
			break
		}
	}
}

func (s *Shared) ping() error {
	rc := s.client.Load()
	if rc == nil {
		return s.connect()
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	return rc.c.Do(ctx, rc.c.B().Ping().Build()).Error()
}

// writeLoop sends the queued writes, up to maxBatch in one pipeline.
func (s *Shared) writeLoop() {
	defer s.wg.Done()
	batch := make([]write, 0, maxBatch)
	for {
		select {
		case <-s.stop:
			return
		case w := <-s.queue:
			batch = append(batch[:0], w)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case w := <-s.queue:
				batch = append(batch, w)
			default:
				break more
			}
		}
		s.send(batch)
	}
}

// send writes one batch and counts each write once.
func (s *Shared) send(batch []write) {
	defer func() {
		for _, w := range batch {
			if w.done != nil {
				close(w.done)
			}
		}
	}()
	n := 0
	for _, w := range batch {
		if w.done == nil {
			n++
		}
	}
	if n == 0 {
		return
	}
	rc := s.client.Load()
	if rc == nil || !s.up.Load() {
		s.writes[WriteSkipped].Add(uint64(n))
		return
	}
	c := rc.c
	cmds := make(rueidis.Commands, 0, 2*n)
	var buf [maxKeyPrefix + 8]byte
	for _, w := range batch {
		if w.done != nil {
			continue
		}
		key := string(s.appendKey(buf[:0], w.keyHash))
		if w.refresh {
			cmds = append(cmds, c.B().Set().Key(key).Value(w.id).Nx().Px(s.cfg.TTL).Build(),
				c.B().Pexpire().Key(key).Milliseconds(s.cfg.TTL.Milliseconds()).Build())
			continue
		}
		cmds = append(cmds, c.B().Set().Key(key).Value(w.id).Px(s.cfg.TTL).Build())
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	res := c.DoMulti(ctx, cmds...)
	cancel()
	i := 0
	var fail error
	for _, w := range batch {
		if w.done != nil {
			continue
		}
		err := res[i].Error()
		if w.refresh {
			if e := res[i+1].Error(); err == nil || rueidis.IsRedisNil(err) {
				err = e // SET NX answers nil where a binding exists
			}
			i++
		}
		i++
		if err == nil || rueidis.IsRedisNil(err) {
			s.writes[WriteOK].Add(1)
			continue
		}
		s.writes[WriteError].Add(1)
		if !isReply(err) {
			fail = err
		}
	}
	if fail != nil {
		s.failed(fail)
	} else {
		s.succeeded()
	}
}

// isTimeout reports whether err is a deadline: the budget's, or a connection's.
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}

// isReply reports whether err is an error reply of Redis (it answered): not a failure
// of the store's availability.
func isReply(err error) bool {
	var re *rueidis.RedisError
	return errors.As(err, &re)
}
