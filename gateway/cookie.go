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

// pinnedIndex finds, among the request's Cookie headers, an affinity cookie that names
// a member of g, and returns that member's index in g (-1: none), the member, and how
// the cookie verified. Every cookie of the name is looked at: a browser sends one per
// Path and Domain (nested groups, a sibling subdomain's), so a first one that does not
// verify, or names another group's member, must not hide a valid one behind it. A
// request whose cookies of the name all fail to verify is cookieInvalid; one whose only
// valid cookies are other groups' is cookieAbsent for g. It does not allocate.
func (ac *affinityCookie) pinnedIndex(g *router.Group, cookies [][]byte) (int, *router.Member, int) {
	res := cookieAbsent
	for _, h := range cookies {
		for rest := h; len(rest) > 0; {
			v, next, ok := router.NextCookie(rest, ac.name)
			if !ok {
				break
			}
			rest = next
			e, found := ac.byValue[string(v)]
			if !found {
				res = cookieInvalid
				continue
			}
			i := g.IndexOf(e.m)
			if i < 0 {
				continue // another group's cookie
			}
			if e.current {
				return i, e.m, cookieValid
			}
			return i, e.m, cookieOldKey
		}
	}
	return -1, nil, res
}

// setFor adds the cookie of m to an answer, unless the request already had it.
func (ac *affinityCookie) setFor(resp *fasthttp.Response, m, had *router.Member, res int) bool {
	if had == m && res == cookieValid {
		return false
	}
	resp.Header.AddBytesKV(strSetCookie, ac.set[m.Index])
	return true
}
