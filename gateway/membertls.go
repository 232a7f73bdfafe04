package gateway

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
	"github.com/valyala/fasthttp"
)

// memberTLSKey is everything a member's tls.Config is built from: the group's tls
// settings, the name verified, and a digest of the files. A reload that leaves all
// three alone reuses the config (and with it the member's pool and its active check);
// renewed files make a new one, so new connections use the new certificates.
type memberTLSKey struct {
	settings   config.MemberTLS
	serverName string
	sum        [sha256.Size]byte
}

// memberTLS compiles the tls blocks of cfg's groups: the tls.Config of each member by
// router.Member.Index (nil: plain HTTP), and every config by key for the next build to
// reuse. prev is the previous build's map (nil at start). The files are read again here:
// Validate read them too, but they may have changed since, and a file that no longer
// parses fails the build (a reload is then refused).
func (s *Server) memberTLS(cfg *config.Config, table *router.Table, prev map[memberTLSKey]*tls.Config) ([]*tls.Config, map[memberTLSKey]*tls.Config, error) {
	byMember := make([]*tls.Config, len(table.Members))
	byKey := map[memberTLSKey]*tls.Config{}
	for gi, g := range table.Groups {
		t := cfg.TargetGroups[gi].TLS
		if t == nil {
			continue
		}
		files, err := t.LoadFiles()
		if err != nil {
			return nil, nil, fmt.Errorf("gateway: target_groups[%d].tls.%w", gi, err)
		}
		if t.InsecureSkipVerify {
			s.log.Warn().Str("group", g.Name).
				Msg("tls.insecure_skip_verify: members' certificates are not verified; the connections can be read and changed by anyone on the path")
		}
		for _, m := range g.Members {
			key := memberTLSKey{settings: *t, serverName: t.ServerName, sum: files.Sum}
			if key.serverName == "" {
				if host, _, err := net.SplitHostPort(m.Addr); err == nil {
					key.serverName = host // validated: host:port
				}
			}
			c, ok := byKey[key]
			if !ok {
				if c, ok = prev[key]; !ok {
					c = newMemberTLSConfig(t, files, key.serverName)
				}
				byKey[key] = c
			}
			byMember[m.Index] = c
		}
	}
	return byMember, byKey, nil
}

// newMemberTLSConfig is the client side of a member's TLS: TLS 1.2 or later, the
// group's roots (nil: the system's), the name verified, and a client certificate when
// one is configured. The certificate is sent whenever the member asks for one, whatever
// CAs its request lists (as nginx's proxy_ssl_certificate): a mismatch is then the
// member's clear refusal, not a handshake that silently went without. Sessions are
// resumed, so that a new pooled connection after an idle spell costs one round trip
// less.
func newMemberTLSConfig(t *config.MemberTLS, files config.MemberTLSFiles, serverName string) *tls.Config {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            files.Roots,
		ServerName:         serverName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // the user's explicit choice, warned about at build
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
	}
	if cert := files.Cert; cert != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return c
}

// errMemberTLS marks a TLS handshake with a member that failed or did not finish in
// client.dial_timeout. kindOf makes it a connect failure of that member (502, retried
// elsewhere, counted against its passive health): no request was sent on it, and a
// member whose certificate does not verify can serve none.
var errMemberTLS = errors.New("gateway: TLS handshake with member failed")

// memberTLSError is a failed handshake with one member: it names the member and keeps
// the cause (an x509 error for a certificate that does not verify), for the log.
type memberTLSError struct {
	member, addr, serverName string
	err                      error
}

func (e *memberTLSError) Error() string {
	return "gateway: TLS handshake with member " + e.member + " (" + e.addr + ", server name " +
		strconv.Quote(e.serverName) + "): " + e.err.Error()
}

// Unwrap lets errors.Is find errMemberTLS and errors.As the cause (x509, tls alerts).
func (e *memberTLSError) Unwrap() []error { return []error{errMemberTLS, e.err} }

