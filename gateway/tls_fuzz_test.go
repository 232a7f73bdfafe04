package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
)

// FuzzCertLookup checks SNI matching against crypto/x509's own hostname rules: for a
// name of host name characters, the store picks a certificate (other than the default)
// exactly when one of its certificates is valid for the name, and then one that is.
func FuzzCertLookup(f *testing.F) {
	for _, s := range []string{"a.example", "A.EXAMPLE.", "x.b.example", "y.x.b.example", "b.example", ".b.example",
		"c.example", "z.c.example", "", "127.0.0.1", "x..b.example", "-.b.example", "a.example..", "*.b.example"} {
		f.Add(s)
	}
	ca := newTestCA(&testing.T{})
	var certs []*tls.Certificate
	var files []string
	for _, names := range [][]string{{"a.example", "127.0.0.1"}, {"*.b.example"}, {"c.example", "*.c.example"}} {
		cf, kf := ca.issue(names[0][len(names[0])-1:]+strings.ReplaceAll(names[0], "*", "w"), false, names...)
		c, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			f.Fatal(err)
		}
		c.Leaf, _ = x509.ParseCertificate(c.Certificate[0])
		certs = append(certs, &c)
		files = append(files, cf)
	}
	st := newCertStore(certs, files)
	f.Fuzz(func(t *testing.T, name string) {
		got := st.lookup(name, "")
		if !hostChars(name) || net.ParseIP(strings.TrimSuffix(name, ".")) != nil {
			return
		}
		valid := false
		for _, c := range certs {
			if c.Leaf.VerifyHostname(name) == nil {
				valid = true
			}
		}
		if valid != (got != nil) {
			t.Fatalf("lookup(%q) = %d certificates; a certificate valid for it exists: %v", name, len(got), valid)
		}
		for _, c := range got {
			if err := c.Leaf.VerifyHostname(name); err != nil {
				t.Fatalf("lookup(%q) chose a certificate for %v: %v", name, c.Leaf.DNSNames, err)
			}
		}
	})
}

// hostChars reports whether s is made of host name characters only, no label starting
// with a hyphen (crypto/x509 does not match wildcards against such names; no client
// sends them).
func hostChars(s string) bool {
	for i, c := range []byte(s) {
		if !('a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
		if c == '-' && (i == 0 || s[i-1] == '.') {
			return false
		}
	}
	return s != ""
}
