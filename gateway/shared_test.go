package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/router"
	"github.com/sessiongate/sessiongate/sessioncache"
)

// sharedConfig is a gateway over members (learnMember: route-less ids) with the
// shared store on r. The budget is generous for a loaded 2-core test machine; the
// outage tests set their own.
func sharedConfig(r *redistest.Server, members ...config.Member) *config.Config {
	cfg := gwConfig(gwGroup("fb", "/fb", members...))
	cfg.Session.Balance = "round_robin"
	cfg.Session.Shared.Redis.Addresses = []string{r.Addr}
	cfg.Session.Shared.Budget = scaled(200 * time.Millisecond)
	return cfg
}

// issueSessions opens sessions through addr until n of them were issued by a member
// other than the one hashing picks (learning is what keeps those), and returns
// session key -> issuing member.
func issueSessions(t *testing.T, s *Server, c *http.Client, addr string, n int) map[string]string {
	t.Helper()
	g := s.Table().Group("fb")
	out := map[string]string{}
	against := 0
	for i := 0; against < n; i++ {
		if i == 64*n {
			t.Fatalf("%d sessions, %d of them against hashing: want %d", i, against, n)
		}
		resp, body := httpGet(t, c, "http://"+addr+"/fb/start", "")
		key := sessionCookie(resp)
		m := bodyField(body, "member")
		if key == "" || m == "" {
			t.Fatalf("no session issued: %q", body)
		}
		if g.Members[g.Rendezvous(router.HashKey([]byte(key)))].ID != m {
			out[key] = m
			against++
		}
	}
	return out
}

// TestSharedStoreTwoInstances: with one Redis behind two gateways, a route-less session
// learned through A is served by its member on its first request through B; a session
// moved by a failover on A is on its new member through B, both when B had read the
// old binding (Redis invalidates B's copies) and when it had not.
func TestSharedStoreTwoInstances(t *testing.T) {
	r := redistest.Start(t)
	members := []config.Member{
		gwMember("m1", startHTTPMember(t, learnMember("m1"))),
		gwMember("m2", startHTTPMember(t, learnMember("m2"))),
		gwMember("m3", startHTTPMember(t, learnMember("m3"))),
	}
	a, addrA := startGateway(t, sharedConfig(r, members...), zerolog.Nop())
	b, addrB := startGateway(t, sharedConfig(r, members...), zerolog.Nop())
	c := newHTTPClient(t)

	sessions := issueSessions(t, a, c, addrA, 12)
	a.shared.Wait()
	seen := map[string]bool{} // the sessions B reads now; the others it first sees after the move
	i := 0
	for key, m := range sessions {
		if i++; i%2 == 0 {
			continue
		}
		seen[key] = true
		if _, body := httpGet(t, c, "http://"+addrB+"/fb/page", key); bodyField(body, "member") != m {
			t.Fatalf("through B, JSESSIONID=%s (learned through A on %s) went to %q", key, m, bodyField(body, "member"))
		}
	}
	if st := b.shared.Stats(); st.Reads[sessioncache.ReadHit] < uint64(len(seen)) {
		t.Fatalf("B's shared reads %v: want at least %d hits", st.Reads, len(seen))
	}

	// A failover on A only: B still sees m1 up, so without the shared store B would
	// keep those sessions on m1.
	setDown(t, a, "m1")
	moved := map[string]string{}
	for key, m := range sessions {
		if m != "m1" {
			continue
		}
		_, body := httpGet(t, c, "http://"+addrA+"/fb/page", key)
		to := bodyField(body, "member")
		if to == "m1" || to == "" {
			t.Fatalf("through A with m1 down, JSESSIONID=%s went to %q", key, to)
		}
		moved[key] = to
	}
	if len(moved) == 0 {
		t.Fatal("no session of m1 among the issued ones")
	}
	a.shared.Wait()
	for key, to := range moved {
		if seen[key] {
			waitFor(t, "B to forget its binding of "+key+" (invalidation)", func() bool {
				_, ok := b.Cache().Lookup(router.HashKey([]byte(key)))
				return !ok
			})
		}
		for range 2 {
			if _, body := httpGet(t, c, "http://"+addrB+"/fb/page", key); bodyField(body, "member") != to {
				t.Fatalf("through B, JSESSIONID=%s (moved by A to %s, read by B before: %v) went to %q", key, to, seen[key], bodyField(body, "member"))
			}
		}
	}

	var m bytes.Buffer
	b.writeMetrics(&m)
	for _, want := range []string{"sessiongate_shared_store_up 1", `sessiongate_shared_store_reads_total{result="hit"}`, "sessiongate_shared_store_read_duration_seconds_count"} {
		if !strings.Contains(m.String(), want) {
			t.Errorf("B's /metrics lacks %q", want)
		}
	}
	st := b.groupsStatus().Shared
	if st == nil || !st.Up || st.Mode != "standalone" || st.Reads["hit"] == 0 {
		t.Fatalf("B's groupsStatus().Shared = %+v; want up, standalone, hits", st)
	}
	if js, _ := json.Marshal(a.groupsStatus()); !bytes.Contains(js, []byte(`"shared_store":{"up":true`)) {
		t.Fatalf("A's /api/groups lacks shared_store: %s", js)
	}
}

