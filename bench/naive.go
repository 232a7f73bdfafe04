package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// PeerFasthttp is the naive fasthttp reverse proxy peer: a fasthttp.Server whose
// handler passes each request to one fasthttp.HostClient per member, in turn, with
// HostClient.Do. It keeps no session on its member (its sticky violations are by
// design), removes no hop-by-hop header, sets no deadline and logs nothing: it is the
// floor of what any gateway built on fasthttp costs per request, and the gateway must
// beat it.
const PeerFasthttp = "fasthttp"

// NaiveProxy is the naive fasthttp reverse proxy of PeerFasthttp.
type NaiveProxy struct {
	srv     *fasthttp.Server
	clients []*fasthttp.HostClient
	next    atomic.Uint64
}

// NewNaiveProxy returns the naive proxy in front of the members at addrs.
func NewNaiveProxy(addrs []string) (*NaiveProxy, error) {
	if len(addrs) == 0 {
		return nil, errors.New("bench: naive proxy: no member")
	}
	p := &NaiveProxy{}
	for _, a := range addrs {
		p.clients = append(p.clients, &fasthttp.HostClient{Addr: a, MaxConns: 4096})
	}
	p.srv = &fasthttp.Server{Handler: p.handle, NoDefaultServerHeader: true, NoDefaultDate: true, NoDefaultContentType: true}
	return p, nil
}

func (p *NaiveProxy) handle(ctx *fasthttp.RequestCtx) {
	c := p.clients[p.next.Add(1)%uint64(len(p.clients))]
	if err := c.Do(&ctx.Request, &ctx.Response); err != nil {
		ctx.Error("502 Bad Gateway", fasthttp.StatusBadGateway)
	}
}

// Serve serves ln until Shutdown.
func (p *NaiveProxy) Serve(ln net.Listener) error { return p.srv.Serve(ln) }

// Shutdown stops serving.
func (p *NaiveProxy) Shutdown() error { return p.srv.Shutdown() }

// ServeNaive runs the naive proxy on listen in front of members (comma-separated
// addresses) until the process is stopped: `sessiongate bench -serve-naive`, the child
// process of the fasthttp peer.
func ServeNaive(listen, members string) error {
	p, err := NewNaiveProxy(strings.Split(members, ","))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("bench: naive proxy: %w", err)
	}
	return p.Serve(ln)
}

// startNaive starts the naive proxy the way the gateway runs: in-process, or with
// ModeChild as a child process of o.Executable (`bench -serve-naive`), pinned alike.
func startNaive(o Options, addrs []string) (*proxy, error) {
	if o.Mode == ModeChild {
		dir, err := os.MkdirTemp("", "sessiongate-bench-fasthttp-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		addr, err := freeAddr()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		exe := o.Executable
		if exe == "" {
			exe = os.Args[0]
		}
		return startChild(o, dir, addr, exe, "bench", "-serve-naive", addr, "-naive-members", strings.Join(addrs, ","))
	}
	p, err := NewNaiveProxy(addrs)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: naive proxy: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- p.Serve(ln) }()
	return &proxy{addr: ln.Addr().String(), stop: func() {
		_ = p.Shutdown()
		select {
		case <-errc:
		case <-time.After(5 * time.Second):
		}
	}}, nil
}
