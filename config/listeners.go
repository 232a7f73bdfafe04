package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sessiongate/sessiongate/router"
)

// validateListeners checks listen and listeners: addresses, TLS files (each certificate
// pair, the client CA and the ticket keys are loaded, so that a bad file is named at
// start and on reload), and the settings that need a TLS listener.
func validateListeners(k *checker, c *Config) {
	if len(c.Listeners) == 0 {
		if reason := hostPortReason(c.Listen, 0, true); reason != "" {
			k.str("listen", c.Listen, reason)
		}
	}
	anyTLS := false
	for i, l := range c.Listeners {
		path := fmt.Sprintf("listeners[%d]", i)
		if reason := hostPortReason(l.Address, 0, true); reason != "" {
			k.str(path+".address", l.Address, reason)
		}
		for j := range i {
			if c.Listeners[j].Address == l.Address && !strings.HasSuffix(l.Address, ":0") {
				k.str(path+".address", l.Address, fmt.Sprintf("duplicate of listeners[%d].address", j))
				break
			}
		}
		if l.Dataplane != "" { // "": a Listener built in code, fasthttp
			k.oneOf(path+".dataplane", l.Dataplane, DataplaneFasthttp, DataplaneEpoll)
		}
		if l.Dataplane == DataplaneEpoll {
			switch {
			case runtime.GOOS != "linux":
				k.str(path+".dataplane", l.Dataplane, "needs Linux")
			case l.TLS != nil:
				k.str(path+".dataplane", l.Dataplane, "serves plain listeners only: a TLS listener is served by fasthttp")
			case l.ProxyProtocol:
				k.str(path+".dataplane", l.Dataplane, "does not read the PROXY protocol: set dataplane fasthttp")
			case len(c.Session.Shared.Redis.Addresses) > 0:
				// A local miss waits for Redis (session.shared.budget): in an event loop
				// that wait would hold every connection of the loop.
				k.str(path+".dataplane", l.Dataplane, "does not combine with session.shared (a shared-store read would stall the event loop): set dataplane fasthttp")
			}
		}
		if l.TLS == nil {
			continue
		}
		anyTLS = true
		if l.RedirectHTTPS {
			k.str(path+".redirect_https", "true", "a TLS listener cannot redirect to https")
		}
		l.TLS.validate(k, path+".tls")
	}
	if !anyTLS {
		for i, l := range c.Listeners {
			if l.RedirectHTTPS {
				k.str(fmt.Sprintf("listeners[%d].redirect_https", i), "true", "needs a listener with tls to redirect to")
			}
		}
		for i, a := range c.Session.Affinity {
			if r, ok := router.ParseResolver(a); ok && r == router.ResolveTLS {
				k.str(fmt.Sprintf("session.affinity[%d]", i), a, "needs a listener with tls")
			}
		}
	}
}

func (t *ListenerTLS) validate(k *checker, path string) {
	if len(t.Certificates) == 0 {
		k.add(path+".certificates", "[]", "at least one certificate is required")
	}
	for i, c := range t.Certificates {
		p := fmt.Sprintf("%s.certificates[%d]", path, i)
		switch {
		case c.CertFile == "":
			k.str(p+".cert_file", c.CertFile, "required")
		case c.KeyFile == "":
			k.str(p+".key_file", c.KeyFile, "required")
		default:
			if _, err := LoadCertificate(c); err != nil {
				k.str(p+".cert_file", c.CertFile, err.Error())
			}
		}
	}
	k.oneOf(path+".min_version", t.MinVersion, TLS12, TLS13)
	k.oneOf(path+".client_auth", t.ClientAuth, ClientAuthNone, ClientAuthRequest, ClientAuthRequire)
	switch {
	case t.ClientAuth != ClientAuthNone && t.ClientAuth != "" && t.ClientCAFile == "":
		k.str(path+".client_ca_file", "", "required with client_auth "+t.ClientAuth)
	case t.ClientCAFile != "":
		if _, err := LoadCertPool(t.ClientCAFile); err != nil {
			k.str(path+".client_ca_file", t.ClientCAFile, err.Error())
		}
	}
	if t.TicketKeysFile != "" {
		if _, err := LoadTicketKeys(t.TicketKeysFile); err != nil {
			k.str(path+".ticket_keys_file", t.TicketKeysFile, err.Error())
		}
	}
	k.durRange(path+".hsts.max_age", t.HSTS.MaxAge, 0, 87600*time.Hour, "0-87600h")
}