// TestSharedStoreOutageUnderLoad: Redis killed (then restarted), or stalled (SIGSTOP,
// then SIGCONT), under load: no request fails or loses its member, every request's
// time stays within the budget plus the member's (generously), the degradation is
// counted, and writes resume once Redis answers.
func TestSharedStoreOutageUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name     string
		down, up func(*redistest.Server)
	}{
		{"killed", (*redistest.Server).Stop, func(r *redistest.Server) { r.Restart() }},
		{"stalled", (*redistest.Server).Pause, (*redistest.Server).Resume},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := redistest.Start(t)
			cfg := sharedConfig(r,
				gwMember("m1", startHTTPMember(t, learnMember("m1"))),
				gwMember("m2", startHTTPMember(t, learnMember("m2"))))
			budget := scaled(20 * time.Millisecond)
			cfg.Session.Shared.Budget = budget
			s, addr := startGateway(t, cfg, zerolog.Nop())
			sessions := issueSessions(t, s, newHTTPClient(t), addr, 8)
			s.Cache().Wait()
			s.shared.Wait()

			var (
				stop             atomic.Bool
				requests, failed atomic.Uint64
				mu               sync.Mutex
				worst            time.Duration
				firstFailure     string
				wg               sync.WaitGroup
			)
			fail := func(msg string) {
				if failed.Add(1) == 1 {
					mu.Lock()
					firstFailure = msg
					mu.Unlock()
				}
			}
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := newHTTPClient(t)
					for n := 0; !stop.Load(); n++ {
						key, want := "", ""
						if n%2 == 0 { // a learned session: served by its member throughout
							for k, m := range sessions {
								key, want = k, m
								break
							}
						} else { // an unknown key: a local miss, read from Redis
							key = fmt.Sprintf("%032x", uint64(w)<<40|uint64(n))
						}
						start := time.Now()
						req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/fb/page", nil)
						req.Header.Set("Cookie", "JSESSIONID="+key)
						resp, err := c.Do(req)
						d := time.Since(start)
						requests.Add(1)
						if err != nil {
							fail(err.Error())
							continue
						}
						var body bytes.Buffer
						body.ReadFrom(resp.Body) //nolint:errcheck // checked through the body
						resp.Body.Close()
						got := bodyField(body.String(), "member")
						switch {
						case resp.StatusCode != http.StatusOK:
							fail("status " + strconv.Itoa(resp.StatusCode))
						case want != "" && got != want:
							fail(key + " issued by " + want + " went to " + got)
						}
						mu.Lock()
						worst = max(worst, d)
						mu.Unlock()
					}
				}()
			}
			waitFor(t, "load", func() bool { return requests.Load() > 200 })
			tc.down(r)
			waitFor(t, "the degradation", func() bool { return !s.shared.Up() })
			during := requests.Load()
			waitFor(t, "load while degraded", func() bool { return requests.Load() > during+200 })
			tc.up(r)
			waitUntilUp := time.Now().Add(scaled(20 * time.Second))
			for !s.shared.Up() {
				if time.Now().After(waitUntilUp) {
					t.Fatalf("the shared store did not come back: %+v", s.shared.Stats())
				}
				time.Sleep(10 * time.Millisecond)
			}
			after := requests.Load()
			waitFor(t, "load after recovery", func() bool { return requests.Load() > after+200 })
			stop.Store(true)
			wg.Wait()

			st := s.shared.Stats()
			t.Logf("%d requests, slowest %s (budget %s); shared store %+v", requests.Load(), worst, budget, st)
			if n := failed.Load(); n != 0 {
				t.Fatalf("%d of %d requests failed, first: %s", n, requests.Load(), firstFailure)
			}
			// Generous: budget plus a member's answer on a loaded machine, never an
			// outage's length.
			if limit := budget + scaled(2*time.Second); worst > limit {
				t.Fatalf("slowest request took %s, want at most %s", worst, limit)
			}
			if st.Degradations < 1 || st.Reads[sessioncache.ReadSkipped] == 0 {
				t.Fatalf("shared store %+v: want a degradation and skipped reads", st)
			}
			// Writes resume: a session learned now reaches Redis.
			okBefore := st.Writes[sessioncache.WriteOK]
			fresh := issueSessions(t, s, newHTTPClient(t), addr, 1)
			s.shared.Wait()
			if got := s.shared.Stats().Writes[sessioncache.WriteOK]; got <= okBefore {
				t.Fatalf("writes ok %d after recovery, want more than %d", got, okBefore)
			}
			for key := range fresh {
				k := string(binaryKey("sg:", router.HashKey([]byte(key))))
				if v, err := r.Do("GET", k); err != nil || v == "" {
					t.Fatalf("GET of the binding learned after recovery = %q, %v", v, err)
				}
			}
		})
	}
}

