package bench

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/sessiongate/sessiongate/router"
	"github.com/sessiongate/sessiongate/sessioncache"
)

// DefaultMemorySizes are the session counts Memory measures when given none.
var DefaultMemorySizes = []int{100000, 1000000}

// memoryBatch is how many sessions are learned between two Cache.Wait calls: well
// under ristretto's 32768-item set buffer, so that few writes are dropped.
const memoryBatch = 8192

// memoryPasses bounds the passes over the session population: admission refuses some
// writes once the cache is nearly full, and a later pass offers them again.
const memoryPasses = 8

// MemoryReport is the result of Memory; `-memory -json` prints it as is.
type MemoryReport struct {
	Machine Machine      `json:"machine"`
	Sizes   []MemorySize `json:"sizes"`
	// Notes say what a figure includes.
	Notes []string `json:"notes,omitempty"`
}

// MemorySize is the memory of one session cache sized for and filled with Sessions
// learned sessions.
type MemorySize struct {
	// Sessions is the cache's MaxSessions and the number of distinct sessions learned.
	Sessions int `json:"sessions"`
	// Entries is the number of bindings the cache holds at the end (Stats.Entries).
	Entries uint64 `json:"entries"`
	// Passes is how many times the population was offered before Entries reached 90%
	// of Sessions (or the pass limit).
	Passes int `json:"passes"`
	// Drops and Rejections are the writes ristretto dropped or its admission refused.
	Drops      uint64 `json:"drops"`
	Rejections uint64 `json:"rejections"`
	// EmptyHeap and EmptyRSS are what the empty cache costs: HeapInuse and RSS after
	// New minus before it (mostly the TinyLFU counters, 10 per session, and the
	// doorkeeper bloom filter).
	EmptyHeap int64 `json:"empty_heap_bytes"`
	EmptyRSS  int64 `json:"empty_rss_bytes"`
	// Heap and RSS are what learning the sessions added to the empty cache.
	Heap int64 `json:"heap_bytes"`
	RSS  int64 `json:"rss_bytes"`
	// HeapPerEntry and RSSPerEntry are Heap and RSS divided by Entries: the cost of
	// one learned session on top of the empty cache.
	HeapPerEntry float64 `json:"heap_per_entry_bytes"`
	RSSPerEntry  float64 `json:"rss_per_entry_bytes"`
	// TotalHeapPerEntry is (EmptyHeap + Heap) / Entries and TotalRSSPerEntry
	// (EmptyRSS + RSS) / Entries: everything the cache holds, counters included, per
	// learned session.
	TotalHeapPerEntry float64 `json:"total_heap_per_entry_bytes"`
	TotalRSSPerEntry  float64 `json:"total_rss_per_entry_bytes"`
}

// Memory measures the session cache's memory for each size in sizes (default
// DefaultMemorySizes): an empty cache with MaxSessions = size, then the same cache
// after learning size distinct sessions whose keys are 32-hex Tomcat ids with a
// jvmRoute, hashed as the gateway hashes them. Heap is runtime.MemStats.HeapInuse and
// RSS the process's resident set (/proc/self/statm; 0 elsewhere), each read after a
// collection that returns freed memory to the OS. The sizes run one after another in
// this process, so nothing else should run in it meanwhile.
func Memory(ctx context.Context, sizes []int) (MemoryReport, error) {
	if len(sizes) == 0 {
		sizes = DefaultMemorySizes
	}
	for _, n := range sizes {
		if n < 1 {
			return MemoryReport{}, fmt.Errorf("bench: memory size %d: must be at least 1", n)
		}
	}
	r := MemoryReport{
		Machine: Machine{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
			NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), CPU: cpuModel()},
		Notes: []string{
			"heap: runtime.MemStats.HeapInuse; rss: /proc/self/statm; both after runtime/debug.FreeOSMemory",
			"empty cache: ristretto's TinyLFU counters (NumCounters = 10 x sessions, 4-bit count-min sketch of 4 rows rounded up to a power of 2) and doorkeeper bloom filter, plus its buffers",
			"per entry: ristretto's store map entry (key, conflict, value, and an unused time.Time expiration: the cache sets no ristretto TTL), the eviction policy's key-cost entry, and with Metrics on its admission-time map (up to 100000 keys)",
			"empty cache rss is low because the counters' zeroed pages are not resident until written; learning touches them, so rss/entry includes them",
		},
	}
	if _, ok := rss(); !ok {
		r.Notes = append(r.Notes, "rss: /proc/self/statm unreadable on this system; rss figures are 0")
	}
	for _, n := range sizes {
		s, err := memorySize(ctx, n)
		if err != nil {
			return r, err
		}
		r.Sizes = append(r.Sizes, s)
	}
	return r, nil
}

