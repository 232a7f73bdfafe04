// Package demo owns the application servers that stand in for real ones: `sessiongate
// demo` runs two behind the gateway, the gateway's tests use them as real members, and
// `sessiongate bench` measures through them. It is internal: no user imports it.
package demo

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// IDForm is the form of the session ids a member issues.
type IDForm uint8

const (
	// WebSphere ids are "0000<23-character id>:<route>", as a WebSphere clone issues them.
	WebSphere IDForm = iota
	// Plain ids carry no route ("S<hex>"): only a learned binding or hashing keeps them on
	// their member (Jetty, PHP, Tomcat without jvmRoute).
	Plain
)

// ClientPrefix starts the session ids that clients make up and no member issued; a
// member never counts them as foreign (whoever serves one first owns it).
const ClientPrefix = 'C'

// plainPrefix starts the Plain ids members issue.
const plainPrefix = 'S'

// HeaderMember is the response header naming the member that answered.
const HeaderMember = "X-Member"

var cookieName = []byte("JSESSIONID")

// Options shape a Member.
type Options struct {
	// ID names the member; Route is the route id it writes into WebSphere ids (its clone
	// id); "" means the id.
	ID, Route string
	// IDs is the form of the ids it issues.
	IDs IDForm
	// HealthPath answers 200, or 503 after SetHealthy(false); "" serves it as any page.
	HealthPath string
	// Addr is where to listen; "" is any free loopback port.
	Addr string
}

// Member is a loopback application server: it issues a JSESSIONID to a request
// without a session it holds, keeps a counter per session, names itself in
// X-Member and in its body ("member=<id> clone=<route> session=<id> counter=<n>"), and
// counts the sessions it receives that belong to another member (Foreign): a routed
// key whose first route is not its own, or a Plain id it did not issue.
type Member struct {
	ID, Route string
	ids       IDForm
	health    string
	prefix    string // random per member, keeps Plain ids unique across members
	next      atomic.Uint64

	ln       net.Listener
	srv      *fasthttp.Server
	healthy  atomic.Bool
	served   atomic.Int64
	foreign  atomic.Int64
	sessions sync.Map // session id -> *atomic.Int64 (its counter)
}

// Start listens and serves.
func Start(o Options) (*Member, error) {
	if o.Route == "" {
		o.Route = o.ID
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("demo: member %s: %w", o.ID, err)
	}
	var p [8]byte
	_, _ = rand.Read(p[:])
	m := &Member{ID: o.ID, Route: o.Route, ids: o.IDs, health: o.HealthPath, ln: ln,
		prefix: string(plainPrefix) + hex.EncodeToString(p[:])}
	m.healthy.Store(true)
	m.srv = &fasthttp.Server{Handler: m.handle, Name: "demo-" + o.ID, DisablePreParseMultipartForm: true}
	go m.srv.Serve(ln) //nolint:errcheck // ends with Close
	return m, nil
}

// Addr is the member's listening address.
func (m *Member) Addr() string { return m.ln.Addr().String() }

// SetHealthy makes the health page answer 200 (true) or 503 (false).
func (m *Member) SetHealthy(ok bool) { m.healthy.Store(ok) }

// Served counts the requests the member answered (health checks excluded).
func (m *Member) Served() int64 { return m.served.Load() }

// Foreign counts the requests that carried another member's session.
func (m *Member) Foreign() int64 { return m.foreign.Load() }

// Close stops the member and drops its connections, as a crashed server would.
func (m *Member) Close() error { return m.srv.Shutdown() }

// favicon is a 1x1 transparent PNG: a browser's visit to the demo asks for
// /favicon.ico, and a 404 there would look like an error.
var favicon = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89" +
	"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")