// binaryKey is the shared store's key of keyHash (sessioncache.Shared.appendKey).
func binaryKey(prefix string, keyHash uint64) []byte {
	b := []byte(prefix)
	for i := 7; i >= 0; i-- {
		b = append(b, byte(keyHash>>(8*i)))
	}
	return b
}

// TestSharedStoreCost measures what the shared store costs Redis per request, for the
// cost docs: run with SESSIONGATE_MEASURE=1 (10,000 sessions, two instances).
func TestSharedStoreCost(t *testing.T) {
	if os.Getenv("SESSIONGATE_MEASURE") == "" {
		t.Skip("a measurement: set SESSIONGATE_MEASURE=1")
	}
	const n = 10_000
	r := redistest.Start(t)
	members := []config.Member{
		gwMember("m1", startFastMember(t, idMember("m1"))),
		gwMember("m2", startFastMember(t, idMember("m2"))),
	}
	a, _ := startGateway(t, sharedConfig(r, members...), zerolog.Nop())
	b, addrB := startGateway(t, sharedConfig(r, members...), zerolog.Nop())
	m1 := tableMember(t, a, "m1")
	keys := make([]string, n)
	for i := range keys {
		keys[i] = newUUID()
		a.cache.Learn(router.HashKey([]byte(keys[i])), m1.State.Num())
		a.share(router.HashKey([]byte(keys[i])), m1)
		if i%1000 == 999 {
			a.shared.Wait() // the queue holds 8192 writes
		}
	}
	a.shared.Wait()
	memory := func(when string) {
		info, _ := r.Do("INFO", "memory")
		for _, line := range strings.Split(info, "\n") {
			if strings.HasPrefix(line, "used_memory:") {
				t.Logf("%s %s", strings.TrimSpace(line), when)
			}
		}
	}
	memory(fmt.Sprintf("after %d bindings written by A", n))
	calls := func() map[string]int {
		m, err := r.CommandCalls()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	delta := func(before, after map[string]int) string {
		var parts []string
		total := 0
		for k, v := range after {
			if d := v - before[k]; d > 0 && k != "info" {
				parts = append(parts, fmt.Sprintf("%s=%d", k, d))
				total += d
			}
		}
		return fmt.Sprintf("%d commands (%s)", total, strings.Join(parts, " "))
	}
	c := newHTTPClient(t)
	run := func(name string, rounds int, key func(i int) string) {
		before, ls, ss := calls(), b.cache.Stats(), b.shared.Stats()
		start := time.Now()
		for range rounds {
			for i := range n {
				resp, body := httpGet(t, c, "http://"+addrB+"/fb/x", key(i))
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: status %d %q", name, resp.StatusCode, body)
				}
			}
		}
		d := time.Since(start)
		b.cache.Wait()
		la, sa := b.cache.Stats(), b.shared.Stats()
		hits, misses := la.Hits-ls.Hits, la.Misses-ls.Misses
		t.Logf("%s: %d requests in %s through B: Redis %s; local hit ratio %.4f; shared reads %d hit %d miss, %d without a round trip",
			name, rounds*n, d.Round(time.Millisecond), delta(before, calls()), float64(hits)/float64(hits+misses),
			sa.Reads[sessioncache.ReadHit]-ss.Reads[sessioncache.ReadHit], sa.Reads[sessioncache.ReadMiss]-ss.Reads[sessioncache.ReadMiss],
			sa.CacheHits-ss.CacheHits)
	}
	run("route-less sessions learned on A, first round", 1, func(i int) string { return keys[i] })
	run("the same, three more rounds", 3, func(i int) string { return keys[i] })
	run("routed Tomcat sessions (key.m2), two rounds", 2, func(i int) string { return keys[i] + ".m2" })
	used, _ := r.Do("MEMORY", "USAGE", string(binaryKey("sg:", router.HashKey([]byte(keys[0])))))
	memory("after B read them and as many routed keys (tracking table included)")
	stats, _ := r.Do("INFO", "stats")
	for _, line := range strings.Split(stats, "\n") {
		if strings.HasPrefix(line, "tracking_") {
			t.Logf("%s", strings.TrimSpace(line))
		}
	}
	t.Logf("MEMORY USAGE of one binding (id %q): %s bytes", m1.ID, used)
}

