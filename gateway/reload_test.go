package gateway

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
)

// TestReloadUnderLoad reloads valid and invalid configurations while clients with
// sessions keep sending requests: no request fails, learned sessions and connection
// pools survive, and an invalid configuration changes nothing and names its field.
func TestReloadUnderLoad(t *testing.T) {
	n1 := startFastMember(t, idMember("n1"))
	n2 := startFastMember(t, idMember("n2"))
	n3 := startFastMember(t, idMember("n3"))
	base := gwConfig(gwGroup("g", "/", gwMember("n1", n1), gwMember("n2", n2)))
	s, addr := startGateway(t, base, zerolog.Nop())

	// A learned session, bound to n2 whatever hashing says.
	const learnedKey = "opaque-session-0001"
	n2num := tableMember(t, s, "n2").State.Num()
	waitFor(t, "learned binding", func() bool {
		s.Cache().Learn(router.HashKey([]byte(learnedKey)), n2num)
		s.Cache().Wait()
		_, ok := s.Cache().Lookup(router.HashKey([]byte(learnedKey)))
		return ok
	})
	pool := s.snap.Load().clients[tableMember(t, s, "n1").Index]

	var stop atomic.Bool
	var requests, failures atomic.Int64
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := newHTTPClient(t)
			key := "0000abcdefghijklmnopqrstuvw:n1"
			if c%2 == 1 {
				key = learnedKey
			}
			for !stop.Load() {
				resp, body := httpGet(t, client, "http://"+addr+"/x", key)
				requests.Add(1)
				want := "member=n1\n"
				if c%2 == 1 {
					want = "member=n2\n"
				}
				if resp.StatusCode != http.StatusOK || body != want {
					failures.Add(1)
					t.Errorf("request with %s during reloads: %d %q, want 200 %q", key, resp.StatusCode, body, want)
				}
			}
		}()
	}

	valid := []*config.Config{
		gwConfig(gwGroup("g", "/", gwMember("n1", n1), gwMember("n2", n2), gwMember("n3", n3))),
		gwConfig(gwGroup("g", "/", gwMember("n1", n1), gwMember("n2", n2))),
	}
	valid[0].TargetGroups[0].Members[2].Weight = 5
	bad := gwConfig(gwGroup("g", "/", gwMember("n1", n1), gwMember("n2", "10.0.0.1:99999")))
	for i := range 20 {
		if i%2 == 1 {
			err := s.Reload(bad)
			if err == nil || !strings.Contains(err.Error(), `target_groups[0].members[1].address: "10.0.0.1:99999"`) {
				t.Fatalf("Reload(bad) = %v, want an error naming target_groups[0].members[1].address", err)
			}
			continue
		}
		if err := s.Reload(valid[(i/2)%2]); err != nil {
			t.Fatalf("Reload(valid %d): %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // pacing the reloads under load, not waiting for state
	}
	stop.Store(true)
	wg.Wait()
	if requests.Load() == 0 || failures.Load() != 0 {
		t.Fatalf("requests %d, failures %d during reloads; want some and none", requests.Load(), failures.Load())
	}
	if got := s.snap.Load().clients[tableMember(t, s, "n1").Index]; got != pool {
		t.Fatal("the connection pool of an unchanged member was replaced by a reload")
	}
	if num, ok := s.Cache().Lookup(router.HashKey([]byte(learnedKey))); !ok || num != n2num {
		t.Fatal("the learned session did not survive the reloads")
	}
	if ok, failed := s.reloads.ok.Load(), s.reloads.failed.Load(); ok != 10 || failed != 10 {
		t.Fatalf("reloads ok %d, failed %d; want 10 and 10", ok, failed)
	}
	t.Logf("%d requests, 0 failed, during 10 valid and 10 invalid reloads", requests.Load())
}

func TestReloadKeepsRuntimeState(t *testing.T) {
	n1 := startFastMember(t, idMember("n1"))
	n2 := startFastMember(t, idMember("n2"))
	cfg := gwConfig(gwGroup("g", "/", gwMember("n1", n1), gwMember("n2", n2)))
	s, _ := startGateway(t, cfg, zerolog.Nop())
	tableMember(t, s, "n1").State.SetAdmin(router.AdminDrain) // through the API, in real life
	tableMember(t, s, "n2").State.SetHealthy(false)
	next := gwConfig(gwGroup("g", "/", gwMember("n1", n1), gwMember("n2", n2)))
	next.TargetGroups[0].Members[1].Weight = 3
	if err := s.Reload(next); err != nil {
		t.Fatal(err)
	}
	if a := tableMember(t, s, "n1").State.Admin(); a != router.AdminDrain {
		t.Fatalf("n1 state after reload = %s, want drain (set at run time, unchanged in the file)", a)
	}
	if tableMember(t, s, "n2").State.Healthy() {
		t.Fatal("n2 health was reset by the reload")
	}
	// A state changed in the file applies.
	next2 := gwConfig(gwGroup("g", "/", gwMember("n1", n1), gwMember("n2", n2)))
	next2.TargetGroups[0].Members[0].State = "maint"
	if err := s.Reload(next2); err != nil {
		t.Fatal(err)
	}
	if a := tableMember(t, s, "n1").State.Admin(); a != router.AdminMaint {
		t.Fatalf("n1 state after the file set maint = %s", a)
	}
}

func TestReloadFileAndAPI(t *testing.T) {
	n1 := startFastMember(t, idMember("n1"))
	n2 := startFastMember(t, idMember("n2"))
	dir := t.TempDir()
	path := filepath.Join(dir, "sessiongate.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	yaml := "listen: 127.0.0.1:0\nadmin: {listen: \"127.0.0.1:0\", token: t0k}\ntarget_groups:\n  - name: g\n    members:\n      - {id: n1, address: \"" + n1 + "\"}\n"
	write(yaml)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, addr := startGateway(t, cfg, zerolog.Nop())
	s.SetLoader(func() (*config.Config, error) { return config.Load(path) })
	s.mu.Lock()
	admin := "http://" + s.listeners[len(s.listeners)-1].Addr().String()
	s.mu.Unlock()

	write(yaml + "      - {id: n2, address: \"" + n2 + "\", wieght: 2}\n")
	code, body := adminDo(t, "POST", admin+"/api/reload", "t0k", "")
	if code != 422 || !strings.Contains(body, "line 7") || !strings.Contains(body, "wieght") {
		t.Fatalf("POST /api/reload of a bad file = %d %s, want 422 naming line 7 and wieght", code, body)
	}
	if len(s.Table().Members) != 1 {
		t.Fatal("a rejected reload changed the table")
	}
	write(yaml + "      - {id: n2, address: \"" + n2 + "\", weight: 2}\n")
	if code, body := adminDo(t, "POST", admin+"/api/reload", "", ""); code != 401 {
		t.Fatalf("POST /api/reload without token = %d %s, want 401", code, body)
	}
	if code, body := adminDo(t, "POST", admin+"/api/reload", "t0k", ""); code != 200 {
		t.Fatalf("POST /api/reload = %d %s, want 200", code, body)
	}
	if len(s.Table().Members) != 2 {
		t.Fatal("the reload did not add n2")
	}
	c := newHTTPClient(t)
	seen := map[string]bool{}
	for range 6 {
		_, body := httpGet(t, c, "http://"+addr+"/", "")
		seen[body] = true
	}
	if !seen["member=n2\n"] {
		t.Fatalf("no keyless request reached the new member n2: %v", seen)
	}
}

func TestAdminLogLevel(t *testing.T) {
	s, _, admin := startAdminGateway(t, "s3cret", zerolog.Nop())
	if code, body := adminDo(t, "PUT", admin+"/api/log-level", "", `{"level":"debug"}`); code != 401 {
		t.Fatalf("PUT /api/log-level without token = %d %s, want 401", code, body)
	}
	if code, body := adminDo(t, "PUT", admin+"/api/log-level", "s3cret", `{"level":"loud"}`); code != 400 {
		t.Fatalf("PUT /api/log-level loud = %d %s, want 400", code, body)
	}
	if code, body := adminDo(t, "PUT", admin+"/api/log-level", "s3cret", `{"level":"warn"}`); code != 200 || !strings.Contains(body, `"warn"`) {
		t.Fatalf("PUT /api/log-level warn = %d %s", code, body)
	}
	if code, body := adminDo(t, "GET", admin+"/api/log-level", "", ""); code != 200 || !strings.Contains(body, `"warn"`) {
		t.Fatalf("GET /api/log-level = %d %s, want warn", code, body)
	}
	if l := s.LogLevel(); l != zerolog.WarnLevel {
		t.Fatalf("level = %s, want warn", l)
	}
}

func TestAdminPprofNeedsToken(t *testing.T) {
	_, _, admin := startAdminGateway(t, "s3cret", zerolog.Nop())
	if code, _ := adminDo(t, "GET", admin+"/debug/pprof/", "", ""); code != 401 {
		t.Fatalf("GET /debug/pprof/ without token = %d, want 401", code)
	}
	if code, body := adminDo(t, "GET", admin+"/debug/pprof/goroutine?debug=1", "s3cret", ""); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("GET /debug/pprof/goroutine = %d, want 200 with a goroutine dump", code)
	}
}

// TestRunGracefulShutdown stops Run while slow requests are in flight: they complete,
// new connections are refused, and Run returns nil.
func TestRunGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int64
	slow := startHTTPMember(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		<-release
		w.Write([]byte("done\n"))
	}))
	cfg := gwConfig(gwGroup("g", "/", gwMember("slow", slow)))
	cfg.ShutdownTimeout = scaled(10 * time.Second)
	stop := make(chan struct{})
	ready := make(chan string, 1)
	runErr := make(chan error, 1)
	go func() {
		runErr <- Run(cfg, RunOptions{Log: zerolog.Nop(), Stop: stop, Ready: func(a, _ string) { ready <- a }})
	}()
	addr := <-ready
	const inflight = 4
	results := make(chan string, inflight)
	c := newHTTPClient(t)
	for range inflight {
		go func() {
			resp, body := httpGet(t, c, "http://"+addr+"/", "")
			results <- resp.Status + " " + body
		}()
	}
	waitFor(t, "requests in flight at the member", func() bool { return arrived.Load() == inflight })
	close(stop)
	waitFor(t, "listener closed", func() bool {
		conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	})
	close(release)
	for range inflight {
		if r := <-results; r != "200 OK done\n" {
			t.Fatalf("in-flight request during shutdown got %q, want 200 done", r)
		}
	}
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run = %v, want nil after a graceful shutdown", err)
		}
	case <-time.After(scaled(10 * time.Second)):
		t.Fatal("Run did not return after the in-flight requests finished")
	}
}

