package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tlsGroupYAML is a valid file whose one group has the given tls block (YAML flow
// mapping, or "" for none).
func tlsGroupYAML(block string) string {
	s := "target_groups:\n  - name: g\n"
	if block != "" {
		s += "    tls: " + block + "\n"
	}
	return s + "    members:\n      - {id: m1, address: 127.0.0.1:1}\n"
}

func TestParseTLSBlock(t *testing.T) {
	cases := []struct {
		name, block string
		want        *MemberTLS
	}{
		{"absent", "", nil},
		{"null", "null", nil},
		{"empty", "{}", &MemberTLS{}},
		{"server name", "{server_name: members.internal}", &MemberTLS{ServerName: "members.internal"}},
		{"ip server name", `{server_name: "::1"}`, &MemberTLS{ServerName: "::1"}},
		{"files", "{ca_file: testdata/tls/ca.pem, cert_file: testdata/tls/client.pem, key_file: testdata/tls/client-key.pem}",
			&MemberTLS{CAFile: "testdata/tls/ca.pem", CertFile: "testdata/tls/client.pem", KeyFile: "testdata/tls/client-key.pem"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tlsGroupYAML(tc.block)))
			if err != nil {
				t.Fatalf("Parse(tls: %s) = %v", tc.block, err)
			}
			got := cfg.TargetGroups[0].TLS
			switch {
			case tc.want == nil && got != nil:
				t.Errorf("Parse(tls: %s).tls = %+v, want nil (plain HTTP)", tc.block, *got)
			case tc.want != nil && (got == nil || *got != *tc.want):
				t.Errorf("Parse(tls: %s).tls = %+v, want %+v", tc.block, got, *tc.want)
			}
		})
	}
}

func TestLoadTLSFiles(t *testing.T) {
	tl := &MemberTLS{CAFile: "testdata/tls/ca.pem", CertFile: "testdata/tls/client.pem", KeyFile: "testdata/tls/client-key.pem"}
	files, err := tl.LoadFiles()
	if err != nil {
		t.Fatalf("LoadFiles() = %v", err)
	}
	if files.Roots == nil || files.Cert == nil || files.Cert.Leaf == nil {
		t.Fatalf("LoadFiles() = %+v, want roots and a client certificate", files)
	}
	again, err := tl.LoadFiles()
	if err != nil || again.Sum != files.Sum {
		t.Errorf("LoadFiles() again: sum %x, %v; want the same sum %x", again.Sum, err, files.Sum)
	}
	ca := &MemberTLS{CAFile: "testdata/tls/ca.pem"}
	if other, err := ca.LoadFiles(); err != nil || other.Sum == files.Sum || other.Cert != nil {
		t.Errorf("LoadFiles(ca only) = sum %x, cert %v, %v; want another sum, no certificate", other.Sum, other.Cert, err)
	}
}

func TestValidateTLS(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notPEM := write("not.pem", "hello\n")
	keyOnly := write("key-as-ca.pem", mustRead(t, "testdata/tls/client-key.pem"))
	badCert := write("bad-cert.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	missing := filepath.Join(dir, "missing.pem")
	cases := []struct {
		name, block string
		want        []string // each a substring of one error line
	}{
		{"missing ca file", `{ca_file: "` + missing + `"}`,
			[]string{`target_groups[0].tls.ca_file: "` + missing + `": no such file or directory`}},
		{"ca file not PEM", `{ca_file: "` + notPEM + `"}`,
			[]string{`target_groups[0].tls.ca_file: "` + notPEM + `": no PEM certificate found`}},
		{"ca file holds a key", `{ca_file: "` + keyOnly + `"}`,
			[]string{`target_groups[0].tls.ca_file: "` + keyOnly + `": PEM block 1 is a "PRIVATE KEY", not a CERTIFICATE`}},
		{"ca certificate does not parse", `{ca_file: "` + badCert + `"}`,
			[]string{`target_groups[0].tls.ca_file: "` + badCert + `": certificate 1: x509: `}},
		{"ca file is a directory", `{ca_file: "` + dir + `"}`,
			[]string{`target_groups[0].tls.ca_file: "` + dir + `": not a regular file`}},
		{"cert without key", "{cert_file: testdata/tls/client.pem}",
			[]string{`target_groups[0].tls.key_file: "": must be set with cert_file`}},
		{"key without cert", "{key_file: testdata/tls/client-key.pem}",
			[]string{`target_groups[0].tls.cert_file: "": must be set with key_file`}},
		{"missing key file", `{cert_file: testdata/tls/client.pem, key_file: "` + missing + `"}`,
			[]string{`target_groups[0].tls.key_file: "` + missing + `": no such file or directory`}},
		{"key does not parse", `{cert_file: testdata/tls/client.pem, key_file: "` + notPEM + `"}`,
			[]string{`target_groups[0].tls.key_file: "` + notPEM + `": with cert_file "testdata/tls/client.pem": tls: `}},
		{"cert file holds a key", `{cert_file: testdata/tls/client-key.pem, key_file: testdata/tls/client-key.pem}`,
			[]string{`target_groups[0].tls.cert_file: "testdata/tls/client-key.pem": PEM block 1 is a "PRIVATE KEY"`}},
		{"server name with port", "{server_name: 'members.internal:443'}",
			[]string{`target_groups[0].tls.server_name: "members.internal:443": must not include a port`}},
		{"server name wildcard", "{server_name: '*.internal'}",
			[]string{`target_groups[0].tls.server_name: "*.internal": want a host name or an IP address`}},
		{"server name bracketed", "{server_name: '[::1]'}",
			[]string{`target_groups[0].tls.server_name: "[::1]": want a host name or an IP address`}},
		{"unknown key", "{ca_fle: x}",
			[]string{`target_groups[0].tls.ca_fle: unknown field; did you mean "ca_file"?`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tlsGroupYAML(tc.block)))
			if err == nil {
				t.Fatalf("Parse(tls: %s) = nil error, want %q", tc.block, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(tls: %s) error = %q, want it to contain %q", tc.block, err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.want) {
				t.Errorf("Parse(tls: %s) gave %d errors, want %d: %q", tc.block, n, len(tc.want), err)
			}
		})
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
