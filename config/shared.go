package config

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"time"
)

// validateShared checks session.shared. Its keys are checked with or without
// addresses, so that a file that turns the store on later is already valid.
func validateShared(k *checker, s *Shared) {
	const p = "session.shared"
	k.durRange(p+".budget", s.Budget, 100*time.Microsecond, time.Second, "100us-1s")
	if len(s.KeyPrefix) > 64 {
		k.str(p+".key_prefix", s.KeyPrefix, "longer than 64 bytes")
	}
	r := &s.Redis
	seen := map[string]int{}
	for i, a := range r.Addresses {
		path := fmt.Sprintf("%s.redis.addresses[%d]", p, i)
		if reason := hostPortReason(a, 1, false); reason != "" {
			k.str(path, a, reason)
		} else if j, ok := seen[a]; ok {
			k.str(path, a, fmt.Sprintf("duplicate of %s.redis.addresses[%d]", p, j))
		} else {
			seen[a] = i
		}
	}
	k.intRange(p+".redis.db", int64(r.DB), 0, 1023)
	if strings.ContainsAny(r.SentinelMaster, " \r\n\x00") {
		k.str(p+".redis.sentinel_master", r.SentinelMaster, "must not hold spaces, CR, LF or NUL")
	}
	if r.Password != "" && r.PasswordFile != "" {
		k.add(p+".redis.password_file", fmt.Sprintf("%q", r.PasswordFile), "set password or password_file, not both")
	} else if r.PasswordFile != "" {
		if _, err := LoadRedisPassword(*r); err != nil {
			k.str(p+".redis.password_file", r.PasswordFile, err.Error())
		}
	}
	if t := r.TLS; t != nil {
		tp := p + ".redis.tls"
		switch {
		case (t.CertFile == "") != (t.KeyFile == ""):
			k.str(tp+".cert_file", t.CertFile, "cert_file and key_file go together")
		case t.CertFile != "":
			if _, err := LoadCertificate(Certificate{CertFile: t.CertFile, KeyFile: t.KeyFile}); err != nil {
				k.str(tp+".cert_file", t.CertFile, err.Error())
			}
		}
		if t.CAFile != "" {
			if _, err := LoadCertPool(t.CAFile); err != nil {
				k.str(tp+".ca_file", t.CAFile, err.Error())
			}
		}
	}
}

// LoadRedisPassword returns the password of r: password, or the trimmed content of
// password_file.
func LoadRedisPassword(r Redis) (string, error) {
	if r.PasswordFile == "" {
		return r.Password, nil
	}
	b, err := os.ReadFile(r.PasswordFile)
	if err != nil {
		return "", err
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return "", fmt.Errorf("the file is empty")
	}
	return pw, nil
}

// LoadRedisTLS builds the client TLS configuration of t (nil: no TLS).
func LoadRedisTLS(t *RedisTLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // the operator's explicit choice, documented as for tests
	}
	if t.CAFile != "" {
		pool, err := LoadCertPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file %q: %w", t.CAFile, err)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := LoadCertificate(Certificate{CertFile: t.CertFile, KeyFile: t.KeyFile})
		if err != nil {
			return nil, fmt.Errorf("cert_file %q: %w", t.CertFile, err)
		}
		c.Certificates = []tls.Certificate{*cert}
	}
	return c, nil
}