// TestSharedStoreRoutedSessions: a session routed by its WebSphere clone id asks Redis
// once per instance (the absence of a binding is then known locally), not on every
// request; when another instance moves it, Redis invalidates that absence and the next
// request follows the move.
func TestSharedStoreRoutedSessions(t *testing.T) {
	r := redistest.Start(t)
	members := []config.Member{
		routed(gwMember("m1", startFastMember(t, idMember("m1"))), "Node1"),
		routed(gwMember("m2", startFastMember(t, idMember("m2"))), "Node2"),
		routed(gwMember("m3", startFastMember(t, idMember("m3"))), "Node3"),
	}
	a, addrA := startGateway(t, sharedConfig(r, members...), zerolog.Nop())
	b, addrB := startGateway(t, sharedConfig(r, members...), zerolog.Nop())
	c := newHTTPClient(t)
	const key = "0000ABCDEFGHIJKLMNOPQRSTUVW:Node1"
	before := b.shared.Stats().Reads
	for range 50 {
		if _, body := httpGet(t, c, "http://"+addrB+"/fb/page", key); bodyField(body, "member") != "m1" {
			t.Fatalf("routed %s through B: %q", key, body)
		}
	}
	after := b.shared.Stats().Reads
	reads := after[sessioncache.ReadMiss] + after[sessioncache.ReadHit] - before[sessioncache.ReadMiss] - before[sessioncache.ReadHit]
	if reads != 1 {
		t.Fatalf("50 requests of a routed session through B read the shared store %d times, want 1", reads)
	}

	setDown(t, a, "m1") // on A only
	_, body := httpGet(t, c, "http://"+addrA+"/fb/page", key)
	to := bodyField(body, "member")
	if to == "m1" {
		t.Fatalf("through A with m1 down: %q", body)
	}
	waitFor(t, "B to drop the known absence (invalidation)", func() bool {
		_, _, ok, _ := b.Cache().LookupRefreshAt(router.HashKey([]byte(key)))
		return !ok
	})
	for range 3 {
		if _, body := httpGet(t, c, "http://"+addrB+"/fb/page", key); bodyField(body, "member") != to {
			t.Fatalf("through B after A moved %s to %s: %q", key, to, body)
		}
	}
}
