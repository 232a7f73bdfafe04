package gateway

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// h2Conn is what the request path sees of an HTTP/2 connection: its addresses, its TLS
// (so ctx.IsTLS holds), its listener and TLS-session affinity id. It is never read or
// written: the HTTP/2 server owns the connection.
type h2Conn struct {
	net.Conn // the *tls.Conn, for its addresses
	tc       *tls.Conn
	info     *listenerInfo
	id       [16]byte
	hasID    bool
	perIP    netip.Addr
}

func (c *h2Conn) Handshake() error { return nil }

func (c *h2Conn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

type h2ConnKey struct{}

// h2Ctxs are the fasthttp request contexts HTTP/2 requests are bridged through.
var h2Ctxs = sync.Pool{New: func() any { return new(fasthttp.RequestCtx) }}

// h2Copy is the buffer a streamed body goes through to an HTTP/2 client.
var h2Copy = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// serveH2 bridges one HTTP/2 request to the request path: the request is made a
// fasthttp one (HTTP/1.1, Cookie crumbs joined as RFC 9113 section 8.2.3 asks), handled
// by handle exactly as an HTTP/1.1 request (routing, affinity, failover, retries,
// metrics, access log), and its answer written back as HTTP/2. The member side is
// HTTP/1.1 through the same pools.
func (s *Server) serveH2(w http.ResponseWriter, r *http.Request) {
	hc, _ := r.Context().Value(h2ConnKey{}).(*h2Conn)
	if hc == nil {
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	s.stats.h2Requests.Add(1)
	ctx := h2Ctxs.Get().(*fasthttp.RequestCtx)
	ctx.Init2(hc, s.fhLog, false)
	req := &ctx.Request
	h := &req.Header
	h.SetMethod(r.Method)
	h.SetRequestURI(r.RequestURI)
	h.SetProtocolBytes(strHTTP11)
	h.SetHost(r.Host)
	for k, vs := range r.Header {
		switch k {
		case "Content-Length", "Expect":
			continue // the body's length is set with it below; 100-continue is HTTP/2's own
		case "Cookie":
			if len(vs) > 1 {
				h.Set(k, strings.Join(vs, "; "))
				continue
			}
		}
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	if r.ContentLength > 0 || r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		req.SetBodyStream(r.Body, int(r.ContentLength))
	}

	s.handle(ctx)

	resp := &ctx.Response
	wh := w.Header()
	for k, v := range resp.Header.All() {
		switch string(k) {
		case "Content-Length", "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Connection":
			continue
		}
		key := string(k)
		wh[key] = append(wh[key], string(v))
	}
	if cl := resp.Header.ContentLength(); cl >= 0 {
		wh["Content-Length"] = []string{strconv.Itoa(cl)}
	}
	w.WriteHeader(resp.StatusCode())
	if bs := resp.BodyStream(); bs != nil {
		bp := h2Copy.Get().(*[]byte)
		werr := copyFlush(w, bs, *bp)
		h2Copy.Put(bp)
		if sb, ok := bs.(*sentBody); ok {
			sb.werr = werr
		}
		resp.CloseBodyStream() //nolint:errcheck // logged by sentBody
	} else if r.Method != http.MethodHead {
		w.Write(resp.Body()) //nolint:errcheck // the client went away
	}
	req.Reset()
	resp.Reset()
	h2Ctxs.Put(ctx)
}

// copyFlush copies a streamed body to an HTTP/2 client, flushing after each read so
// that a body the member sends in parts (server-sent events, a long poll) reaches the
// client as it comes. It returns the error of writing to the client, if any.
func copyFlush(w http.ResponseWriter, r io.Reader, buf []byte) error {
	f, _ := w.(http.Flusher)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if f != nil {
				f.Flush()
			}
		}
		if err != nil {
			return nil // io.EOF, or the member side's error, which sentBody keeps
		}
	}
}

// newStdLogger sends the HTTP/2 server's own messages (a client's protocol error, a
// TLS read error) to the log at debug level, as fasthttp's.
func newStdLogger(l zerolog.Logger) *log.Logger {
	return log.New(stdLogWriter{l}, "", 0)
}

type stdLogWriter struct{ l zerolog.Logger }

func (w stdLogWriter) Write(p []byte) (int, error) {
	w.l.Debug().Str("component", "http2").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