// Two Servers in one process keep their own log level (and their own member clock,
// stopped by Shutdown): nothing of one is process-wide.
func TestTwoServersKeepTheirOwnLogLevel(t *testing.T) {
	member := startFastMember(t, idMember("n1"))
	var buf1, buf2 syncBuffer
	s1, addr1 := startGateway(t, gwConfig(gwGroup("g", "/", gwMember("n1", member))), zerolog.New(&buf1))
	s2, addr2 := startGateway(t, gwConfig(gwGroup("g", "/", gwMember("n1", member))), zerolog.New(&buf2))
	s1.SetLogLevel(zerolog.ErrorLevel)
	if s2.LogLevel() != zerolog.InfoLevel {
		t.Fatalf("second server's level = %s after the first's changed, want info", s2.LogLevel())
	}
	c := newHTTPClient(t)
	httpGet(t, c, "http://"+addr1+"/x", "")
	httpGet(t, c, "http://"+addr2+"/x", "")
	if strings.Contains(buf1.String(), `"log":"access"`) {
		t.Errorf("server at level error wrote an access line: %s", buf1.String())
	}
	if !strings.Contains(buf2.String(), `"log":"access"`) {
		t.Errorf("server at level info wrote no access line: %q", buf2.String())
	}
	if s1.clock == s2.clock {
		t.Error("the two servers share a member clock")
	}
}
