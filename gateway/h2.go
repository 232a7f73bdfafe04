package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
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
	headErr := s.h2Head(&req.Header, r)
	if r.ContentLength > 0 || r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		req.SetBodyStream(r.Body, int(r.ContentLength))
	}

	switch {
	case headErr == nil:
		s.handle(ctx)
	case headErr == errH2HeadTooLarge:
		// Larger than server.max_header_bytes (net/http bounds HTTP/2 heads by it too,
		// so only the rewriting can push it over): 431, logged as the gateway's answers.
		s.fail(ctx, s.snap.Load(), access{start: ctx.Time()}, headErr)
	default:
		// A head fasthttp's parser refuses (a target with a space, which HTTP/2 lets
		// through): 400 and one line, as on HTTP/1.1.
		s.handleParseError(ctx, headErr)
	}

	resp := &ctx.Response
	wh := w.Header()
	// One backing array for the values of every header: one allocation, not one per
	// header; common names are not copied.
	vals := make([]string, 0, resp.Header.Len())
	for k, v := range resp.Header.All() {
		switch string(k) {
		case "Content-Length", "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Connection":
			continue
		}
		key := h2HeaderName(k)
		if prev, ok := wh[key]; ok {
			wh[key] = append(prev, string(v))
			continue
		}
		vals = append(vals, string(v))
		wh[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if cl := resp.Header.ContentLength(); cl >= 0 {
		wh["Content-Length"] = []string{strconv.Itoa(cl)}
	}
	w.WriteHeader(resp.StatusCode())
	if bs := resp.BodyStream(); bs != nil {
		bp := h2Copy.Get().(*[]byte)
		werr := copyFlush(w, bs, *bp, resp.Header.ContentLength() < 0)
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

// h2HeadBuf is a buffer h2Head writes and parses a request head in.
type h2HeadBuf struct {
	b  []byte
	rd bytes.Reader
	br *bufio.Reader
}

var h2Heads sync.Pool

// h2Head makes the HTTP/1.1 head of an HTTP/2 request and parses it into h, as fasthttp
// parses a head read from a connection: the Cookie header stays as received (setting
// it field by field would make fasthttp parse the cookies and write them again), and
// the one parser of the HTTP/1.1 path judges it. Cookie crumbs are joined into one
// header (RFC 9113 section 8.2.3); Content-Length and Transfer-Encoding come from the
// body (SetBodyStream), Expect is HTTP/2's own.
func (s *Server) h2Head(h *fasthttp.RequestHeader, r *http.Request) error {
	hb, _ := h2Heads.Get().(*h2HeadBuf)
	if hb == nil {
		hb = &h2HeadBuf{br: bufio.NewReaderSize(nil, s.snap.Load().cfg.Server.MaxHeaderBytes+4096)}
	}
	defer h2Heads.Put(hb)
	b := append(hb.b[:0], r.Method...)
	b = append(b, ' ')
	b = append(b, r.RequestURI...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.Host...)
	b = append(b, "\r\n"...)
	for k, vs := range r.Header {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Expect", "Host":
			continue
		case "Cookie":
			b = append(b, "Cookie: "...)
			for i, v := range vs {
				if i > 0 {
					b = append(b, "; "...)
				}
				b = append(b, v...)
			}
			b = append(b, "\r\n"...)
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	hb.b = b
	if len(b) > hb.br.Size() {
		return errH2HeadTooLarge
	}
	hb.rd.Reset(b)
	hb.br.Reset(&hb.rd)
	return h.Read(hb.br)
}

var errH2HeadTooLarge = errors.New("gateway: HTTP/2 request head too large for server.max_header_bytes")

// copyFlush copies a streamed body to an HTTP/2 client. A body of unknown length
// (flush) is flushed after each read, so that one the member sends in parts
// (server-sent events, a long poll) reaches the client as it comes; one of known length
// is left to the HTTP/2 server's buffer, which sends it with the end of the stream in
// as few frames and writes as it can. It returns the error of writing to the client, if
// any.
func copyFlush(w http.ResponseWriter, r io.Reader, buf []byte, flush bool) error {
	var f http.Flusher
	if flush {
		f, _ = w.(http.Flusher)
	}
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

// h2Names are the header names of most answers, so that copying them to an HTTP/2
// answer does not copy their names.
var h2Names = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"Content-Type", "Content-Encoding", "Set-Cookie", "Date", "Server", "Cache-Control",
		"Expires", "Last-Modified", "Etag", "Vary", "Location", "X-Member", "Strict-Transport-Security",
		"Access-Control-Allow-Origin", "X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy"} {
		m[n] = n
	}
	return m
}()

func h2HeaderName(k []byte) string {
	if n, ok := h2Names[string(k)]; ok {
		return n
	}
	return string(k)
}
