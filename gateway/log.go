package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/health"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// NewLogger builds the process logger from log.level and log.format, writing to w, at
// log.level. A Server built with it keeps a level of its own (see levelSampler), which
// the admin API and reloads change; no zerolog process-wide setting is touched. The
// logger carries w itself too (see rawOutput): with log.access_format combined, a
// Server writes its access lines there, unwrapped.
func NewLogger(cfg config.Log, w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil || cfg.Level == "" {
		return zerolog.Nop(), fmt.Errorf("gateway: log.level: %q: want debug, info, warn or error", cfg.Level)
	}
	switch cfg.AccessFormat {
	case "json", "", "combined":
	default:
		return zerolog.Nop(), fmt.Errorf("gateway: log.access_format: %q: want json or combined", cfg.AccessFormat)
	}
	raw := w
	switch cfg.Format {
	case "json", "":
	case "console":
		f, isFile := w.(*os.File) // colours only on a terminal (NO_COLOR also turns them off)
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !isFile || !isatty.IsTerminal(f.Fd())}
	default:
		return zerolog.Nop(), fmt.Errorf("gateway: log.format: %q: want json or console", cfg.Format)
	}
	out := context.WithValue(context.Background(), rawOutputKey{}, raw)
	return zerolog.New(w).Level(level).Hook(msTime{}).With().Ctx(out).Logger(), nil
}

// rawOutputKey keys, in the context.Context of a logger NewLogger built, the writer
// NewLogger was given.
type rawOutputKey struct{}

// rawOutput returns the writer NewLogger was given for log, or nil for a logger
// NewLogger did not build (or one that is off). zerolog has no getter for a logger's
// writer, so NewLogger keeps it in the logger's context.Context, which zerolog hands
// to every event and which only an event reads back. Called once, in New.
func rawOutput(log zerolog.Logger) io.Writer {
	e := log.Log()
	w, _ := e.GetCtx().Value(rawOutputKey{}).(io.Writer)
	e.Discard()
	return w
}

// msTime stamps every line with its time to the millisecond, in UTC ("time":
// "2026-12-01T22:30:05.123Z"), without zerolog's process-wide TimeFieldFormat.
type msTime struct{}

// Run adds the time field.
func (msTime) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	var buf [32]byte
	e.Bytes("time", time.Now().UTC().AppendFormat(buf[:0], "2006-01-02T15:04:05.000Z07:00"))
}

// levelSampler is a Server's run-time log level. zerolog asks a logger's sampler before
// it builds an event, so a level it refuses costs what a disabled zerolog level costs;
// every logger the Server derives (access, health, members) shares it.
type levelSampler struct{ level atomic.Int32 }

func newLevelSampler(l zerolog.Level) *levelSampler {
	s := &levelSampler{}
	s.level.Store(int32(l))
	return s
}

// Sample reports whether events at lvl are logged.
func (s *levelSampler) Sample(lvl zerolog.Level) bool { return lvl >= zerolog.Level(s.level.Load()) }

func (s *levelSampler) set(l zerolog.Level) { s.level.Store(int32(l)) }

func (s *levelSampler) get() zerolog.Level { return zerolog.Level(s.level.Load()) }

// ms is a duration in milliseconds, the unit of every duration in the logs.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// access is what one request's access line says besides the request itself.
type access struct {
	start     time.Time
	g         *router.Group
	m         *router.Member
	outcome   router.Outcome
	tried     *router.Member // the member a retry left (nil: no retry)
	retryKind errKind        // why it was left
	status    int
	sent      int64 // body bytes handed to the client connection
	truncated bool  // the body stopped short of what the answer announced
	err       error // the gateway's failure, if any
}

