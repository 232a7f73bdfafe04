package gateway

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// TestHelperMemberProcess is not a test of its own: TestFrozenMemberInFlight runs the
// test binary again with SG_HELPER_MEMBER set, to have a member in a process of its own
// that SIGSTOP can freeze whole.
func TestHelperMemberProcess(t *testing.T) {
	if os.Getenv("SG_HELPER_MEMBER") == "" {
		t.Skip("runs only as TestFrozenMemberInFlight's member process")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("LISTEN " + ln.Addr().String() + "\n")
	fasthttp.Serve(ln, func(ctx *fasthttp.RequestCtx) { //nolint:errcheck // until killed
		if string(ctx.Path()) != "/health" {
			time.Sleep(300 * time.Millisecond) // long enough to be in flight when frozen
		}
		ctx.SetBodyString("member=a\n")
	})
}

// A member frozen with SIGSTOP while requests are in flight on it: once its health
// checks mark it down, the gateway closes its connections and the in-flight GETs are
// answered by the successor, within the detection time plus a retry, not after
// client.read_timeout (HAProxy's on-marked-down shutdown-sessions).
func TestFrozenMemberInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a member process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMemberProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "SG_HELPER_MEMBER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
	})
	var addrA string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
			addrA = a
			break
		}
	}
	if addrA == "" {
		t.Fatal("the member process did not say where it listens")
	}
	go func() { // drain the rest of its output
		for sc.Scan() {
		}
	}()

	g := gwGroup("g", "/", gwMember("a", addrA), gwMember("b", startFastMember(t, idMember("b"))))
	g.HealthCheck.Path = "/health"
	g.HealthCheck.Interval = 100 * time.Millisecond
	g.HealthCheck.UnhealthyInterval = 100 * time.Millisecond
	g.HealthCheck.Timeout = 80 * time.Millisecond
	g.HealthCheck.HealthyThreshold = 1
	g.HealthCheck.UnhealthyThreshold = 1
	cfg := gwConfig(g)
	cfg.Client.ReadTimeout = 30 * time.Second
	s, addr := startGateway(t, cfg, zerolog.Nop())
	waitFor(t, "member a up", func() bool { return tableMember(t, s, "a").State.Healthy() })

	const inflight = 8
	type answer struct {
		status int
		member string
		took   time.Duration
	}
	answers := make(chan answer, inflight)
	var wg sync.WaitGroup
	c := newHTTPClient(t)
	start := time.Now()
	for range inflight {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/x", nil)
			req.Header.Set("Cookie", "JSESSIONID="+webSphereKey("a"))
			resp, err := c.Do(req)
			if err != nil {
				answers <- answer{status: -1, took: time.Since(start)}
				return
			}
			defer resp.Body.Close()
			body := make([]byte, 64)
			n, _ := resp.Body.Read(body)
			answers <- answer{resp.StatusCode, bodyField(string(body[:n]), "member"), time.Since(start)}
		})
	}
	waitFor(t, "the requests to be in flight on a", func() bool { return tableMember(t, s, "a").State.Inflight.Load() == inflight })
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(answers)
	bound := scaled(5 * time.Second) // detection is ~0.2 s; read_timeout is 30 s
	for a := range answers {
		if a.status != http.StatusOK || a.member != "b" || a.took > bound {
			t.Errorf("in-flight GET: status %d from %q after %v; want 200 from b well before read_timeout (30s)", a.status, a.member, a.took.Round(time.Millisecond))
		}
	}
	if tableMember(t, s, "a").State.Healthy() {
		t.Error("member a is still healthy after SIGSTOP")
	}
}

// After the gateway closed a member's connections (marked down), the member's pooled
// connections are not handed out again: once it is back, its requests get 200, not one
// 502 per dead connection.
func TestMemberBackAfterShutdownSessions(t *testing.T) {
	g := gwGroup("g", "/", gwMember("a", startFastMember(t, idMember("a"))), gwMember("b", startFastMember(t, idMember("b"))))
	s, addr := startGateway(t, gwConfig(g), zerolog.Nop())
	c := newHTTPClient(t)
	get := func() (int, string) {
		resp, body := httpGet(t, c, "http://"+addr+"/x", "0000abc:a")
		return resp.StatusCode, bodyField(body, "member")
	}
	var wg sync.WaitGroup
	for range 4 { // four pooled connections to a
		wg.Go(func() { get() })
	}
	wg.Wait()
	st := tableMember(t, s, "a").State
	s.shutdownSessions(st)
	for i := range 5 {
		if code, m := get(); code != http.StatusOK || m != "a" {
			t.Fatalf("request %d after shutdownSessions: %d from %q, want 200 from a", i, code, m)
		}
	}
	if st.Failures.Load() != 0 || st.Ejected() {
		t.Errorf("a: %d failures, ejected %v; want none", st.Failures.Load(), st.Ejected())
	}
}