func (m *Member) handle(ctx *fasthttp.RequestCtx) {
	path := router.PeekPath(ctx.Request.Header.RequestURI())
	if string(path) == "/favicon.ico" {
		ctx.SetContentType("image/png")
		ctx.Response.Header.Set("Cache-Control", "max-age=86400")
		ctx.SetBody(favicon)
		return
	}
	if m.health != "" && string(path) == m.health {
		if m.healthy.Load() {
			ctx.SetBodyString("ok\n")
		} else {
			ctx.Error("unhealthy\n", fasthttp.StatusServiceUnavailable)
		}
		return
	}
	m.served.Add(1)
	var key []byte
	for _, h := range ctx.Request.Header.PeekAll(fasthttp.HeaderCookie) {
		if v, ok := router.PeekCookie(h, cookieName); ok {
			key = v
			break
		}
	}
	if len(key) == 0 {
		key = router.PeekPathParam(path, []byte("jsessionid"))
	}
	// The session id proper is what precedes a WebSphere clone list.
	id := key
	routes := router.PeekRoutes(key, router.FormatWebSphere)
	if routes != nil {
		id = key[:len(key)-len(routes)-1]
	}
	// A Plain member holds only the ids it issued; a routed key's session is looked up
	// by a WebSphere one alone (the benchmark's routed keys cost no lookup).
	var counter *atomic.Int64
	if len(id) > 0 && (m.ids == WebSphere || key[0] == plainPrefix) {
		if v, ok := m.sessions.Load(string(id)); ok {
			counter = v.(*atomic.Int64)
		}
	}
	if counter == nil && len(key) > 0 {
		switch {
		case key[0] == ClientPrefix && m.ids == Plain:
			// A client-made id: whoever serves it first owns it; only the client can tell.
		case key[0] == plainPrefix && routes == nil:
			m.foreign.Add(1) // issued by another member
		default:
			if first, _ := router.NextRoute(router.PeekRoutes(key, router.FormatAuto)); string(first) != m.Route {
				m.foreign.Add(1)
			}
		}
	}
	ctx.Response.Header.Set(HeaderMember, m.ID)
	if counter == nil && (len(key) == 0 || m.ids == WebSphere) {
		// A session this member does not hold: an application server starts a new one.
		var s string
		if m.ids == WebSphere {
			s = newWebSphereID()
			ctx.Response.Header.Set(fasthttp.HeaderSetCookie, "JSESSIONID="+s+":"+m.Route+"; Path=/; HttpOnly")
		} else {
			s = m.prefix + strconv.FormatUint(m.next.Add(1), 16)
			ctx.Response.Header.Set(fasthttp.HeaderSetCookie, "JSESSIONID="+s+"; Path=/; HttpOnly")
		}
		counter = new(atomic.Int64)
		m.sessions.Store(s, counter)
		id = []byte(s)
	}
	n := int64(0)
	if counter != nil {
		n = counter.Add(1)
	}
	ctx.SetContentType("text/plain; charset=utf-8")
	b := ctx.Response.BodyWriter()
	var buf [20]byte
	io.WriteString(b, "member=")
	io.WriteString(b, m.ID)
	io.WriteString(b, " clone=")
	io.WriteString(b, m.Route)
	io.WriteString(b, " session=")
	b.Write(id)
	io.WriteString(b, " counter=")
	b.Write(strconv.AppendInt(buf[:0], n, 10))
	io.WriteString(b, "\n")
}

// NewWebSphereID makes "0000" (the cache id) followed by a 23-character session id.
func NewWebSphereID() string { return newWebSphereID() }

func newWebSphereID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	var b [27]byte
	copy(b[:], "0000")
	var r [23]byte
	_, _ = rand.Read(r[:])
	for i, c := range r {
		b[4+i] = alphabet[int(c)%len(alphabet)]
	}
	return string(b[:])
}

// Config is the configuration `sessiongate demo` runs: the seed's FBDevTargetGroup
// with its members on loopback, each routed by its clone id.
func Config(listen, admin string, members ...*Member) *config.Config {
	cfg := config.Default()
	cfg.Listen = listen
	cfg.Admin.Listen = admin
	g := config.NewGroup("FBDevTargetGroup", "/fb")
	g.HealthCheck.Path = "/fb/healthcheck"
	g.HealthCheck.Interval = 2 * time.Second
	g.HealthCheck.Timeout = time.Second
	for _, m := range members {
		mc := config.NewMember(m.ID, m.Addr())
		mc.Route = m.Route
		g.Members = append(g.Members, mc)
	}
	cfg.TargetGroups = []config.Group{g}
	return &cfg
}