func memorySize(ctx context.Context, n int) (MemorySize, error) {
	s := MemorySize{Sessions: n}
	heap0, rss0 := memNow()
	c, err := sessioncache.New(sessioncache.Config{MaxSessions: int64(n), TTL: 24 * time.Hour})
	if err != nil {
		return s, fmt.Errorf("bench: memory %d: %w", n, err)
	}
	defer func() {
		c.Close()
		debug.FreeOSMemory()
	}()
	heap1, rss1 := memNow()
	s.EmptyHeap, s.EmptyRSS = heap1-heap0, rss1-rss0

	want := uint64(n) * 9 / 10
	for s.Passes < memoryPasses && c.Stats().Entries < want {
		s.Passes++
		if err := learnAll(ctx, c, n); err != nil {
			return s, err
		}
	}
	st := c.Stats()
	s.Entries, s.Drops, s.Rejections = st.Entries, st.Drops, st.Rejections

	heap2, rss2 := memNow()
	s.Heap, s.RSS = heap2-heap1, rss2-rss1
	if s.Entries > 0 {
		e := float64(s.Entries)
		s.HeapPerEntry = float64(s.Heap) / e
		s.RSSPerEntry = float64(s.RSS) / e
		s.TotalHeapPerEntry = float64(s.EmptyHeap+s.Heap) / e
		s.TotalRSSPerEntry = float64(s.EmptyRSS+s.RSS) / e
	}
	runtime.KeepAlive(c)
	return s, nil
}

// learnAll offers the same n sessions to c on every call: keys come from a fixed seed
// and are made one at a time, so that no key outlives its hashing and the heap holds
// only what the cache keeps.
func learnAll(ctx context.Context, c *sessioncache.Cache, n int) error {
	rng := rand.New(rand.NewPCG(1, 2))
	var raw [16]byte
	key := make([]byte, 0, 40)
	for i := range n {
		for j := 0; j < len(raw); j += 8 {
			v := rng.Uint64()
			for k := range 8 {
				raw[j+k] = byte(v >> (8 * k))
			}
		}
		num := uint32(i % 4)
		key = hex.AppendEncode(key[:0], raw[:])
		key = append(key, ".m"...)
		key = strconv.AppendUint(key, uint64(num+1), 10)
		c.Learn(router.HashKey(key), num)
		if (i+1)%memoryBatch == 0 {
			c.Wait()
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	c.Wait()
	return ctx.Err()
}

// memNow collects garbage twice (sync.Pool keeps what it holds through one collection,
// and earlier work's pools would otherwise be freed during the measurement), returns
// freed pages to the OS and reads HeapInuse and RSS.
func memNow() (heap, rssBytes int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	rssBytes, _ = rss()
	return int64(m.HeapInuse), rssBytes
}

// rss reads the resident set size from /proc/self/statm (Linux).
func rss() (int64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}

// WriteJSON writes the report as indented JSON.
func (r *MemoryReport) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// WriteTable writes the human table: one row per size, then the notes.
func (r *MemoryReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "session cache memory (%s, %s/%s)\n\n", r.Machine.GoVersion, r.Machine.OS, r.Machine.Arch)
	fmt.Fprintf(&b, "%10s %10s %7s %11s %10s %17s %16s %17s %16s\n",
		"sessions", "entries", "passes", "heap/entry", "rss/entry", "empty cache heap", "empty cache rss", "total heap/entry", "total rss/entry")
	for _, s := range r.Sizes {
		fmt.Fprintf(&b, "%10d %10d %7d %10.1fB %9.1fB %17s %16s %16.1fB %15.1fB\n",
			s.Sessions, s.Entries, s.Passes, s.HeapPerEntry, s.RSSPerEntry, fmtBytes(s.EmptyHeap), fmtBytes(s.EmptyRSS), s.TotalHeapPerEntry, s.TotalRSSPerEntry)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nnote: %s", n)
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtBytes(n int64) string {
	const mib = 1 << 20
	if n >= mib || n <= -mib {
		return fmt.Sprintf("%.1fMiB", float64(n)/mib)
	}
	return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
}
