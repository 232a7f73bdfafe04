package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sessiongate/sessiongate/router"
)

// Validate checks the whole config before anything is built from it and reports every
// problem at once (errors.Join), one per line, each naming the field path as YAML keys,
// the value and the reason:
//
//	config: target_groups[1].members[0].address: "10.1.1.12:70000": port out of range 1-65535
//
// Validate never changes c: defaults are filled in by Default and Parse, and
// a bad value is rejected, never replaced.
func (c *Config) Validate() error {
	problems := c.validate()
	if len(problems) == 0 {
		return nil
	}
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// checker collects validation problems.
type checker struct {
	problems []*configError
}

// add records a problem; value is already formatted (quoted, or [] for an empty list).
func (k *checker) add(path, value, reason string) {
	k.problems = append(k.problems, &configError{path: path, detail: value + ": " + reason})
}

func (k *checker) str(path, value, reason string) {
	k.add(path, strconv.Quote(value), reason)
}

func (k *checker) oneOf(path, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	k.str(path, value, "want one of "+strings.Join(allowed, ", "))
}

func (k *checker) intRange(path string, v, lo, hi int64) {
	if v < lo || v > hi {
		k.str(path, strconv.FormatInt(v, 10), fmt.Sprintf("out of range %d-%d", lo, hi))
	}
}

func (k *checker) positive(path string, d time.Duration) {
	if d <= 0 {
		k.str(path, d.String(), "must be greater than 0")
	}
}

func (k *checker) durRange(path string, d, lo, hi time.Duration, rng string) {
	if d < lo || d > hi {
		k.str(path, d.String(), "out of range "+rng)
	}
}

func (c *Config) validate() []*configError {
	var k checker
	if c.Admin.Listen != "" {
		if reason := hostPortReason(c.Admin.Listen, 0, true); reason != "" {
			k.str("admin.listen", c.Admin.Listen, reason)
		}
	}

	k.durRange("shutdown_timeout", c.ShutdownTimeout, 0, time.Hour, "0-1h")
	k.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	k.oneOf("log.format", c.Log.Format, "json", "console")
	k.intRange("log.access_sample", int64(c.Log.AccessSample), 1, 1000000)
	k.oneOf("log.access_format", c.Log.AccessFormat, "json", "combined")

	s := &c.Server
	k.positive("server.read_timeout", s.ReadTimeout)
	k.positive("server.write_timeout", s.WriteTimeout)
	k.positive("server.idle_timeout", s.IdleTimeout)
	k.intRange("server.max_header_bytes", int64(s.MaxHeaderBytes), 1024, 1048576)
	k.intRange("server.max_body_bytes", s.MaxBodyBytes, 0, 1<<40)
	// A threshold above max_body_bytes is harmless: no accepted body reaches it.
	k.intRange("server.buffer_body_bytes", int64(s.BufferBodyBytes), 4096, 1<<30)
	if s.MaxConns < 0 {
		k.str("server.max_conns", strconv.Itoa(s.MaxConns), "must not be negative")
	}
	k.intRange("server.max_conns_per_ip", int64(s.MaxConnsPerIP), 0, 1000000)
	k.durRange("server.header_timeout", s.HeaderTimeout, 100*time.Millisecond, time.Hour, "100ms-1h")
	k.oneOf("server.path_normalization", s.PathNormalization, PathReject, PathForward)
	k.durRange("server.tunnel_idle_timeout", s.TunnelIdleTimeout, time.Second, 168*time.Hour, "1s-168h")
	if strings.ContainsAny(s.ServerHeader, "\r\n\x00") {
		k.str("server.server_header", s.ServerHeader, "must not hold CR, LF or NUL")
	}
	for i, p := range c.Forwarded.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			k.str(fmt.Sprintf("forwarded.trusted_proxies[%d]", i), p, "want a CIDR (10.0.0.0/8) or an IP address")
		}
	}
	for i, h := range c.Admin.Hosts {
		if reason := hostReason(h); reason != "" || strings.HasPrefix(h, "*") {
			if reason == "" {
				reason = "must be an exact name"
			}
			k.str(fmt.Sprintf("admin.hosts[%d]", i), h, reason)
		}
	}

	cl := &c.Client
	k.positive("client.dial_timeout", cl.DialTimeout)
	k.positive("client.read_timeout", cl.ReadTimeout)
	k.positive("client.write_timeout", cl.WriteTimeout)
	k.positive("client.idle_timeout", cl.IdleTimeout)
	if cl.MaxConns < 0 {
		k.str("client.max_conns", strconv.Itoa(cl.MaxConns), "must not be negative")
	}

	r := &c.Retry
	k.intRange("retry.max_retries", int64(r.MaxRetries), 0, 3)
	k.intRange("retry.retry_buffer", int64(r.RetryBuffer), 0, 1<<30)
	if r.TryTimeout < 0 || r.TryTimeout > c.Client.ReadTimeout {
		k.str("retry.try_timeout", r.TryTimeout.String(), "out of range 0 up to client.read_timeout ("+c.Client.ReadTimeout.String()+")")
	}
	if c.Admin.Token != "" && c.Admin.TokenFile != "" {
		k.str("admin.token_file", c.Admin.TokenFile, "set token or token_file, not both")
	}
	k.durRange("session.bound_window", c.Session.BoundWindow, time.Second, time.Hour, "1s-1h")

	c.Session.validate(&k)
	validateListeners(&k, c)
	validateGroups(&k, c.TargetGroups)
	return k.problems
}

