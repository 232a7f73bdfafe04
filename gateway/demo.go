package gateway

import (
	"crypto/rand"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// DemoMember is a loopback application server that behaves like a WebSphere clone: it
// issues JSESSIONID=0000<23-char id>:<clone id>, keeps a counter per session, and
// answers /fb/healthcheck. `sessiongate demo` runs two of them behind the gateway, and
// tests use them as real members.
type DemoMember struct {
	ID    string
	Clone string

	ln      net.Listener
	srv     *fasthttp.Server
	healthy atomic.Bool
	served  atomic.Uint64

	mu       sync.Mutex
	sessions map[string]int
}

var demoCookie = []byte("JSESSIONID")

// StartDemoMember listens on addr ("127.0.0.1:0" for any free port) and serves.
func StartDemoMember(id, clone, addr string) (*DemoMember, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo member %s: %w", id, err)
	}
	d := &DemoMember{ID: id, Clone: clone, ln: ln, sessions: map[string]int{}}
	d.healthy.Store(true)
	d.srv = &fasthttp.Server{Handler: d.handle, Name: "demo-" + id}
	go d.srv.Serve(ln) //nolint:errcheck // ends with Close
	return d, nil
}

// Addr is the member's listening address.
func (d *DemoMember) Addr() string { return d.ln.Addr().String() }

// SetHealthy makes /fb/healthcheck answer 200 (true) or 503 (false).
func (d *DemoMember) SetHealthy(ok bool) { d.healthy.Store(ok) }

// Served counts the requests the member answered (health checks excluded).
func (d *DemoMember) Served() uint64 { return d.served.Load() }

// Close stops the member and drops its connections, as a crashed server would.
func (d *DemoMember) Close() error {
	return d.srv.Shutdown()
}

func (d *DemoMember) handle(ctx *fasthttp.RequestCtx) {
	path := router.PeekPath(ctx.Request.Header.RequestURI())
	if string(path) == "/fb/healthcheck" {
		if d.healthy.Load() {
			ctx.SetBodyString("ok\n")
		} else {
			ctx.Error("unhealthy\n", fasthttp.StatusServiceUnavailable)
		}
		return
	}
	d.served.Add(1)
	var key []byte
	for _, h := range ctx.Request.Header.PeekAll(fasthttp.HeaderCookie) {
		if v, ok := router.PeekCookie(h, demoCookie); ok {
			key = v
			break
		}
	}
	if len(key) == 0 {
		key = router.PeekPathParam(path, []byte("jsessionid"))
	}
	// The session id proper is what precedes the clone list.
	id := string(key)
	if l := router.PeekRoutes(key, router.FormatWebSphere); l != nil {
		id = string(key[:len(key)-len(l)-1])
	}
	d.mu.Lock()
	n, ok := d.sessions[id]
	if !ok || id == "" {
		id = newWebSphereID()
	}
	n++
	d.sessions[id] = n
	d.mu.Unlock()
	if !ok {
		c := fasthttp.AcquireCookie()
		c.SetKey("JSESSIONID")
		c.SetValue(id + ":" + d.Clone)
		c.SetPath("/")
		c.SetHTTPOnly(true)
		ctx.Response.Header.SetCookie(c)
		fasthttp.ReleaseCookie(c)
	}
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString("member=" + d.ID + " clone=" + d.Clone + " session=" + id + " counter=" + strconv.Itoa(n) + "\n")
}

// newWebSphereID makes "0000" (the cache id) followed by a 23-character session id.
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

// DemoConfig is the configuration `sessiongate demo` runs: the seed's FBDevTargetGroup
// with its members on loopback at the given addresses.
func DemoConfig(listen, admin string, members ...*DemoMember) *Config {
	cfg := DefaultConfig()
	cfg.Listen = listen
	cfg.Admin.Listen = admin
	g := NewGroupConfig("FBDevTargetGroup", "/fb")
	g.HealthCheck.Path = "/fb/healthcheck"
	g.HealthCheck.Interval = 2 * time.Second
	g.HealthCheck.Timeout = time.Second
	for _, m := range members {
		mc := NewMemberConfig(m.ID, m.Addr())
		mc.Route = m.Clone
		g.Members = append(g.Members, mc)
	}
	cfg.TargetGroups = []GroupConfig{g}
	return &cfg
}
