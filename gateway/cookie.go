package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"time"

	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// affinityCookie is a snapshot's signed affinity cookie (session.cookie, the cookie
// resolver), compiled when the snapshot is built: the value of every member under every
// key, so that verifying a request's cookie is one map lookup and setting one is one
// header of bytes made beforehand. Neither allocates.
//
// A member's value is the first 16 bytes of HMAC-SHA256(key, "sessiongate-cookie-v1",
// group, member id), base64url: it names the member only to whoever holds the key, and
// cannot be made for a member without it. It is the same for every client of the
// member, as HAProxy's inserted server cookie is: it carries no secret of the client's,
// only where it goes.
type affinityCookie struct {
	name    []byte
	byValue map[string]cookieEntry // every member's value under every key
	set     [][]byte               // by router.Member.Index: the Set-Cookie value, signed with keys[0]
}

type cookieEntry struct {
	m       *router.Member
	current bool // signed with keys[0]; else re-signed in the answer
}

// cookie verification results, counted.
const (
	cookieAbsent = iota
	cookieValid
	cookieOldKey
	cookieInvalid // forged, signed by a key not listed, or naming a member no longer there
	numCookieResults
)

var cookieResultNames = [numCookieResults]string{"absent", "valid", "old_key", "invalid"}

// buildCookie compiles session.cookie over t's members.
func buildCookie(c config.AffinityCookie, t *router.Table) (*affinityCookie, error) {
	keys, err := c.CookieKeys()
	if err != nil {
		return nil, err
	}
	ac := &affinityCookie{name: []byte(c.Name), byValue: map[string]cookieEntry{}, set: make([][]byte, len(t.Members))}
	for _, g := range t.Groups {
		path := c.Path
		if path == "" {
			path = string(g.Prefix)
		}
		for _, m := range g.Members {
			for ki, k := range keys {
				v := cookieValue([]byte(k), g.Name, m.ID)
				if _, dup := ac.byValue[v]; !dup {
					ac.byValue[v] = cookieEntry{m: m, current: ki == 0}
				}
				if ki == 0 {
					ac.set[m.Index] = setCookieValue(c, v, path)
				}
			}
		}
	}
	return ac, nil
}

func cookieValue(key []byte, group, member string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("sessiongate-cookie-v1\x00" + group + "\x00" + member))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
}

func setCookieValue(c config.AffinityCookie, value, path string) []byte {
	b := []byte(c.Name + "=" + value + "; Path=" + path)
	if c.Domain != "" {
		b = append(b, "; Domain="+c.Domain...)
	}
	if c.MaxAge > 0 {
		b = append(b, "; Max-Age="+strconv.FormatInt(int64(c.MaxAge/time.Second), 10)...)
	}
	if c.HTTPOnly {
		b = append(b, "; HttpOnly"...)
	}
	if c.Secure {
		b = append(b, "; Secure"...)
	}
	if c.SameSite != "" {
		b = append(b, "; SameSite="+c.SameSite...)
	}
	return b
}

// verify finds the request's affinity cookie among its Cookie headers and says whom it
// names. It does not allocate.
func (ac *affinityCookie) verify(cookies [][]byte) (*router.Member, int) {
	for _, h := range cookies {
		v, ok := router.PeekCookie(h, ac.name)
		if !ok {
			continue
		}
		e, found := ac.byValue[string(v)]
		switch {
		case !found:
			return nil, cookieInvalid
		case e.current:
			return e.m, cookieValid
		}
		return e.m, cookieOldKey
	}
	return nil, cookieAbsent
}

// pinnedIndex is the request's affinity cookie member's index in g, or -1, with how the
// cookie verified: a valid cookie of another group's member is absent for g.
func (ac *affinityCookie) pinnedIndex(g *router.Group, cookies [][]byte) (int, *router.Member, int) {
	m, res := ac.verify(cookies)
	if m == nil {
		return -1, nil, res
	}
	i := g.IndexOf(m)
	if i < 0 {
		return -1, nil, cookieAbsent
	}
	return i, m, res
}

// setFor adds the cookie of m to an answer, unless the request already had it.
func (ac *affinityCookie) setFor(resp *fasthttp.Response, m, had *router.Member, res int) bool {
	if had == m && res == cookieValid {
		return false
	}
	resp.Header.AddBytesKV(strSetCookie, ac.set[m.Index])
	return true
}
