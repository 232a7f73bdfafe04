//go:build !race

package gateway

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/valyala/fasthttp"
)

// TestAllocsPrepareRequest guards the gateway's own glue around fasthttp's client:
// hop-by-hop removal, X-Forwarded-*, and keeping the target byte-exact.
func TestAllocsPrepareRequest(t *testing.T) {
	const raw = "GET /fb/account;jsessionid=0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2?x=1 HTTP/1.1\r\n" +
		"Host: app.example.com\r\n" +
		"Connection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\n" +
		"X-Forwarded-For: 10.0.0.1\r\n" +
		"Cookie: theme=dark; lang=en; JSESSIONID=0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2:Node3; _ga=GA1.2.3; csrf=abc\r\n\r\n"
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}, nil)
	var saved fasthttp.Request
	ctx.Request.CopyTo(&saved)
	f := func() {
		saved.CopyTo(&ctx.Request)
		prepareRequest(&ctx, &ctx.Request)
	}
	f()
	if n := testing.AllocsPerRun(1000, f); n != 0 {
		t.Fatalf("prepareRequest: %v allocs/op, want 0", n)
	}
}

// TestAllocsIssuedKey guards reading the session a member issued from its response.
func TestAllocsIssuedKey(t *testing.T) {
	cfg := config.Default()
	cfg.Admin.Listen = ""
	cfg.TargetGroups = []config.Group{config.NewGroup("g", "/", config.NewMember("Node1", "127.0.0.1:1"))}
	s, err := New(&cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(0)
	snap := s.snap.Load()
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\n" +
		"Set-Cookie: other=1; Path=/\r\n" +
		"Set-Cookie: JSESSIONID=6F1A2B3C4D5E6F708192A3B4C5D6E7F8; Path=/; HttpOnly\r\n" +
		"Content-Length: 0\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	var key []byte
	f := func() { key = issuedKey(snap, &resp) }
	f()
	if string(key) != "6F1A2B3C4D5E6F708192A3B4C5D6E7F8" {
		t.Fatalf("issuedKey = %q", key)
	}
	if n := testing.AllocsPerRun(1000, f); n != 0 {
		t.Fatalf("issuedKey: %v allocs/op, want 0", n)
	}
}