func (s *Session) validate(k *checker) {
	for i, name := range s.Cookies {
		path := fmt.Sprintf("session.cookies[%d]", i)
		if name == "" {
			k.str(path, name, "must not be empty")
			continue
		}
		if reason := tokenReason(name, "", "a cookie name"); reason != "" {
			k.str(path, name, reason)
			continue
		}
		for j := range i {
			if s.Cookies[j] == name {
				k.str(path, name, fmt.Sprintf("duplicate of session.cookies[%d]", j))
				break
			}
		}
	}
	if len(s.Cookies) == 0 && s.URLParam == "" && s.Query == "" && s.Header == "" {
		k.add("session.cookies", "[]", "no session key source: set cookies, url_param, query or header")
	}
	if s.URLParam != "" {
		if reason := tokenReason(s.URLParam, urlNameExcluded, "a URL parameter name"); reason != "" {
			k.str("session.url_param", s.URLParam, reason)
		}
	}
	if s.Query != "" {
		if reason := tokenReason(s.Query, urlNameExcluded, "a query parameter name"); reason != "" {
			k.str("session.query", s.Query, reason)
		}
	}
	if s.Header != "" {
		if reason := tokenReason(s.Header, "", "a header name"); reason != "" {
			k.str("session.header", s.Header, reason)
		}
	}

	cookieOn := false
	for _, a := range s.Affinity {
		if r, ok := router.ParseResolver(a); ok && r == router.ResolveCookie {
			cookieOn = true
		}
	}
	s.Cookie.validate(k, cookieOn)
	if len(s.Affinity) == 0 {
		k.add("session.affinity", "[]", "must list at least one of "+strings.Join(router.ResolverNames(), ", "))
	}
	for i, a := range s.Affinity {
		path := fmt.Sprintf("session.affinity[%d]", i)
		r, ok := router.ParseResolver(a)
		if !ok {
			k.oneOf(path, a, router.ResolverNames()...)
			continue
		}
		if r == router.ResolveTLS && i == len(s.Affinity)-1 {
			k.str(path, a, "tls must be followed by the resolvers of TLS session keys (learned, hash)")
		}
		for j := range i {
			if s.Affinity[j] == a {
				k.str(path, a, fmt.Sprintf("duplicate of session.affinity[%d]", j))
				break
			}
		}
	}
	k.oneOf("session.route_format", s.RouteFormat, router.FormatNames()...)
	k.oneOf("session.balance", s.Balance, router.BalanceNames()...)
	k.intRange("session.learned.max_sessions", int64(s.Learned.MaxSessions), 1, 1<<31)
	k.durRange("session.learned.ttl", s.Learned.TTL, time.Second, 720*time.Hour, "1s-720h")
	validateShared(k, &s.Shared)
}