// LoadCertificate loads a certificate pair and parses its leaf. The error says which
// file is wrong and why.
func LoadCertificate(c Certificate) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("with key_file %q: %w", c.KeyFile, err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, err
		}
		cert.Leaf = leaf
	}
	return &cert, nil
}

// LoadCertPool reads a PEM file of CA certificates.
func LoadCertPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}

// LoadTicketKeys reads a ticket keys file: one key per line, 64 hex digits (32 bytes);
// empty lines and lines starting with # are skipped. At least one key.
func LoadTicketKeys(path string) ([][32]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys [][32]byte
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		var key [32]byte
		if len(line) != 64 {
			return nil, errors.New("line " + strconv.Itoa(n+1) + ": want 64 hex digits (openssl rand -hex 32)")
		}
		if _, err := hex.Decode(key[:], []byte(line)); err != nil {
			return nil, errors.New("line " + strconv.Itoa(n+1) + ": want 64 hex digits (openssl rand -hex 32)")
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key in it")
	}
	return keys, nil
}

// cookieKeyMin is the shortest MAC key of session.cookie.keys.
const cookieKeyMin = 16

// CookieKeys are the MAC keys of the affinity cookie: keys, or the lines of keys_file.
func (c *AffinityCookie) CookieKeys() ([]string, error) {
	if c.KeysFile == "" {
		return c.Keys, nil
	}
	data, err := os.ReadFile(c.KeysFile)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
			keys = append(keys, line)
		}
	}
	return keys, nil
}

func (c *AffinityCookie) validate(k *checker, on bool) {
	const path = "session.cookie"
	if reason := tokenReason(c.Name, "", "a cookie name"); c.Name == "" || reason != "" {
		if reason == "" {
			reason = "must not be empty"
		}
		k.str(path+".name", c.Name, reason)
	}
	if c.KeysFile != "" && len(c.Keys) > 0 {
		k.str(path+".keys_file", c.KeysFile, "set keys or keys_file, not both")
	}
	keys, err := c.CookieKeys()
	switch {
	case err != nil:
		k.str(path+".keys_file", c.KeysFile, err.Error())
	case on && len(keys) == 0:
		k.add(path+".keys", "[]", "the cookie resolver needs at least one key")
	}
	for i, key := range keys {
		if len(key) < cookieKeyMin {
			where := fmt.Sprintf("%s.keys[%d]", path, i)
			if c.KeysFile != "" {
				where = path + ".keys_file"
			}
			k.add(where, "(hidden)", fmt.Sprintf("a key must have at least %d bytes", cookieKeyMin))
		}
	}
	if c.Path != "" && (strings.ContainsAny(c.Path, ";\r\n\x00") || c.Path[0] != '/') {
		k.str(path+".path", c.Path, "must start with / and hold no ; CR LF NUL")
	}
	if c.Domain != "" {
		if reason := hostReason(c.Domain); reason != "" {
			k.str(path+".domain", c.Domain, reason)
		}
	}
	k.durRange(path+".max_age", c.MaxAge, 0, 8760*time.Hour, "0-8760h")
	k.oneOf(path+".same_site", c.SameSite, "Lax", "Strict", "None", "")
	if c.SameSite == "None" && !c.Secure {
		k.str(path+".same_site", c.SameSite, "None needs secure: true (browsers drop it otherwise)")
	}
}
