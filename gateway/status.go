package gateway

import (
	"bytes"
	"crypto/rand"
	_ "embed"
	"fmt"
	"html/template"
	"strings"

	"github.com/sessiongate/sessiongate/router"
	"time"

	"github.com/valyala/fasthttp"
)

// The status page, GET /status on the admin listener, is one self-contained HTML
// document: inline CSS and JS, no external assets, no build step. The server renders
// it once from the same GroupsStatus that GET /api/groups returns, so it reads without
// JavaScript; the script then polls /api/groups every statusInterval, computes request
// and error rates from successive polls, and updates the page in place. With the admin
// token typed into the page (kept in sessionStorage, sent only in the Authorization
// header of the state POST) each member row offers Drain, Ready and Maint, each but
// Ready behind a confirmation.
//
// GET /api/series answers the sampler's last five minutes as JSON (SeriesStatus,
// series.go), from which the script draws inline SVG sparklines: gateway requests/s,
// errors/s, p99 and moves per minute, and per member requests/s, failures/s and p99.
// It lives under /status because the admin routes are dispatched in admin.go; it
// inherits the Host check there and, like every read, needs no token.

//go:embed status.html
var statusHTML string

// statusInterval is how often the page refreshes itself.
const statusInterval = 2 * time.Second

// statusTemplate is parsed once; a template that does not parse is a programmer error
// that every test of this package reports.
var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"clock":       func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"ratio":       statusRatio,
	"share":       statusShare,
	"groupMeta":   statusGroupMeta,
	"stateClass":  statusStateClass,
	"stateNote":   statusStateNote,
	"checkResult": statusCheckResult,
	"truncate":    statusTruncate,
	"join":        strings.Join,
	"expiry":      statusExpiry,
}).Parse(statusHTML))

// statusData is what the template renders.
type statusData struct {
	Status     GroupsStatus
	Now        time.Time
	Nonce      string // CSP nonce of the inline style and script
	Mutable    bool   // an admin token is configured, so state changes can succeed
	IntervalMS int64
	// SeriesLen is how many samples the charts span; SeriesMinutes says it in minutes.
	SeriesLen     int
	SeriesMinutes int
	CheckMax      int // the length past which a last-check result is truncated
}

// statusCSP allows only the page's own inline style and script (by nonce) and
// requests to its own origin, so nothing injected could load code or send the
// token elsewhere.
const statusCSP = "default-src 'none'; script-src 'nonce-%[1]s'; style-src 'nonce-%[1]s'; " +
	"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *Server) handleStatus(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		adminError(ctx, fasthttp.StatusMethodNotAllowed, "use GET")
		return
	}
	d := statusData{
		Status:     s.groupsStatus(),
		Now:        time.Now(),
		Nonce:      rand.Text(),
		Mutable:    s.token != "",
		IntervalMS: statusInterval.Milliseconds(),

		SeriesLen:     seriesLen,
		SeriesMinutes: int(seriesLen * seriesInterval / time.Minute),
		CheckMax:      statusCheckMax,
	}
	var buf bytes.Buffer
	if err := statusTemplate.Execute(&buf, d); err != nil {
		s.log.Error().Err(err).Msg("admin: rendering the status page failed")
		adminError(ctx, fasthttp.StatusInternalServerError, "rendering failed")
		return
	}
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", fmt.Sprintf(statusCSP, d.Nonce))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetBody(buf.Bytes())
}

// statusRatio is hits / (hits + misses) as a percentage, "–" before any lookup.
func statusRatio(hits, misses uint64) string {
	if hits+misses == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(hits)/float64(hits+misses))
}

// statusShare is v with its share of the sum of all values, as the script shows it.
func statusShare(v uint64, all map[string]uint64) string {
	var total uint64
	for _, n := range all {
		total += n
	}
	if total == 0 {
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("%d (%.0f %%)", v, 100*float64(v)/float64(total))
}

// statusGroupMeta is the line beside a group's name: what it matches and its flags.
func statusGroupMeta(g GroupStatus) string {
	hosts := "any host"
	if len(g.Hosts) > 0 {
		hosts = strings.Join(g.Hosts, ", ")
	}
	prefix := g.PathPrefix
	if prefix == "" {
		prefix = "/"
	}
	parts := []string{hosts + " " + prefix}
	if g.Strict {
		parts = append(parts, "strict")
	}
	if g.SwitchBack {
		parts = append(parts, "switch_back")
	}
	return strings.Join(parts, " · ")
}

// statusStateClass is the badge colour of an administrative state.
func statusStateClass(m MemberStatus) string {
	switch m.State {
	case router.AdminReady.String():
		return "ok"
	case router.AdminDrain.String():
		return "warn"
	default:
		return "info"
	}
}

// statusStateNote is the small print under a draining member's state.
func statusStateNote(m MemberStatus) string {
	var parts []string
	if m.DrainSince != nil {
		parts = append(parts, "since "+m.DrainSince.UTC().Format("15:04:05")+" UTC")
	}
	if m.DrainExpired {
		parts = append(parts, "drain_timeout passed")
	}
	return strings.Join(parts, ", ")
}

// statusCheckMax is how many characters of a last-check result the member table
// shows; the page gives the whole text on hover. The script uses the same limit.
const statusCheckMax = 48

// statusTruncate cuts text to statusCheckMax characters, the last one an ellipsis.
func statusTruncate(text string) string {
	r := []rune(text)
	if len(r) <= statusCheckMax {
		return text
	}
	return string(r[:statusCheckMax-1]) + "…"
}

// statusCheckResult is the outcome of an active check: "ok 200", "fail: <reason>".
func statusCheckResult(c *CheckStatus) string {
	r := "fail"
	if c.OK {
		r = "ok"
	}
	if c.Status != 0 {
		r += fmt.Sprintf(" %d", c.Status)
	}
	if c.Reason != "" {
		r += ": " + c.Reason
	}
	return r
}

// statusExpiry says how long a certificate has left: "expired", "5 h", "12 days".
func statusExpiry(seconds int64) string {
	switch {
	case seconds <= 0:
		return "expired"
	case seconds < 2*86400:
		return fmt.Sprintf("%d h left", seconds/3600)
	}
	return fmt.Sprintf("%d days left", seconds/86400)
}