// routeKey is a (host, path prefix) pair that two groups must not share. host is
// lower-case; "" stands for a group without hosts, which answers any host.
type routeKey struct {
	host, prefix string
}

func validateGroups(k *checker, groups []Group) {
	if len(groups) == 0 {
		k.add("target_groups", "[]", "at least one target group is required")
		return
	}
	names := make(map[string]int, len(groups))
	routes := make(map[routeKey]int)
	memberIDs := make(map[string]string)
	for i := range groups {
		g := &groups[i]
		gp := fmt.Sprintf("target_groups[%d]", i)

		if g.Name == "" {
			k.str(gp+".name", g.Name, "must not be empty")
		} else if j, ok := names[g.Name]; ok {
			k.str(gp+".name", g.Name, fmt.Sprintf("duplicate, already used by target_groups[%d]", j))
		} else {
			names[g.Name] = i
		}

		hosts := make(map[string]int, len(g.Hosts))
		for j, h := range g.Hosts {
			hp := fmt.Sprintf("%s.hosts[%d]", gp, j)
			if reason := hostReason(h); reason != "" {
				k.str(hp, h, reason)
				continue
			}
			lh := strings.ToLower(h)
			if x, ok := hosts[lh]; ok {
				k.str(hp, h, fmt.Sprintf("duplicate of %s.hosts[%d]", gp, x))
				continue
			}
			hosts[lh] = j
		}

		if reason := pathPrefixReason(g.PathPrefix); reason != "" {
			k.str(gp+".path_prefix", g.PathPrefix, reason)
		}
		prefix := g.PathPrefix
		if len(prefix) > 1 {
			prefix = strings.TrimSuffix(prefix, "/")
		}
		keys := []string{""}
		if len(g.Hosts) > 0 {
			keys = make([]string, 0, len(g.Hosts))
			for _, h := range g.Hosts {
				keys = append(keys, strings.ToLower(h))
			}
		}
		reported := map[int]bool{}
		for _, h := range keys {
			rk := routeKey{host: h, prefix: prefix}
			j, ok := routes[rk]
			if !ok {
				routes[rk] = i
				continue
			}
			if j == i || reported[j] {
				continue
			}
			reported[j] = true
			what := "any host"
			if h != "" {
				what = "host " + strconv.Quote(h)
			}
			k.str(gp+".path_prefix", g.PathPrefix, fmt.Sprintf(
				"overlaps target_groups[%d] (%q): both match %s with path prefix %q",
				j, groups[j].Name, what, prefix))
		}

		validateHealthCheck(k, gp+".health_check", &g.HealthCheck)
		if g.TLS != nil {
			validateTLS(k, gp+".tls", g.TLS)
		}

		if len(g.Members) == 0 {
			k.add(gp+".members", "[]", "at least one member is required")
		}
		routeIDs := make(map[string]int, len(g.Members))
		for j := range g.Members {
			m := &g.Members[j]
			mp := fmt.Sprintf("%s.members[%d]", gp, j)
			if m.ID == "" {
				k.str(mp+".id", m.ID, "must not be empty")
			} else if other, ok := memberIDs[m.ID]; ok {
				k.str(mp+".id", m.ID, "duplicate, already used by "+other)
			} else {
				memberIDs[m.ID] = mp
			}
			if reason := hostPortReason(m.Address, 1, false); reason != "" {
				k.str(mp+".address", m.Address, reason)
			}
			if reason := routeReason(m.Route); reason != "" {
				if m.Route != "" && m.Route == m.ID {
					reason += " (route defaults to the member id; set route)"
				}
				k.str(mp+".route", m.Route, reason)
			} else if x, ok := routeIDs[m.Route]; ok {
				k.str(mp+".route", m.Route, fmt.Sprintf("duplicate in the group, already used by %s.members[%d]", gp, x))
			} else {
				routeIDs[m.Route] = j
			}
			k.intRange(mp+".weight", int64(m.Weight), 1, 1000)
			k.oneOf(mp+".state", m.State, router.AdminNames()...)
		}
		pp := gp + ".passive"
		k.intRange(pp+".consecutive_failures", int64(g.Passive.ConsecutiveFailures), 0, 1000)
		k.durRange(pp+".ejection", g.Passive.Ejection, time.Second, time.Hour, "1s-1h")
		if g.Passive.MaxEjection < g.Passive.Ejection || g.Passive.MaxEjection > 24*time.Hour {
			k.str(pp+".max_ejection", g.Passive.MaxEjection.String(), fmt.Sprintf("out of range %s (ejection)-24h", g.Passive.Ejection))
		}
		k.durRange(gp+".drain_timeout", g.DrainTimeout, time.Second, 168*time.Hour, "1s-168h")
		if g.Strict && g.SwitchBack {
			k.str(gp+".switch_back", "true", "a strict group never moves sessions, so there is nothing to switch back")
		}
	}
}

