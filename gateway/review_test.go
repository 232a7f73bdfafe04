package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/valyala/fasthttp"
)

// reviewH2Gateway is a gateway with one TLS listener (h2 on) in front of member h; it
// returns the server, the listener's address and an HTTP/2 client.
func reviewH2Gateway(t *testing.T, h fasthttp.RequestHandler, edit func(*config.Config)) (*Server, string, *http.Client) {
	t.Helper()
	ca := newTestCA(t)
	cert, key := ca.issue("gw", false, "localhost", "127.0.0.1")
	cfg := gwConfig(gwGroup("g", "/", gwMember("m1", startFastMember(t, h))))
	cfg.Listeners = []config.Listener{tlsListenerCfg(pair(cert, key))}
	if edit != nil {
		edit(cfg)
	}
	s, addrs := startListeners(t, cfg, zerolog.Nop())
	tr := &http.Transport{TLSClientConfig: ca.clientConfig("localhost"), ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return s, addrs[0], &http.Client{Transport: tr, Timeout: scaled(10 * time.Second)}
}

// shortBody yields its bytes and then io.EOF, whatever Content-Length says.
type shortBody struct{ r io.Reader }

func (b *shortBody) Read(p []byte) (int, error) { return b.r.Read(p) }

// TestReviewH2ShortBodyReachesMember: an HTTP/2 client declares Content-Length 62 and
// ends the stream after 5 bytes of body (net/http's transport does exactly that for a
// body shorter than its ContentLength). The HTTP/2 server fails the body read with
// "request declared a Content-Length of 62 but only wrote 5 bytes". bufferBody reads
// the body with fasthttp's Request.Body, which on a failed stream REPLACES the body with
// the error's text (fasthttp http.go bodyBytes: bodyBuf.SetString(err.Error())): 62
// bytes, the declared length, so the len(req.Body()) != cl check passes and the member
// executes a POST the client never completed, with a body the client never sent. It
// must be refused (errClientBody, 400) and never reach the member. The same holds for
// any read error whose text has the declared length (a reset: "stream error: stream ID
// 1; CANCEL", 33 bytes).
func TestReviewH2ShortBodyReachesMember(t *testing.T) {
	var got atomic.Value
	member := func(ctx *fasthttp.RequestCtx) {
		got.Store(fmt.Sprintf("cl=%d body=%q", ctx.Request.Header.ContentLength(), ctx.PostBody()))
		ctx.SetBodyString("member=m1\n")
	}
	s, addr, c := reviewH2Gateway(t, member, nil)
	msg := "request declared a Content-Length of 62 but only wrote 5 bytes"
	req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/pay", &shortBody{strings.NewReader("hello")})
	req.ContentLength = int64(len(msg))
	resp, err := c.Do(req)
	status := 0
	if err == nil {
		status = resp.StatusCode
		resp.Body.Close()
	}
	waitFor(t, "the request to be decided", func() bool { return s.stats.requests.Load() >= 1 })
	if v := got.Load(); v != nil {
		t.Fatalf("status %d; the member received a request whose body ended short: %s", status, v)
	}
	if status != 0 && status != http.StatusBadRequest {
		t.Errorf("status %d, want 400", status)
	}
}

// TestReviewH2BadTargetIs431WithoutLog: an HTTP/2 request whose :path holds a space
// ("/a b": HTTP/2 allows it, RFC 9113 only forbids CTLs in field values, and net/http's
// HTTP/2 server passes it) is a malformed target. h2Head writes it into an HTTP/1.1
// request line, fasthttp's parser refuses "GET /a b HTTP/1.1", and serveH2 answers
// every h2Head error as "431 Request Header Fields Too Large", counted as
// header_too_large, and writes no log line. The HTTP/1.1 path answers the same target
// 400 with one "bad request" log line (handleParseError). Want: 400, one log line.
func TestReviewH2BadTargetIs431WithoutLog(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue("gw", false, "localhost", "127.0.0.1")
	var hits atomic.Int64
	cfg := gwConfig(gwGroup("g", "/", gwMember("m1", startFastMember(t, func(ctx *fasthttp.RequestCtx) { hits.Add(1) }))))
	cfg.Listeners = []config.Listener{tlsListenerCfg(pair(cert, key))}
	var logs syncBuffer
	s, addrs := startListeners(t, cfg, zerolog.New(&logs).Level(zerolog.InfoLevel))
	tr := &http.Transport{TLSClientConfig: ca.clientConfig("localhost"), ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: scaled(10 * time.Second)}
	req, _ := http.NewRequest(http.MethodGet, "https://"+addrs[0]+"/", nil)
	req.URL.Opaque = "/a b" // sent as :path verbatim
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("proto %s, want HTTP/2", resp.Proto)
	}
	if hits.Load() != 0 {
		t.Fatalf("the member got the request")
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400 (header_too_large counted: %d)", resp.StatusCode, s.stats.errors[kindHeaderTooLarge].Load())
	}
	if n := strings.Count(strings.TrimSpace(logs.String()), "\n") + 1; strings.TrimSpace(logs.String()) == "" || n != 1 {
		t.Errorf("%d log lines for the bad request, want 1: %q", map[bool]int{true: 0, false: n}[strings.TrimSpace(logs.String()) == ""], logs.String())
	}
}

// TestReviewCookieFirstOfNameWins: affinityCookie.verify stops at the first cookie of
// its name, so a request holding a valid cookie for its group's member is not pinned
// when another cookie of that name comes first: one of another group (nested groups
// "/" and "/fb" each set SGROUTE, Path=/ and Path=/fb, and a client may list them in
// any order), or a junk one (cookie tossing: a sibling subdomain sets SGROUTE=junk;
// Domain=.example.com; Path=/fb/x, which browsers list first, being the longer path).
// The request is balanced and told a new cookie: the victim's session moves. Want: the
// valid cookie of the group's member is found wherever it is among the Cookie pairs.
func TestReviewCookieFirstOfNameWins(t *testing.T) {
	const key = "a-key-of-sixteen-bytes"
	cfg := gwConfig(
		gwGroup("fb", "/fb",
			gwMember("m1", startFastMember(t, idMember("m1"))),
			gwMember("m2", startFastMember(t, idMember("m2"))),
			gwMember("m3", startFastMember(t, idMember("m3")))),
		gwGroup("root", "/", gwMember("r1", startFastMember(t, idMember("r1")))))
	cfg.Session.Affinity = []string{"route", "cookie", "learned", "hash"}
	cfg.Session.Cookie.Keys = []string{key}
	_, addr := startGateway(t, cfg, zerolog.Nop())
	mine := "SGROUTE=" + cookieValue([]byte(key), "fb", "m2")
	for name, cookie := range map[string]string{
		"other group first": "SGROUTE=" + cookieValue([]byte(key), "root", "r1") + "; " + mine,
		"tossed junk first": "SGROUTE=junk; " + mine,
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			for n := range 6 {
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/fb/x", nil)
				req.Header.Set("Cookie", cookie)
				resp, body := doHTTP(t, newHTTPClient(t), req)
				if got := bodyField(body, "member"); got != "m2" || resp.Header.Get("Set-Cookie") != "" {
					t.Fatalf("request %d, Cookie %q: member %s, Set-Cookie %q; want m2 (its valid cookie), none set",
						n+1, cookie, got, resp.Header.Get("Set-Cookie"))
				}
			}
		})
	}
}
