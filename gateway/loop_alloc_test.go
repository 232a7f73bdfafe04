//go:build linux && !race

package gateway

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// TestAllocsEpollRequest guards the epoll data path end to end: a keep-alive request
// with a routed session, through a loop to a real member and back, allocates nothing
// in the gateway (the member and the client allocate nothing either; AllocsPerRun
// counts the whole process).
func TestAllocsEpollRequest(t *testing.T) {
	member := startFastMember(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	cfg := epollConfig(gwGroup("fb", "/fb", gwMember("n1", member), gwMember("n2", startFastMember(t, idMember("n2")))))
	_, addr := startGateway(t, cfg, zerolog.Nop())
	c := dialRaw(t, addr)
	c.conn.SetDeadline(time.Now().Add(scaled(20 * time.Second)))
	req := []byte("GET /fb/page?x=1 HTTP/1.1\r\nHost: app\r\nCookie: JSESSIONID=0000ABCDEF:n1\r\nUser-Agent: t\r\n\r\n")
	// The first answer tells its length; every later one is the same.
	if _, err := c.conn.Write(req); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.conn.Read(buf)
	if err != nil || !bytes.HasSuffix(buf[:n], []byte("\r\n\r\nok")) || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("first answer %q: %v", buf[:n], err)
	}
	size := n
	var fail error
	round := func() {
		if _, err := c.conn.Write(req); err != nil {
			fail = err
			return
		}
		if _, err := io.ReadFull(c.conn, buf[:size]); err != nil {
			fail = err
		}
	}
	for range 50 {
		round()
	}
	allocs := testing.AllocsPerRun(500, round)
	if fail != nil {
		t.Fatal(fail)
	}
	// Budget 0.05: a timer or a pool refill of the runtime's now and then, never one a
	// request.
	if allocs > 0.05 {
		t.Errorf("epoll request: %.2f allocs per request, want 0", allocs)
	}
}