func validateHealthCheck(k *checker, path string, h *HealthCheck) {
	if h.Path != "" {
		if !strings.HasPrefix(h.Path, "/") {
			k.str(path+".path", h.Path, `must start with "/" (or be "" to turn active checks off)`)
		} else if i := strings.IndexFunc(h.Path, isSpaceOrControl); i >= 0 {
			k.str(path+".path", h.Path, "must not contain spaces or control characters")
		}
	}
	k.durRange(path+".interval", h.Interval, 100*time.Millisecond, time.Hour, "100ms-1h")
	if h.Timeout <= 0 {
		k.str(path+".timeout", h.Timeout.String(), "must be greater than 0")
	} else if h.Timeout >= h.Interval {
		k.str(path+".timeout", h.Timeout.String(), fmt.Sprintf("must be below interval (%s)", h.Interval))
	}
	k.intRange(path+".healthy_threshold", int64(h.HealthyThreshold), 1, 100)
	k.intRange(path+".unhealthy_threshold", int64(h.UnhealthyThreshold), 1, 100)
	k.durRange(path+".unhealthy_interval", h.UnhealthyInterval, 100*time.Millisecond, time.Hour, "100ms-1h")
	if _, _, ok := ParseStatusRange(h.ExpectedStatus); !ok {
		k.str(path+".expected_status", h.ExpectedStatus, `want "lo-hi" or one code, within 100-599`)
	}
	if h.Host != "" && strings.IndexFunc(h.Host, isSpaceOrControl) >= 0 {
		k.str(path+".host", h.Host, "must not contain spaces or control characters")
	}
	if h.Jitter < 0 || h.Interval > 0 && h.Jitter > h.Interval {
		k.str(path+".jitter", h.Jitter.String(), fmt.Sprintf("out of range 0-%s (interval)", h.Interval))
	}
	k.oneOf(path+".start", h.Start, router.StartNames()...)
}

// validateTLS checks a group's tls block, its files included: each must exist and
// parse (LoadFiles), so that a reload with a broken certificate is refused whole.
func validateTLS(k *checker, path string, t *MemberTLS) {
	if t.ServerName != "" {
		if _, err := netip.ParseAddr(t.ServerName); err != nil {
			if reason := hostReason(t.ServerName); reason != "" || strings.HasPrefix(t.ServerName, "[") || strings.Contains(t.ServerName, "*") {
				if reason == "" {
					reason = "want a host name or an IP address (IPv6 without brackets), without wildcards"
				}
				k.str(path+".server_name", t.ServerName, reason)
			}
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		k.str(path+".key_file", t.KeyFile, "must be set with cert_file")
	case t.CertFile == "" && t.KeyFile != "":
		k.str(path+".cert_file", t.CertFile, "must be set with key_file")
	}
	if _, err := t.LoadFiles(); err != nil {
		var fe *TLSFileError
		if errors.As(err, &fe) {
			k.str(path+"."+fe.Key, fe.File, fe.reason())
		} else {
			k.add(path, "{...}", err.Error())
		}
	}
}

// ParseStatusRange reads "lo-hi" or a single code, within 100-599.
func ParseStatusRange(s string) (lo, hi int, ok bool) {
	a, b, found := strings.Cut(s, "-")
	if !found {
		b = a
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, false
	}
	return lo, hi, true
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}

// urlNameExcluded are token characters that mean something else in a URL.
const urlNameExcluded = "#%&+"

// tokenReason says why s is not an HTTP token (RFC 9110 tchar: letters, digits and
// !#$%&'*+-.^_`|~) without the characters in excluded, or "" if it is one.
func tokenReason(s, excluded, what string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isTokenChar(c) || strings.IndexByte(excluded, c) >= 0 {
			return fmt.Sprintf("contains %q, which is not allowed in %s", s[i:i+1], what)
		}
	}
	return ""
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// hostPortReason says why s is not host:port with a numeric port from minPort to
// 65535, or returns "". An empty host (":8080", all interfaces) is allowed only for
// listeners.
func hostPortReason(s string, minPort int, emptyHost bool) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "want host:port, such as 127.0.0.1:8080"
	}
	if host == "" && !emptyHost {
		return "host must not be empty"
	}
	if strings.IndexFunc(host, isSpaceOrControl) >= 0 || strings.ContainsAny(host, "/[]") {
		return "want host:port, such as 127.0.0.1:8080"
	}
	if port == "" || strings.Trim(port, "0123456789") != "" {
		return "port must be a number"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < minPort || n > 65535 {
		return fmt.Sprintf("port out of range %d-65535", minPort)
	}
	return ""
}

