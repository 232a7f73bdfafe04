package bench

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// Session ids that members issue (learned sessions) start with 'S'; ids that clients
// make up and no member ever issued (hashed sessions) start with 'C'. Neither carries a
// route, so only learning or hashing can keep them on a member.
const (
	issuedPrefix = 'S'
	clientPrefix = 'C'
)

var (
	cookieName   = []byte("JSESSIONID")
	headerMember = "X-Member"
)

// member is an application server stand-in: it answers with its id in X-Member,
// issues a learned session id (Set-Cookie) to requests without a session, and counts
// the sessions it receives that are not its own (foreign): a routed key whose first
// route is not its route, or an issued id it did not issue.
type member struct {
	id    string
	route string
	ln    net.Listener
	srv   *fasthttp.Server

	prefix  string // random per member, keeps issued ids unique across members
	next    atomic.Uint64
	issued  sync.Map // string -> struct{}
	foreign atomic.Int64
	served  atomic.Int64
}

func startMember(id string) (*member, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: member %s: %w", id, err)
	}
	var p [8]byte
	_, _ = rand.Read(p[:])
	m := &member{id: id, route: id, ln: ln, prefix: string(issuedPrefix) + hex.EncodeToString(p[:])}
	m.srv = &fasthttp.Server{Handler: m.handle, Name: "bench-" + id, DisablePreParseMultipartForm: true}
	go m.srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	return m, nil
}

func (m *member) addr() string { return m.ln.Addr().String() }

func (m *member) close() { _ = m.srv.Shutdown() }

func (m *member) handle(ctx *fasthttp.RequestCtx) {
	m.served.Add(1)
	var key []byte
	for _, h := range ctx.Request.Header.PeekAll(fasthttp.HeaderCookie) {
		if v, ok := router.PeekCookie(h, cookieName); ok {
			key = v
			break
		}
	}
	ctx.Response.Header.Set(headerMember, m.id)
	ctx.SetContentType("text/plain")
	switch {
	case len(key) == 0:
		id := m.prefix + hex.EncodeToString(appendUint64(nil, m.next.Add(1)))
		m.issued.Store(id, struct{}{})
		ctx.Response.Header.Set(fasthttp.HeaderSetCookie, "JSESSIONID="+id+"; Path=/; HttpOnly")
	case key[0] == issuedPrefix:
		if _, ok := m.issued.Load(string(key)); !ok {
			m.foreign.Add(1)
		}
	case key[0] == clientPrefix:
		// A client-made id: whoever serves it first owns it; only the client can tell.
	default:
		first, _ := router.NextRoute(router.PeekRoutes(key, router.FormatAuto))
		if string(first) != m.route {
			m.foreign.Add(1)
		}
	}
	ctx.SetBodyString("member=" + m.id + "\n")
}

func appendUint64(b []byte, v uint64) []byte {
	for i := 7; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}
