package gateway

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
)

// cookieGateway is a gateway with the signed affinity cookie in front of three members
// that issue no session ids at all.
func cookieGateway(t *testing.T, keys ...string) (*Server, string, *config.Config) {
	t.Helper()
	cfg := gwConfig(gwGroup("fb", "/fb",
		gwMember("m1", startFastMember(t, idMember("m1"))),
		gwMember("m2", startFastMember(t, idMember("m2"))),
		gwMember("m3", startFastMember(t, idMember("m3")))))
	cfg.Session.Affinity = []string{"route", "cookie", "learned", "hash"}
	cfg.Session.Cookie.Keys = keys
	s, addr := startGateway(t, cfg, zerolog.Nop())
	return s, "http://" + addr + "/fb/x", cfg
}

func jarClient(t *testing.T) *http.Client {
	c := newHTTPClient(t)
	c.Jar, _ = cookiejar.New(nil)
	return c
}

// TestAffinityCookie: a client without any session id gets the signed cookie and stays
// on its member for 50 requests; its attributes are the configured ones; a cookie with a
// flipped byte, one of another key, and one of a removed member are ignored (the client
// is balanced again and given a new cookie) and counted.
func TestAffinityCookie(t *testing.T) {
	s, u, cfg := cookieGateway(t, "a-key-of-sixteen-bytes")
	c := jarClient(t)
	resp, body := httpGet(t, c, u, "")
	member := bodyField(body, "member")
	set := resp.Header.Get("Set-Cookie")
	if !strings.HasPrefix(set, "SGROUTE=") || !strings.Contains(set, "; Path=/fb; HttpOnly; SameSite=Lax") {
		t.Fatalf("Set-Cookie %q, want SGROUTE with Path=/fb, HttpOnly, SameSite=Lax", set)
	}
	for n := range 50 {
		resp, body := httpGet(t, c, u, "")
		if got := bodyField(body, "member"); got != member {
			t.Fatalf("request %d with the cookie: %s, want %s", n+2, got, member)
		}
		if resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("request %d: the cookie set again although valid", n+2)
		}
	}
	// Without the cookie, requests are balanced over all three.
	seen := map[string]bool{}
	for range 6 {
		_, body := httpGet(t, newHTTPClient(t), u, "")
		seen[bodyField(body, "member")] = true
	}
	if len(seen) != 3 {
		t.Fatalf("keyless requests without the cookie reached %v, want all three", seen)
	}

	value := strings.TrimPrefix(strings.SplitN(set, ";", 2)[0], "SGROUTE=")
	flipped := []byte(value)
	flipped[3] ^= 1
	other := cookieValue([]byte("another-key-of-sixteen"), "fb", member)
	invalid := s.stats.cookies[cookieInvalid].Load()
	for _, v := range []string{string(flipped), other, value + "x", ""} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Cookie", "SGROUTE="+v)
		resp, _ := doHTTP(t, newHTTPClient(t), req)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "SGROUTE=") {
			t.Errorf("cookie %q: %d, Set-Cookie %q: want a new cookie", v, resp.StatusCode, resp.Header.Get("Set-Cookie"))
		}
	}
	if got := s.stats.cookies[cookieInvalid].Load() - invalid; got != 4 {
		t.Errorf("invalid cookies counted: %d, want 4", got)
	}

	// The member is removed: its cookie no longer verifies.
	next := *cfg
	next.TargetGroups = []config.Group{cfg.TargetGroups[0]}
	var kept []config.Member
	for _, m := range cfg.TargetGroups[0].Members {
		if m.ID != member {
			kept = append(kept, m)
		}
	}
	next.TargetGroups[0].Members = kept
	if err := s.Reload(&next); err != nil {
		t.Fatal(err)
	}
	resp, body = httpGet(t, c, u, "")
	if got := bodyField(body, "member"); got == member || got == "" || !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "SGROUTE=") {
		t.Errorf("cookie of a removed member: reached %q with Set-Cookie %q, want another member and a new cookie", got, resp.Header.Get("Set-Cookie"))
	}
}

// TestAffinityCookieRotation: putting a new key first keeps every client on its member;
// their cookies are signed again with the new key, which then verifies alone.
func TestAffinityCookieRotation(t *testing.T) {
	s, u, cfg := cookieGateway(t, "old-key-of-sixteen-bytes")
	clients := make([]*http.Client, 6)
	members := make([]string, 6)
	for i := range clients {
		clients[i] = jarClient(t)
		_, body := httpGet(t, clients[i], u, "")
		members[i] = bodyField(body, "member")
	}
	next := *cfg
	next.Session.Cookie.Keys = []string{"new-key-of-sixteen-bytes", "old-key-of-sixteen-bytes"}
	if err := s.Reload(&next); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		resp, body := httpGet(t, c, u, "")
		if got := bodyField(body, "member"); got != members[i] {
			t.Fatalf("client %d after the rotation: %s, want %s", i, got, members[i])
		}
		if resp.Header.Get("Set-Cookie") == "" {
			t.Fatalf("client %d: cookie of the old key not signed again", i)
		}
	}
	final := next
	final.Session.Cookie.Keys = []string{"new-key-of-sixteen-bytes"}
	if err := s.Reload(&final); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		for range 3 {
			_, body := httpGet(t, c, u, "")
			if got := bodyField(body, "member"); got != members[i] {
				t.Fatalf("client %d with the old key dropped: %s, want %s", i, got, members[i])
			}
		}
	}
	if s.stats.cookies[cookieOldKey].Load() != 6 {
		t.Errorf("old-key cookies counted: %d, want 6", s.stats.cookies[cookieOldKey].Load())
	}
}

// TestAffinityCookieFailover: when the cookie's member goes down its clients move (once)
// and are given the new member's cookie; a JSESSIONID route still wins over the cookie
// when it comes first in the chain.
func TestAffinityCookieFailover(t *testing.T) {
	s, u, _ := cookieGateway(t, "a-key-of-sixteen-bytes")
	c := jarClient(t)
	_, body := httpGet(t, c, u, "")
	first := bodyField(body, "member")
	setDown(t, s, first)
	resp, body := httpGet(t, c, u, "")
	moved := bodyField(body, "member")
	if moved == first || resp.Header.Get("Set-Cookie") == "" {
		t.Fatalf("after %s went down: reached %s, Set-Cookie %q", first, moved, resp.Header.Get("Set-Cookie"))
	}
	for range 5 {
		if _, body := httpGet(t, c, u, ""); bodyField(body, "member") != moved {
			t.Fatalf("after the move: %q, want %s", body, moved)
		}
	}
	// route comes before cookie: a WebSphere clone id names its member.
	target := "m1"
	if moved == "m1" {
		target = "m2"
	}
	pu, _ := url.Parse(u)
	c.Jar.SetCookies(pu, []*http.Cookie{{Name: "JSESSIONID", Value: "0000ABCDEFGHIJKLMNOPQRSTUVW:" + target}})
	if _, body := httpGet(t, c, u, ""); bodyField(body, "member") != target {
		t.Errorf("route %s with a cookie of %s: %q", target, moved, body)
	}
}
