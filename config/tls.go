package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
)

// MemberTLSFiles is what the files of a MemberTLS hold, parsed: what the gateway
// builds a group's tls.Config from.
type MemberTLSFiles struct {
	// Roots are the certificates of ca_file; nil when ca_file is "" (the system roots).
	Roots *x509.CertPool
	// Cert is the client certificate of cert_file and key_file; nil when they are "".
	Cert *tls.Certificate
	// Sum is a digest of the files' contents, so that a reload can tell renewed files
	// from unchanged ones without comparing certificates.
	Sum [sha256.Size]byte
}

// TLSFileError is a file of a tls block that cannot be used. Key is the key that names
// it (ca_file, cert_file or key_file) and File its value.
type TLSFileError struct {
	Key, File string
	Err       error
}

// Error reads `ca_file: "ca.pem": no PEM certificate found`.
func (e *TLSFileError) Error() string {
	return e.Key + ": " + strconv.Quote(e.File) + ": " + e.reason()
}

func (e *TLSFileError) Unwrap() error { return e.Err }

// reason is the cause without the path that os errors repeat.
func (e *TLSFileError) reason() string {
	var pe *fs.PathError
	if errors.As(e.Err, &pe) {
		return pe.Err.Error()
	}
	return e.Err.Error()
}

// maxTLSFile bounds what is read of one tls file: a CA bundle of a few hundred
// certificates is well below it, and a mistaken path (a log file, a device) is not
// read whole.
const maxTLSFile = 4 << 20

var (
	errNotRegular = errors.New("not a regular file")
	errTooLarge   = errors.New("larger than 4 MiB; not a PEM file")
	errNoCert     = errors.New("no PEM certificate found")
)

// LoadFiles reads and parses the files t names: every certificate of ca_file, and
// the pair of cert_file and key_file (both or neither). An error is a *TLSFileError
// naming the key of the file at fault. It does not check the settings themselves
// (Validate does).
func (t *MemberTLS) LoadFiles() (MemberTLSFiles, error) {
	var out MemberTLSFiles
	h := sha256.New()
	add := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	if t.CAFile != "" {
		data, err := readTLSFile("ca_file", t.CAFile)
		if err != nil {
			return out, err
		}
		roots, err := parseCAs(data)
		if err != nil {
			return out, &TLSFileError{Key: "ca_file", File: t.CAFile, Err: err}
		}
		out.Roots = roots
		add(data)
	} else {
		add(nil)
	}
	if t.CertFile != "" && t.KeyFile != "" {
		certPEM, err := readTLSFile("cert_file", t.CertFile)
		if err != nil {
			return out, err
		}
		if _, err := parseCAs(certPEM); err != nil {
			return out, &TLSFileError{Key: "cert_file", File: t.CertFile, Err: err}
		}
		keyPEM, err := readTLSFile("key_file", t.KeyFile)
		if err != nil {
			return out, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return out, &TLSFileError{Key: "key_file", File: t.KeyFile, Err: fmt.Errorf("with cert_file %q: %w", t.CertFile, err)}
		}
		out.Cert = &cert
		add(certPEM)
		add(keyPEM)
	}
	h.Sum(out.Sum[:0])
	return out, nil
}

// readTLSFile reads a regular file of at most maxTLSFile bytes. It looks before it
// opens, so that a FIFO or a device named by mistake cannot block a reload.
func readTLSFile(key, path string) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, &TLSFileError{Key: key, File: path, Err: err} }
	fi, err := os.Stat(path)
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(errNotRegular)
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTLSFile+1))
	if err != nil {
		return fail(err)
	}
	if len(data) > maxTLSFile {
		return fail(errTooLarge)
	}
	return data, nil
}

// parseCAs parses every CERTIFICATE block of data into a pool. Text around the blocks
// (the comments of CA bundles) is ignored; a block of another type, or one that does
// not parse, is an error, and so is data without any certificate.
func parseCAs(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		n++
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %q, not a CERTIFICATE", n, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n, err)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, errNoCert
	}
	return pool, nil
}