// logAccess writes the access log line of one request, with typed fields only (no
// Msgf: a disabled Msgf still allocates). Sampling keeps one success in
// log.access_sample; failures, and answers cut short (truncated), are always logged,
// at warn or error level, with the error. client is the real client: the peer, or
// behind a trusted proxy the last address in X-Forwarded-For that is not a trusted one.
// With log.access_format combined the line is a combined log line (writeCombined),
// under the same sampling and levels; a Server whose logger NewLogger did not build
// has no raw output and keeps writing JSON.
func (s *Server) logAccess(ctx *fasthttp.RequestCtx, snap *snapshot, a *access) {
	var lvl zerolog.Level
	switch {
	case a.err != nil && a.status >= 500:
		lvl = zerolog.ErrorLevel
	case a.err != nil, a.truncated:
		lvl = zerolog.WarnLevel
	case !snap.accessOn:
		return
	case snap.accessSample > 1 && s.accessN.Add(1)%snap.accessSample != 0:
		return
	default:
		lvl = zerolog.InfoLevel
	}
	if s.out != nil && snap.accessCombined {
		if s.level.Sample(lvl) && lvl >= zerolog.GlobalLevel() { // what zerolog asks of s.access
			s.writeCombined(ctx, snap, a)
		}
		return
	}
	e := s.access.WithLevel(lvl)
	if e == nil {
		return
	}
	req := &ctx.Request
	var buf [64]byte
	e.Bytes("client", appendClient(buf[:0], ctx, snap.trusted)).
		Bytes("method", req.Header.Method()).
		Bytes("host", req.Header.Host()).
		Bytes("path", logPath(req.Header.RequestURI())).
		Int("status", a.status)
	if a.g != nil {
		e.Str("group", a.g.Name)
	}
	if a.m != nil {
		e.Str("member", a.m.ID)
	}
	if a.tried != nil {
		e.Str("tried", a.tried.ID).Str("retry_reason", errKindNames[a.retryKind])
	}
	e.Str("affinity", a.outcome.String()).
		Float64("duration_ms", ms(time.Since(a.start))).
		Int64("bytes", a.sent)
	if a.truncated {
		e.Bool("truncated", true)
	}
	if a.err != nil {
		e.Str("error_kind", errKindNames[kindOf(a.err)]).Err(a.err)
	}
	e.Msg("request")
}

// combinedBufs are the buffers combined access lines are built in: the line goes to
// the writer in one Write, from a buffer that outlives the call.
var combinedBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeCombined writes the combined access line of one request to the raw output, in
// one Write, as zerolog writes an event (the output must take concurrent writes, as
// for zerolog). Safe for concurrent use; it does not allocate (TestAllocsLogCombined).
func (s *Server) writeCombined(ctx *fasthttp.RequestCtx, snap *snapshot, a *access) {
	p := combinedBufs.Get().(*[]byte)
	b := appendCombined((*p)[:0], ctx, snap.trusted, a, time.Now())
	s.out.Write(b) //nolint:errcheck // a log line that cannot be written has nowhere to go
	// A line with huge headers does not pin its buffer in the pool.
	if cap(b) <= 64<<10 {
		*p = b
		combinedBufs.Put(p)
	}
}

// appendCombined appends the Apache/nginx combined log line of one request, newline
// included:
//
//	203.0.113.7 - - [01/Dec/2026:11:41:27 +0100] "GET /cart HTTP/1.1" 200 812 "https://app.example/" "Mozilla/5.0"
//
// The client is appendClient's, the time is now in local time, the path is logPath's
// (no query or path parameters: session ids travel there), the bytes are the body
// bytes sent, and an empty Referer or User-Agent is "-". Fields are escaped as nginx
// escapes them (appendLogEscaped). Safe for concurrent use; it reads the request in
// ctx, which must still be there. It does not allocate when b has room
// (TestAllocsAppendCombined), except where appendClient does (behind a trusted proxy).
func appendCombined(b []byte, ctx *fasthttp.RequestCtx, trusted []netip.Prefix, a *access, now time.Time) []byte {
	var client [64]byte
	b = appendLogEscaped(b, appendClient(client[:0], ctx, trusted))
	b = append(b, " - - ["...)
	b = now.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	h := &ctx.Request.Header
	b = appendLogEscaped(b, h.Method())
	b = append(b, ' ')
	b = appendLogEscaped(b, logPath(h.RequestURI()))
	b = append(b, ' ')
	b = appendLogEscaped(b, h.Protocol())
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(a.status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, a.sent, 10)
	b = append(b, " \""...)
	b = appendLogField(b, h.Referer())
	b = append(b, "\" \""...)
	b = appendLogField(b, h.UserAgent())
	return append(b, "\"\n"...)
}

