package gateway

import (
	"bufio"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/valyala/fasthttp"
)

// combinedRequest is a realistic request for combined lines: a Tomcat session id in
// the path, a query, a Referer and a User-Agent with a quote in it.
const combinedRequest = "GET /app/cart;jsessionid=6F1A2B3C4D5E6F708192A3B4C5D6E7F8.n1?item=4 HTTP/1.1\r\n" +
	"Host: app.example.com\r\n" +
	"Referer: https://app.example.com/app/list?page=2\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) \"quoted\"\r\n\r\n"

// combinedLine matches the line of combinedRequest; %s is the status and bytes.
const combinedLine = `^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] ` +
	`"GET /app/cart HTTP/1\.1" %s "https://app\.example\.com/app/list\?page=2" ` +
	`"Mozilla/5\.0 \(X11; Linux x86_64\) \\x22quoted\\x22"$`

// With log.access_format combined, a proxied request and a failure each get one combined
// line, unwrapped, on the output NewLogger was given: the status, the path without its
// session id and query, the body bytes sent, Referer and User-Agent. The failure is
// logged although log.access is off.
func TestAccessFormatCombined(t *testing.T) {
	const body = "hello world" // 11 bytes
	ok := startFastMember(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(body) })
	for _, tc := range []struct {
		name   string
		addr   string
		access bool
		want   string // status and bytes
	}{
		{"proxied", ok, true, `200 11`},
		{"failure with access off", closedAddr(t), false, `502 \d+`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gwConfig(gwGroup("g", "/", gwMember("n1", tc.addr)))
			cfg.Log.AccessFormat = "combined"
			cfg.Log.Access = tc.access
			var buf syncBuffer
			log, err := NewLogger(cfg.Log, &buf)
			if err != nil {
				t.Fatal(err)
			}
			_, addr := startGateway(t, cfg, log)
			rawRoundTrip(t, addr, combinedRequest)
			re := regexp.MustCompile(strings.Replace(combinedLine, "%s", tc.want, 1))
			var access []string
			waitFor(t, "a combined access line", func() bool {
				access = access[:0]
				for _, l := range strings.Split(buf.String(), "\n") {
					if l != "" && !strings.HasPrefix(l, "{") {
						access = append(access, l)
					}
				}
				return len(access) > 0
			})
			if len(access) != 1 || !re.MatchString(access[0]) {
				t.Fatalf("access lines %q, want one matching %s\nlog:\n%s", access, re, buf.String())
			}
		})
	}
}

// A Server whose logger NewLogger did not build has no raw output: combined falls back
// to JSON lines rather than writing nothing.
func TestAccessFormatCombinedWithoutRawOutput(t *testing.T) {
	member := startFastMember(t, idMember("n1"))
	cfg := gwConfig(gwGroup("g", "/", gwMember("n1", member)))
	cfg.Log.AccessFormat = "combined"
	var buf syncBuffer
	_, addr := startGateway(t, cfg, zerolog.New(&buf))
	rawRoundTrip(t, addr, combinedRequest)
	waitFor(t, "a JSON access line", func() bool { return strings.Contains(buf.String(), `"log":"access"`) })
}

func TestNewLoggerAccessFormat(t *testing.T) {
	for _, f := range []string{"", "json", "combined"} {
		if _, err := NewLogger(config.Log{Level: "info", AccessFormat: f}, io.Discard); err != nil {
			t.Errorf("NewLogger(access_format %q) = %v, want nil", f, err)
		}
	}
	_, err := NewLogger(config.Log{Level: "info", AccessFormat: "common"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `log.access_format: "common"`) {
		t.Errorf("NewLogger(access_format common) = %v, want an error naming log.access_format and the value", err)
	}
}

func TestAppendLogEscaped(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "Mozilla/5.0 (X11)", "Mozilla/5.0 (X11)"},
		{"quote", `a"b`, `a\x22b`},
		{"backslash", `a\b`, `a\x5Cb`},
		{"control", "a\tb\r\n\x00", `a\x09b\x0D\x0A\x00`},
		{"past tilde", "caf\xc3\xa9\x7f", `caf\xC3\xA9\x7F`},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(appendLogEscaped(nil, []byte(tc.in))); got != tc.want {
				t.Errorf("appendLogEscaped(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// combinedCtx is combinedRequest from 127.0.0.1, read as fasthttp reads it.
func combinedCtx(t *testing.T) *fasthttp.RequestCtx {
	t.Helper()
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(combinedRequest))); err != nil {
		t.Fatal(err)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}, nil)
	return ctx
}

// The allocation guards are left out under -race, whose detector drops sync.Pool items
// (the rest of this file runs there too, so this is a skip, not a build tag).

// TestAllocsAppendCombined guards building a combined line into a buffer with room.
func TestAllocsAppendCombined(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation guards do not run under -race")
	}
	ctx := combinedCtx(t)
	a := &access{status: 200, sent: 812}
	dst := make([]byte, 0, 1024)
	now := time.Now()
	re := regexp.MustCompile(strings.Replace(combinedLine, "%s", "200 812", 1))
	if got := string(appendCombined(dst, ctx, nil, a, now)); !strings.HasSuffix(got, "\n") || !re.MatchString(strings.TrimSuffix(got, "\n")) {
		t.Fatalf("appendCombined = %q, want one line matching %s", got, re)
	}
	f := func() { dst = appendCombined(dst[:0], ctx, nil, a, now) }
	if n := testing.AllocsPerRun(1000, f); n != 0 {
		t.Fatalf("appendCombined: %v allocs/op, want 0", n)
	}
}

// TestAllocsLogCombined guards the whole combined access line of a request: the
// level and sampling decision, the pooled buffer and the one Write.
func TestAllocsLogCombined(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation guards do not run under -race")
	}
	ctx := combinedCtx(t)
	cfg := config.Default()
	cfg.Log.AccessFormat = "combined"
	s := &Server{level: newLevelSampler(zerolog.InfoLevel), out: io.Discard}
	snap := &snapshot{cfg: &cfg, accessOn: true, accessSample: 1}
	a := &access{start: time.Now(), status: 200, sent: 812}
	f := func() { s.logAccess(ctx, snap, a) }
	if n := testing.AllocsPerRun(1000, f); n != 0 {
		t.Fatalf("logAccess (combined): %v allocs/op, want 0", n)
	}
}
