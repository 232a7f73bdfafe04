package gateway

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/health"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// NewLogger builds the process logger from log.level and log.format, writing to w, at
// log.level. A Server built with it keeps a level of its own (see levelSampler), which
// the admin API and reloads change; no zerolog process-wide setting is touched.
func NewLogger(cfg config.Log, w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil || cfg.Level == "" {
		return zerolog.Nop(), fmt.Errorf("gateway: log.level: %q: want debug, info, warn or error", cfg.Level)
	}
	switch cfg.Format {
	case "json", "":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	default:
		return zerolog.Nop(), fmt.Errorf("gateway: log.format: %q: want json or console", cfg.Format)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
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

// logAccess writes the access log line of one request, with typed fields only (no
// Msgf: a disabled Msgf still allocates). Sampling keeps one success in
// log.access_sample; failures are always logged, at warn or error level, with the error.
// sent is the body bytes that went to the client; truncated says the body stopped short
// of what the response announced (the member stalled or closed mid-body, or the client
// went away), which is logged whatever the sampling.
func (s *Server) logAccess(ctx *fasthttp.RequestCtx, snap *snapshot, start time.Time, g *router.Group, m *router.Member, outcome router.Outcome, status int, sent int64, truncated bool, err error) {
	var e *zerolog.Event
	switch {
	case err != nil && status >= 500:
		e = s.access.Error()
	case err != nil, truncated:
		e = s.access.Warn()
	case !snap.accessOn:
		return
	case snap.accessSample > 1 && s.accessN.Add(1)%snap.accessSample != 0:
		return
	default:
		e = s.access.Info()
	}
	if e == nil {
		return
	}
	req := &ctx.Request
	e.Bytes("method", req.Header.Method()).
		Bytes("host", req.Header.Host()).
		Bytes("path", logPath(req.Header.RequestURI())).
		Int("status", status)
	if g != nil {
		e.Str("group", g.Name)
	}
	if m != nil {
		e.Str("member", m.ID)
	}
	e.Str("affinity", outcome.String()).
		Float64("duration", ms(time.Since(start))).
		Int64("bytes", sent)
	if truncated {
		e.Bool("truncated", true)
	}
	if err != nil {
		e.Str("error_kind", errKindNames[kindOf(err)]).Err(err)
	}
	e.Msg("request")
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
	mr      *fasthttp.Response // the member's answer, released on close
	r       io.Reader          // its body
	n       int64
	rerr    error // the member side's read error, io.EOF aside
	s       *Server
	ctx     *fasthttp.RequestCtx
	snap    *snapshot
	start   time.Time
	g       *router.Group
	m       *router.Member
	outcome router.Outcome
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
		b.s.health.Observe(b.m.State, f)
	}
	b.s.logAccess(b.ctx, b.snap, b.start, b.g, b.m, b.outcome, resp.StatusCode(), b.n, truncated, nil)
	*b = sentBody{}
	sentBodies.Put(b)
	return err
}
