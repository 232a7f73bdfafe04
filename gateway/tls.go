package gateway

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sessiongate/sessiongate/config"
)

// tlsListener is the TLS of one listener. Its settings and certificates (tlsState) are
// built from the config and swapped whole on reload or when a file changes; outer is
// the Config every handshake starts from, which stays for the life of the listener:
// it hands each handshake the current state (GetConfigForClient) and owns the
// session ticket keys, so that tickets outlive reloads.
type tlsListener struct {
	s     *Server
	index int // in cfg.ClientListeners()
	outer *tls.Config
	state atomic.Pointer[tlsState]
	// affinity: the tls resolver is in the chain; handshakes carry an affinity id in
	// their session tickets (tlsSession).
	affinity atomic.Bool
	http2    bool
	errors   atomic.Uint64 // failed handshakes
	pending  atomic.Int64  // handshakes under way
	// seen are the stamps of the files when they were last tried: a change that
	// does not load is tried (and logged) once, then again at their next change.
	seen atomic.Pointer[[]fileStamp]
}

// tlsState is a listener's TLS as configured: the handshake Config and what the status
// page and metrics show of its certificates.
type tlsState struct {
	conf  *tls.Config
	certs *certStore
	hsts  []byte // the Strict-Transport-Security value; nil: none
	files []fileStamp
	cfg   config.ListenerTLS
}

// certInfo describes one loaded certificate for the status page and metrics.
type certInfo struct {
	File     string
	Names    []string
	NotAfter time.Time
}

// certStore chooses a certificate by SNI: an exact name, then a one-label wildcard,
// then a certificate whose IP address is the one the client connected to (clients send
// no SNI for IP literals), then the default (the first configured).
type certStore struct {
	def   *tls.Certificate
	exact map[string][]*tls.Certificate
	wild  map[string][]*tls.Certificate // "*.example.com" under "example.com"
	ips   map[string][]*tls.Certificate
	infos []certInfo
}

func newCertStore(certs []*tls.Certificate, files []string) *certStore {
	st := &certStore{exact: map[string][]*tls.Certificate{}, wild: map[string][]*tls.Certificate{}, ips: map[string][]*tls.Certificate{}}
	for i, c := range certs {
		if i == 0 {
			st.def = c
		}
		leaf := c.Leaf
		names := append([]string(nil), leaf.DNSNames...)
		if len(names) == 0 && leaf.Subject.CommonName != "" && len(leaf.IPAddresses) == 0 {
			names = append(names, leaf.Subject.CommonName) // a legacy certificate
		}
		for _, n := range names {
			n = normalizeName(n)
			if parent, ok := strings.CutPrefix(n, "*."); ok {
				st.wild[parent] = append(st.wild[parent], c)
			} else {
				st.exact[n] = append(st.exact[n], c)
			}
		}
		for _, ip := range leaf.IPAddresses {
			st.ips[ip.String()] = append(st.ips[ip.String()], c)
			names = append(names, ip.String())
		}
		st.infos = append(st.infos, certInfo{File: files[i], Names: names, NotAfter: leaf.NotAfter})
	}
	return st
}

// normalizeName lower-cases a host name and drops a trailing dot.
func normalizeName(n string) string {
	return strings.TrimSuffix(strings.ToLower(n), ".")
}

// lookup returns the certificates for an SNI name ("" when the client sent none) and
// the local address of the connection; nil when only the default fits.
func (st *certStore) lookup(name, local string) []*tls.Certificate {
	if name != "" {
		name = normalizeName(name)
		if cs, ok := st.exact[name]; ok {
			return cs
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if cs, ok := st.wild[name[i+1:]]; ok {
				return cs
			}
		}
		return nil
	}
	if cs, ok := st.ips[local]; ok {
		return cs
	}
	return nil
}

