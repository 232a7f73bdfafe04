package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed ECDSA P-256 certificate for names and its key into
// dir, returning their paths.
func writeCert(t *testing.T, dir, name string, names ...string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, keyFile
}

func TestListeners(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "a", "a.example")
	keys := filepath.Join(dir, "keys")
	os.WriteFile(keys, []byte("# ticket keys\n"+strings.Repeat("ab", 32)+"\n"+strings.Repeat("cd", 32)+"\n"), 0o600)
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	const groups = "\ntarget_groups:\n  - name: g\n    members: [{id: m1, address: 127.0.0.1:1}]\n"

	cfg, err := Parse([]byte(`
listeners:
  - {address: 127.0.0.1:8080, redirect_https: true}
  - address: 127.0.0.1:8443
    tls:
      certificates: [{cert_file: ` + cert + `, key_file: ` + key + `}]
      ticket_keys_file: ` + keys + `
      hsts: {max_age: 8760h}
session:
  affinity: [route, learned, tls, hash]` + groups))
	if err != nil {
		t.Fatal(err)
	}
	ls := cfg.ClientListeners()
	if len(ls) != 2 || ls[0].TLS != nil || !ls[1].HTTP2 || ls[1].TLS.MinVersion != TLS12 || ls[1].TLS.ClientAuth != ClientAuthNone {
		t.Fatalf("listeners = %+v", ls)
	}
	if k, err := LoadTicketKeys(keys); err != nil || len(k) != 2 || k[0][0] != 0xab {
		t.Fatalf("LoadTicketKeys = %v, %v", k, err)
	}
	if d, _ := Parse([]byte(groups)); len(d.ClientListeners()) != 1 || d.ClientListeners()[0].Address != "127.0.0.1:8080" {
		t.Fatalf("default listeners = %+v", d.ClientListeners())
	}

	for _, tc := range []struct{ yaml, want string }{
		{"listen: 127.0.0.1:1\nlisteners: [{address: 127.0.0.1:2}]", `listen: "127.0.0.1:1": set listen or listeners, not both`},
		{"listeners: [{address: 127.0.0.1:2}, {address: 127.0.0.1:2}]", `listeners[1].address: "127.0.0.1:2": duplicate of listeners[0].address`},
		{"listeners: [{address: nope}]", `listeners[0].address: "nope"`},
		{"listeners: [{address: 127.0.0.1:2, redirect_https: true}]", `listeners[0].redirect_https: "true": needs a listener with tls`},
		{"listeners: [{address: 127.0.0.1:2, tls: {}}]", `listeners[0].tls.certificates: []: at least one certificate is required`},
		{"listeners: [{address: 127.0.0.1:2, tls: {certificates: [{cert_file: " + bad + ", key_file: " + key + "}]}}]", `listeners[0].tls.certificates[0].cert_file: "` + bad + `": with key_file`},
		{"listeners: [{address: 127.0.0.1:2, tls: {certificates: [{cert_file: " + cert + "}]}}]", `listeners[0].tls.certificates[0].key_file: "": required`},
		{"listeners: [{address: 127.0.0.1:2, tls: {min_version: '1.1', certificates: [{cert_file: " + cert + ", key_file: " + key + "}]}}]", `listeners[0].tls.min_version: "1.1": want one of 1.2, 1.3`},
		{"listeners: [{address: 127.0.0.1:2, tls: {client_auth: require, certificates: [{cert_file: " + cert + ", key_file: " + key + "}]}}]", `listeners[0].tls.client_ca_file: "": required with client_auth require`},
		{"listeners: [{address: 127.0.0.1:2, tls: {ticket_keys_file: " + bad + ", certificates: [{cert_file: " + cert + ", key_file: " + key + "}]}}]", `listeners[0].tls.ticket_keys_file: "` + bad + `": line 1: want 64 hex digits`},
		{"session: {affinity: [route, tls, hash]}", `session.affinity[1]: "tls": needs a listener with tls`},
		{"listeners: [{address: 127.0.0.1:2, tls: {certificates: [{cert_file: " + cert + ", key_file: " + key + "}]}}]\nsession: {affinity: [hash, tls]}", `session.affinity[1]: "tls": tls must be followed`},
	} {
		_, err := Parse([]byte(tc.yaml + groups))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", tc.yaml, err, tc.want)
		}
	}
}
