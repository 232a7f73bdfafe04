package gateway

import (
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// A keep-alive client that waits for each answer gets every one (the held answer goes
// out from inside the wait for the next request), and a client that pipelines, its
// next request arriving while the gateway is still busy with the one before, is
// answered too: within nudgeWait, not after idle_timeout.
func TestHeldAnswer(t *testing.T) {
	slow := func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/fb/slow" {
			time.Sleep(100 * time.Millisecond)
		}
		ctx.SetBodyString("path=" + string(ctx.Path()) + "\n")
	}
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("Node1", startFastMember(t, slow))))
	_, addr := startGateway(t, cfg, zerolog.Nop())

	t.Run("keep-alive", func(t *testing.T) {
		c := dialRaw(t, addr)
		for i := range 50 {
			path := "/fb/" + strconv.Itoa(i)
			resp, body := c.roundTrip("GET " + path + " HTTP/1.1\r\nHost: app\r\n\r\n")
			if resp.StatusCode != 200 || body != "path="+path+"\n" {
				t.Fatalf("request %d: %d %q, want 200 path=%s", i, resp.StatusCode, body, path)
			}
		}
	})

	t.Run("pipelined in two writes", func(t *testing.T) {
		c := dialRaw(t, addr)
		// Warm the connection with answers that are held.
		for i := range 3 {
			if resp, _ := c.roundTrip("GET /fb/w" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 {
				t.Fatalf("warm-up %d: %d", i, resp.StatusCode)
			}
		}
		start := time.Now()
		c.conn.SetDeadline(time.Now().Add(scaled(30 * time.Second)))
		if _, err := io.WriteString(c.conn, "GET /fb/slow HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond) // the gateway has read the first, and waits on the member
		if _, err := io.WriteString(c.conn, "GET /fb/next HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/fb/slow", "/fb/next"} {
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("pipelined %s: %v", path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "path="+path+"\n" {
				t.Fatalf("pipelined %s: %d %q", path, resp.StatusCode, body)
			}
		}
		if took, bound := time.Since(start), scaled(nudgeWait+2*time.Second); took > bound {
			t.Fatalf("pipelined requests answered after %v, want within %v (nudge_wait and slack)", took, bound)
		}
		// The connection no longer holds answers: a second pipelined pair is answered
		// without waiting for the nudge.
		start = time.Now()
		io.WriteString(c.conn, "GET /fb/slow HTTP/1.1\r\nHost: app\r\n\r\n") //nolint:errcheck // read below
		time.Sleep(30 * time.Millisecond)
		io.WriteString(c.conn, "GET /fb/again HTTP/1.1\r\nHost: app\r\n\r\n") //nolint:errcheck // read below
		for range 2 {
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body) //nolint:errcheck // the status is what counts
			resp.Body.Close()
		}
		if took := time.Since(start); !raceEnabled && took > nudgeWait {
			t.Errorf("second pipelined pair answered after %v: the connection still holds answers", took)
		}
	})
}