// get is the handshake's GetCertificate: among the certificates for the name, the first
// the client supports (an ECDSA and an RSA one may serve the same names).
func (st *certStore) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	local := ""
	if hello.ServerName == "" && hello.Conn != nil {
		if a, ok := hello.Conn.LocalAddr().(*net.TCPAddr); ok {
			local = a.IP.String()
		}
	}
	cs := st.lookup(hello.ServerName, local)
	if len(cs) == 1 {
		return cs[0], nil
	}
	for _, c := range cs {
		if hello.SupportsCertificate(c) == nil {
			return c, nil
		}
	}
	if len(cs) > 0 {
		return cs[0], nil
	}
	return st.def, nil
}

// tls12Ciphers are the TLS 1.2 suites offered: ECDHE key exchange and AEAD only (TLS
// 1.3 suites are not configurable, and all of them are AEAD).
var tls12Ciphers = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// loadTLSState loads a listener's certificates, client CAs and ticket keys. The error
// names the field path (listeners[i].tls...) and the file.
func loadTLSState(path string, t config.ListenerTLS, http2 bool) (*tlsState, [][32]byte, error) {
	var certs []*tls.Certificate
	var files []string
	var stamps []fileStamp
	for i, c := range t.Certificates {
		cert, err := config.LoadCertificate(c)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.certificates[%d].cert_file: %q: %w", path, i, c.CertFile, err)
		}
		certs = append(certs, cert)
		files = append(files, c.CertFile)
		stamps = append(stamps, stampOf(c.CertFile), stampOf(c.KeyFile))
	}
	if len(certs) == 0 {
		return nil, nil, fmt.Errorf("%s.certificates: no certificate", path)
	}
	store := newCertStore(certs, files)
	conf := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   tls12Ciphers,
		GetCertificate: store.get,
		NextProtos:     []string{"http/1.1"},
	}
	if t.MinVersion == config.TLS13 {
		conf.MinVersion = tls.VersionTLS13
	}
	if http2 {
		conf.NextProtos = []string{"h2", "http/1.1"}
	}
	if t.ClientCAFile != "" {
		pool, err := config.LoadCertPool(t.ClientCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.client_ca_file: %q: %w", path, t.ClientCAFile, err)
		}
		conf.ClientCAs = pool
		stamps = append(stamps, stampOf(t.ClientCAFile))
	}
	switch t.ClientAuth {
	case config.ClientAuthRequest:
		conf.ClientAuth = tls.VerifyClientCertIfGiven
	case config.ClientAuthRequire:
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	var keys [][32]byte
	if t.TicketKeysFile != "" {
		var err error
		if keys, err = config.LoadTicketKeys(t.TicketKeysFile); err != nil {
			return nil, nil, fmt.Errorf("%s.ticket_keys_file: %q: %w", path, t.TicketKeysFile, err)
		}
		stamps = append(stamps, stampOf(t.TicketKeysFile))
	}
	st := &tlsState{conf: conf, certs: store, files: stamps, cfg: t}
	if t.HSTS.MaxAge > 0 {
		v := "max-age=" + strconv.FormatInt(int64(t.HSTS.MaxAge/time.Second), 10)
		if t.HSTS.IncludeSubdomains {
			v += "; includeSubDomains"
		}
		if t.HSTS.Preload {
			v += "; preload"
		}
		st.hsts = []byte(v)
	}
	return st, keys, nil
}

// newTLSListener builds the TLS of listener i of cfg.
func (s *Server) newTLSListener(cfg *config.Config, i int) (*tlsListener, error) {
	l := cfg.ClientListeners()[i]
	t := &tlsListener{s: s, index: i, http2: l.HTTP2}
	st, keys, err := loadTLSState(fmt.Sprintf("listeners[%d].tls", i), *l.TLS, l.HTTP2)
	if err != nil {
		return nil, err
	}
	t.outer = &tls.Config{GetConfigForClient: t.configFor}
	if keys != nil {
		t.outer.SetSessionTicketKeys(keys)
	}
	t.state.Store(st)
	t.affinity.Store(hasTLSResolver(cfg))
	return t, nil
}