// appendLogField appends v escaped, or "-" when it is empty.
func appendLogField(b, v []byte) []byte {
	if len(v) == 0 {
		return append(b, '-')
	}
	return appendLogEscaped(b, v)
}

// appendLogEscaped appends v with '"', '\', control bytes and bytes past '~' written as
// \xHH, as nginx writes its log variables, so that a field cannot end its quotes or
// the line.
func appendLogEscaped(b, v []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range v {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

// appendClient appends the real client's address: the peer's, or, when the peer is a
// trusted proxy, the rightmost X-Forwarded-For entry that is not itself trusted (the
// gateway wrote the header: the client's values, then the peer).
func appendClient(b []byte, ctx *fasthttp.RequestCtx, trusted []netip.Prefix) []byte {
	peer := remoteIP(ctx.RemoteAddr())
	if !trustedPeer(peer, trusted) {
		return peer.AppendTo(b)
	}
	xff := ctx.Request.Header.PeekBytes(strXForwardedFor)
	for len(xff) > 0 {
		i := bytes.LastIndexByte(xff, ',')
		v := trimOWS(xff[i+1:])
		xff = xff[:max(i, 0)]
		if len(v) == 0 {
			if i < 0 {
				break
			}
			continue // an empty entry ("a,,b") names no one
		}
		ip, err := netip.ParseAddr(string(v)) // allocates: only behind a trusted proxy, when logged
		if err != nil {
			return append(b, v...) // not an address: say what was claimed
		}
		if !trustedPeer(ip.Unmap(), trusted) || i < 0 {
			return ip.AppendTo(b)
		}
	}
	return peer.AppendTo(b)
}

// logPath is the request path without its query and path parameters: session ids
// travel in ";jsessionid=" and in the query, and do not belong in logs.
func logPath(rawURI []byte) []byte {
	p := router.PeekPath(rawURI)
	for i, c := range p {
		if c == ';' {
			return p[:i]
		}
	}
	return p
}

// sentBody wraps a member's streamed response body on its way to the client: it counts
// the bytes, and when fasthttp closes it after writing the response (the handler has
// returned by then, the request is still there), it writes the access line with the
// bytes sent and whether the body was cut short, and tells the member's health if the
// member cut it. Pooled: wrapping costs no allocation.
type sentBody struct {
	mr   *fasthttp.Response // the member's answer, released on close
	r    io.Reader          // its body
	n    int64
	rerr error // the member side's read error, io.EOF aside
	werr error // the client side's write error, when the writer is not fasthttp's (HTTP/2)
	s    *Server
	ctx  *fasthttp.RequestCtx
	snap *snapshot
	a    access
}

var sentBodies = sync.Pool{New: func() any { return new(sentBody) }}

// Read reads the member's body.
func (b *sentBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF {
		b.rerr = err
	}
	return n, err
}

// CloseWithError closes the member's body (fasthttp calls it with the error of writing
// to the client, if any), then logs.
func (b *sentBody) CloseWithError(werr error) error {
	if werr == nil {
		werr = b.werr
	}
	var err error
	if c, ok := b.r.(fasthttp.ReadCloserWithError); ok {
		err = c.CloseWithError(werr) // a failed write discards the member connection
	}
	fasthttp.ReleaseResponse(b.mr) // closes the body stream, if it was not closed above
	resp := &b.ctx.Response
	cl := int64(resp.Header.ContentLength())
	truncated := b.rerr != nil || werr != nil || cl >= 0 && b.n < cl
	if b.rerr != nil {
		f := health.Closed // the member stopped sending mid-body
		if kindOf(b.rerr) == kindMemberTimeout {
			f = health.Timeout
		}
		b.s.health.Observe(b.a.m.State, f)
	}
	b.a.status, b.a.sent, b.a.truncated = resp.StatusCode(), b.n, truncated
	b.s.logAccess(b.ctx, b.snap, &b.a)
	*b = sentBody{}
	sentBodies.Put(b)
	return err
}