// hostReason says why h is not a Host value a group can answer, or returns "".
func hostReason(h string) string {
	if h == "" {
		return "must not be empty"
	}
	if h[0] == '[' {
		if a, err := netip.ParseAddr(strings.TrimSuffix(h[1:], "]")); err == nil &&
			strings.HasSuffix(h, "]") && a.Is6() && a.Zone() == "" {
			return ""
		}
		return "want a host name, an IPv4 address or a bracketed IPv6 address such as [::1]"
	}
	name := strings.TrimPrefix(h, "*.")
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_':
		case c == ':':
			return "must not include a port (ports are ignored when matching)"
		case c == '/':
			return "want a host name, not a URL or a path"
		case c == '*':
			return `a wildcard is allowed only as a leading "*." followed by a domain, as in *.example.com`
		case c <= ' ' || c == 0x7f:
			return "must not contain spaces or control characters"
		case c >= 0x80:
			return "must be ASCII (write an internationalized name in its xn-- form)"
		default:
			return fmt.Sprintf("contains %q, which is not allowed in a host name", name[i:i+1])
		}
	}
	if name == "" && h != "" {
		return `a wildcard must be followed by at least one label, as in *.example.com`
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return "has an empty label (leading, trailing or doubled dot)"
		}
	}
	return ""
}

// pathPrefixReason says why p cannot be a group's path prefix, or returns "".
func pathPrefixReason(p string) string {
	if !strings.HasPrefix(p, "/") {
		return `must start with "/"`
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '?', c == ';', c == '#':
			return fmt.Sprintf("must not contain %q (the prefix is matched against the path alone)", p[i:i+1])
		case c <= ' ' || c == 0x7f:
			return "must not contain spaces or control characters"
		}
	}
	return ""
}

// routeReason says why r cannot be a member route, or returns "". A route is written
// into session ids and cookie values, so it excludes the characters that separate
// routes there and those a cookie value cannot carry.
func routeReason(r string) string {
	if r == "" {
		return "must not be empty"
	}
	for i := 0; i < len(r); i++ {
		switch c := r[i]; {
		case c == ':', c == '+', c == '.', c == ';', c == '/':
			return fmt.Sprintf("must not contain %q, which separates routes in session ids", r[i:i+1])
		case c <= ' ' || c == 0x7f:
			return "must not contain spaces or control characters"
		case c >= 0x80, c == '"', c == ',', c == '\\':
			return fmt.Sprintf("must not contain %q, which a cookie value cannot carry", r[i:i+1])
		}
	}
	return ""
}

// The server.path_normalization values.
const (
	PathReject  = "reject"
	PathForward = "forward"
)

// ParsePrefix reads a CIDR ("10.0.0.0/8") or a single address ("192.0.2.7", which is
// /32 or /128), as forwarded.trusted_proxies holds them.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("config: %q: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("config: %q: %w", s, err)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