func hasTLSResolver(cfg *config.Config) bool {
	for _, a := range cfg.Session.Affinity {
		if a == "tls" {
			return true
		}
	}
	return false
}

// reload loads the listener's TLS again from l; on error the running state stays.
func (t *tlsListener) reload(cfg *config.Config, l config.Listener) error {
	st, keys, err := loadTLSState(fmt.Sprintf("listeners[%d].tls", t.index), *l.TLS, t.http2)
	if err != nil {
		return err
	}
	if keys != nil {
		t.outer.SetSessionTicketKeys(keys)
	}
	t.state.Store(st)
	t.affinity.Store(hasTLSResolver(cfg))
	return nil
}

// changed reports whether a file of the running state changed on disk since it was
// loaded, or since it last failed to load.
func (t *tlsListener) changed() bool {
	files := t.state.Load().files
	now := make([]fileStamp, len(files))
	diff := false
	for i, f := range files {
		now[i] = stampOf(f.path)
		diff = diff || now[i] != f
	}
	if !diff {
		return false
	}
	if last := t.seen.Load(); last != nil && slices.Equal(*last, now) {
		return false // as it was when it failed: wait for the next change
	}
	t.seen.Store(&now)
	return true
}

// configFor is the handshake's GetConfigForClient: the current state's Config; with
// TLS-session affinity, a copy of it per connection whose session hooks put the
// connection's affinity id in its tickets and read it back on resumption.
func (t *tlsListener) configFor(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	conf := t.state.Load().conf
	ac, ok := hello.Conn.(*affinityConn)
	if !ok || !t.affinity.Load() {
		return conf, nil
	}
	c := conf.Clone()
	c.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = appendAffinity(ss.Extra, ac.id)
		return t.outer.EncryptTicket(cs, ss)
	}
	c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := t.outer.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return ss, err
		}
		if id, ok := readAffinity(ss.Extra); ok {
			ac.id, ac.resumed = id, true
		}
		return ss, nil
	}
	return c, nil
}

// affinityPrefix marks sessiongate's entry in SessionState.Extra, which other code may
// share (crypto/tls asks users of Extra to tell their entries apart).
const affinityPrefix = "sessiongate-affinity-v1:"

func appendAffinity(extra [][]byte, id [16]byte) [][]byte {
	out := extra[:0:0]
	for _, e := range extra {
		if !strings.HasPrefix(string(e), affinityPrefix) {
			out = append(out, e)
		}
	}
	return append(out, append([]byte(affinityPrefix), id[:]...))
}

func readAffinity(extra [][]byte) ([16]byte, bool) {
	var id [16]byte
	for _, e := range extra {
		if rest, ok := strings.CutPrefix(string(e), affinityPrefix); ok && len(rest) == len(id) {
			copy(id[:], rest)
			return id, true
		}
	}
	return id, false
}

// affinityConn is the connection under a TLS handshake with TLS-session affinity: it
// carries the connection's affinity id from the handshake (a new random one, or the
// one read from a resumed session's ticket) to the requests.
type affinityConn struct {
	net.Conn
	id      [16]byte
	resumed bool
}

func newAffinityConn(c net.Conn) *affinityConn {
	ac := &affinityConn{Conn: c}
	rand.Read(ac.id[:]) //nolint:errcheck // crypto/rand.Read does not fail
	return ac
}

// CloseWrite half-closes a TCP connection (tunnels use it).
func (c *affinityConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// fileStamp is what changes when a file is replaced: its modification time and size.
type fileStamp struct {
	path string
	mod  time.Time
	size int64
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{path: path, size: -1}
	}
	return fileStamp{path: path, mod: fi.ModTime(), size: fi.Size()}
}

// handshakeError says what a failed handshake was, for its one log line.
func handshakeError(err error) string {
	var rec tls.RecordHeaderError
	var cv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &rec):
		return "not TLS"
	case errors.As(err, &cv), errors.As(err, new(x509.UnknownAuthorityError)):
		return "client certificate refused"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "handshake timeout"
	}
	return "handshake failed"
}
