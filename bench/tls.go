package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Targets of the TLS bench (issue 11), as ratios of sessiongate to the best peer of the
// same load. They are reported, never asserted.
const (
	TargetKeepAliveTLS = 1.0 // keep-alive HTTPS req/s
	TargetHandshake    = 0.9 // new TLS handshakes per second
)

// Loads of a TLS phase.
const (
	LoadKeepAlive = "keep-alive" // connections handshake once and are kept
	LoadHandshake = "handshake"  // every request on a new TLS connection, no resumption
	LoadH2        = "h2"         // HTTP/2 streams on a few kept connections
)

// certFiles is the one certificate every proxy of a TLS run serves, as PEM files in
// the run's directory.
type certFiles struct {
	CA      string // the private CA's certificate, which the load generator trusts
	Cert    string // the leaf certificate (without the CA)
	Key     string // the leaf's private key, PKCS #8
	CertKey string // Cert then Key in one file, for HAProxy's crt

	pool *x509.CertPool // CA alone
}

// newCerts makes a private CA and an ECDSA P-256 leaf for 127.0.0.1 and localhost,
// valid for a day, and writes them to dir as PEM.
func newCerts(dir string) (*certFiles, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench: tls: %w", err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sessiongate bench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("bench: tls: CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("bench: tls: CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench: tls: %w", err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("bench: tls: leaf: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("bench: tls: leaf key: %w", err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	f := &certFiles{
		CA:      filepath.Join(dir, "ca.pem"),
		Cert:    filepath.Join(dir, "cert.pem"),
		Key:     filepath.Join(dir, "key.pem"),
		CertKey: filepath.Join(dir, "cert-key.pem"),
		pool:    x509.NewCertPool(),
	}
	f.pool.AddCert(caCert)
	for _, w := range []struct {
		path string
		data []byte
	}{{f.CA, caPEM}, {f.Cert, certPEM}, {f.Key, keyPEM}, {f.CertKey, append(append([]byte{}, certPEM...), keyPEM...)}} {
		if err := os.WriteFile(w.path, w.data, 0o600); err != nil {
			return nil, fmt.Errorf("bench: tls: %w", err)
		}
	}
	return f, nil
}

// clientConfig is the load generator's TLS: TLS 1.3, the CA alone trusted, SNI
// localhost, ALPN http/1.1, and X25519 alone, so that every proxy does the same key
// exchange (a Go server would otherwise pick the hybrid X25519MLKEM768, which the
// OpenSSL of the peers may not offer). ClientSessionCache stays nil: no resumption.
func (f *certFiles) clientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		RootCAs:          f.pool,
		ServerName:       "localhost",
		NextProtos:       []string{"http/1.1"},
		CurvePreferences: []tls.CurveID{tls.X25519},
	}
}

// h2ClientConfig is clientConfig with ALPN h2 alone: a proxy that does not speak
// HTTP/2 fails the handshake instead of falling back to HTTP/1.1 unseen.
func (f *certFiles) h2ClientConfig() *tls.Config {
	c := f.clientConfig()
	c.NextProtos = []string{"h2"}
	return c
}

// tlsDialer dials addr and completes a TLS handshake before it returns the connection,
// so that the HTTP client above it speaks plain HTTP over TLS and every handshake is
// counted here.
type tlsDialer struct {
	cfg        *tls.Config
	timeout    time.Duration
	measuring  *atomic.Bool
	handshakes atomic.Int64 // completed while measuring
	resumed    atomic.Int64 // of those, resumed sessions (must stay 0)
}

func (d *tlsDialer) dial(addr string) (net.Conn, error) {
	return d.dialContext(context.Background(), "tcp", addr)
}

// dialContext is dial for net/http's Transport.DialTLSContext (the h2 load).
func (d *tlsDialer) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	c, err := (&tls.Dialer{Config: d.cfg}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if d.measuring.Load() {
		d.handshakes.Add(1)
		if c.(*tls.Conn).ConnectionState().DidResume {
			d.resumed.Add(1)
		}
	}
	return c, nil
}

// tlsParams handshakes once with addr and describes what was negotiated, and whether
// TLS 1.2 is refused as it should be.
func tlsParams(addr string, cfg *tls.Config) (string, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("bench: tls: handshake with %s: %w", addr, err)
	}
	st := c.(*tls.Conn).ConnectionState()
	c.Close()
	s := fmt.Sprintf("%s, %s, %s, ALPN %q", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID, st.NegotiatedProtocol)
	old := cfg.Clone()
	old.MinVersion, old.MaxVersion, old.CurvePreferences = tls.VersionTLS12, tls.VersionTLS12, nil
	d.Config = old
	if c, err := d.Dial("tcp", addr); err == nil {
		c.Close()
		s += "; TLS 1.2 accepted"
	} else {
		s += "; TLS 1.2 refused"
	}
	return s, nil
}