// memberDialer dials one member for its HostClient: a TCP connection wrapped in a
// memberConn and, for a TLS group, the handshake over it. The handshake happens here
// rather than in fasthttp (which would bound it by client.write_timeout and leave its
// errors unnamed): client.dial_timeout bounds it, as nginx's proxy_connect_timeout
// bounds the handshake with an upstream, and a failure is a memberTLSError. fasthttp
// takes a connection that has a Handshake method as TLS already, and the memberConn
// stays under the TLS layer, so its idle check and held writes work on the records. A
// member that sends records unasked while a connection sits idle (a late session ticket,
// a close_notify) makes it stale, as any unasked byte does: it is replaced, never read
// as an answer.
type memberDialer struct {
	member  *router.Member
	group   string
	timeout time.Duration // client.dial_timeout
	wait    time.Duration // client.read_timeout, kept by memberConn
	write   time.Duration // client.write_timeout, kept by memberConn
	clock   *ticker
	set     *connSet
	tls     *tls.Config // nil: plain HTTP
	log     zerolog.Logger
	failing atomic.Bool // a run of failed handshakes has been logged
}

// dial is the HostClient's Dial.
func (d *memberDialer) dial(addr string) (net.Conn, error) {
	c, err := fasthttp.DialTimeout(addr, d.timeout)
	if err != nil {
		return nil, err
	}
	mc := newMemberConn(c, d.clock, d.wait, d.write, d.set)
	if _, ok := mc.(*memberConn); !ok {
		// The HostClient sets no deadline: the memberConn keeps the timeouts.
		c.Close()
		return nil, errNotTCP
	}
	if d.tls == nil {
		return mc, nil
	}
	tc, err := memberHandshake(mc, d.tls, d.timeout, d.member.ID, addr)
	if err != nil {
		// Once per run of failures: every request to the member fails the same way until
		// it is fixed, and each has its own access line with the error.
		if d.failing.CompareAndSwap(false, true) {
			d.log.Error().Str("group", d.group).Str("member", d.member.ID).Str("addr", addr).
				Str("server_name", d.tls.ServerName).Err(err).Msg("member TLS handshake failed")
		}
		return nil, err
	}
	if d.failing.Load() {
		d.failing.Store(false)
		d.log.Info().Str("group", d.group).Str("member", d.member.ID).Msg("member TLS handshake succeeded again")
	}
	return tc, nil
}

// errNotTCP is the dial error of a member connection that is no TCP connection, which
// fasthttp's dialer never returns.
var errNotTCP = errors.New("gateway: member connection is not TCP")

// memberHandshake runs the TLS handshake of a new member connection c within timeout
// (client.dial_timeout); on failure it closes c and says which member failed and why.
func memberHandshake(c net.Conn, conf *tls.Config, timeout time.Duration, member, addr string) (*tls.Conn, error) {
	tc := tls.Client(c, conf)
	err := tc.SetDeadline(time.Now().Add(timeout))
	if err == nil {
		err = tc.Handshake()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("no handshake within client.dial_timeout (%s): %w", timeout, err)
		}
	}
	if err == nil {
		err = tc.SetDeadline(time.Time{})
	}
	if err != nil {
		c.Close()
		return nil, &memberTLSError{member: member, addr: addr, serverName: conf.ServerName, err: err}
	}
	return tc, nil
}

// memberScheme makes u's scheme the member's: fasthttp's HostClient refuses a request
// whose scheme is not its own (https for a TLS member, http otherwise), and the
// client's connection, plain or TLS, says nothing about the member's. It does not
// allocate once u has held a scheme.
func memberScheme(u *fasthttp.URI, isTLS bool) {
	if (string(u.Scheme()) == "https") == isTLS {
		return
	}
	if isTLS {
		u.SetSchemeBytes(strHTTPSScheme)
	} else {
		u.SetSchemeBytes(strHTTP)
	}
}
