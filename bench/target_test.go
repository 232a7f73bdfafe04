package bench

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/demo"
	"github.com/valyala/fasthttp"
)

// The target mode against a real gateway in front of real members: sessions learned
// from the members' Set-Cookie stay on their member, with no error.
func TestRunTargetGateway(t *testing.T) {
	var members []*demo.Member
	var addrs []string
	for _, id := range []string{"n1", "n2"} {
		m, err := demo.Start(demo.Options{ID: id, IDs: demo.Plain})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		members = append(members, m)
		addrs = append(addrs, m.Addr())
	}
	gw, err := startGateway(Options{Mode: ModeInProcess}, "", members, addrs, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.stop)
	ph, err := RunTarget(context.Background(), TargetOptions{
		URL: "http://" + gw.addr + "/app", Sessions: 40, Conns: 4, Duration: 500 * time.Millisecond,
		Warmup: 300 * time.Millisecond, MemberHeader: demo.HeaderMember,
	})
	if err != nil {
		t.Fatal(err)
	}
	if ph.Requests == 0 || ph.ErrorCount != 0 || ph.StickyViolations != 0 {
		t.Errorf("target run: %d requests, %d errors %v, %d sticky violations; want requests, no error, no violation", ph.Requests, ph.ErrorCount, ph.Errors, ph.StickyViolations)
	}
}

// The stickiness check can fail: a "deployment" that answers from alternating members
// whatever the cookie has violations.
func TestRunTargetCountsViolations(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		i := n.Add(1)
		if len(ctx.Request.Header.Cookie("JSESSIONID")) == 0 {
			ctx.Response.Header.Set("Set-Cookie", "JSESSIONID=s"+strconv.FormatInt(i, 10)+"; Path=/")
		}
		ctx.Response.Header.Set("X-Member", "m"+strconv.FormatInt(i%2, 10))
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { srv.Shutdown() })
	ph, err := RunTarget(context.Background(), TargetOptions{
		URL: "http://" + ln.Addr().String() + "/", Sessions: 10, Conns: 2, Duration: 300 * time.Millisecond,
		Warmup: 100 * time.Millisecond, MemberHeader: "X-Member",
	})
	if err != nil {
		t.Fatal(err)
	}
	if ph.StickyViolations == 0 {
		t.Errorf("alternating members: 0 sticky violations over %d requests, want many", ph.Requests)
	}
}
