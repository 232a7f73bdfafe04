package gateway

import (
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// A member configured with route Node1 whose Tomcat writes jvmRoute node1: the
// sessions seem sticky (learned), but a restart would move every one. The gateway
// says so once per member, counts it, and shows it on the status page.
func TestRouteMismatchAlarm(t *testing.T) {
	var buf syncBuffer
	g := gwGroup("tc", "/", gwMember("tc1", startHTTPMember(t, tomcatMember("tc1", "node1"))), gwMember("tc2", startHTTPMember(t, tomcatMember("tc2", "node2"))))
	g.Members[0].Route, g.Members[1].Route = "Node1", "Node2"
	cfg := gwConfig(g)
	cfg.Admin.Listen = "127.0.0.1:0"
	s, addr := startGateway(t, cfg, zerolog.New(&buf))
	s.mu.Lock()
	admin := "http://" + s.listeners[len(s.listeners)-1].Addr().String()
	s.mu.Unlock()
	c := newHTTPClient(t)
	// Keyless requests are balanced round robin: each member issues one session.
	for range 2 {
		if resp, _ := httpGet(t, c, "http://"+addr+"/app", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	// More sessions from the same members: still one warning each.
	for range 4 {
		httpGet(t, c, "http://"+addr+"/app", "")
	}
	for _, id := range []string{"tc1", "tc2"} {
		st := tableMember(t, s, id).State
		if n := st.RouteMismatches.Load(); n != 3 {
			t.Errorf("%s: %d route mismatches, want 3 (one per session it issued)", id, n)
		}
		want := "node" + strings.TrimPrefix(id, "tc")
		if got := st.RouteSeen(); got != want {
			t.Errorf("%s: route seen %q, want %q", id, got, want)
		}
	}
	if n := strings.Count(buf.String(), "is not its configured route"); n != 2 {
		t.Errorf("%d mismatch warnings, want one per member (2):\n%s", n, buf.String())
	}
	code, metrics := adminDo(t, "GET", admin+"/metrics", "", "")
	if code != 200 || !strings.Contains(metrics, `sessiongate_member_route_mismatches_total{group="tc",member="tc1"} 3`) {
		t.Errorf("/metrics lacks the mismatch counter of tc1:\n%s", metrics)
	}
	if _, page := adminDo(t, "GET", admin+"/status", "", ""); !strings.Contains(page, "issues node1") {
		t.Errorf("the status page (server-rendered) has no mismatch badge for tc1")
	}
	bin := chromiumPath()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; CI installs it (.ci/run)")
		}
		t.Skip("chromium is not installed; skipping the browser check")
	}
	dom := string(runChromium(t, bin, "--virtual-time-budget=3000", "--dump-dom", admin+"/status"))
	if !strings.Contains(dom, `data-rendered="js"`) {
		t.Fatalf("the status page script did not run:\n%s", dom)
	}
	for _, want := range []string{"issues node1", "issues node2"} {
		if !strings.Contains(dom, want) || !strings.Contains(dom, "route-mismatch") {
			t.Errorf("the status page DOM has no %q badge", want)
		}
	}
}

// Ids that carry this member's route among others, or whose tail is no route id at
// all, raise no alarm.
func TestRouteMismatchNoFalseAlarm(t *testing.T) {
	ids := []string{"0000abcdefghijklmnopqrstuvw:gone:cb", "q9Zk+Yx2/abcdef==", "0000abcdefghijklmnopqrstuvw:ca"}
	var n atomic.Int64
	member := startFastMember(t, func(ctx *fasthttp.RequestCtx) {
		if len(ctx.Request.Header.Cookie("JSESSIONID")) == 0 {
			ctx.Response.Header.Set("Set-Cookie", "JSESSIONID="+ids[int(n.Add(1)-1)%len(ids)]+"; Path=/")
		}
		ctx.SetBodyString("member=cb\n")
	})
	g := gwGroup("g", "/", gwMember("ca", startFastMember(t, idMember("ca"))), gwMember("cb", member))
	s, addr := startGateway(t, gwConfig(g), zerolog.Nop())
	c := newHTTPClient(t)
	for range 8 {
		httpGet(t, c, "http://"+addr+"/x", "0000zzzzzzzzzzzzzzzzzzzzzzz:cb") // bound to cb, which issues a new id each time
	}
	if got := tableMember(t, s, "cb").State.RouteMismatches.Load(); got != 0 {
		t.Errorf("cb: %d route mismatches for ids with its own route, another member's, or no route id; want 0", got)
	}
}
