package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessiongate/sessiongate/config"
)

const flagsTestYAML = `listen: 127.0.0.1:8081
admin:
  listen: ""
target_groups:
  - name: fb
    path_prefix: /fb
    members:
      - {id: Node1, address: "%s", route: Node1}
`

func loadWithFlags(t *testing.T, address string, args ...string) (*config.Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sessiongate.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(flagsTestYAML, address)), 0o600); err != nil {
		t.Fatal(err)
	}
	var f Flags
	fs := flag.NewFlagSet("sessiongate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.Register(fs)
	if err := fs.Parse(append([]string{"-config", path}, args...)); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f.Load()
}

func TestProxyFlagsLoad(t *testing.T) {
	t.Run("bad member address", func(t *testing.T) {
		_, err := loadWithFlags(t, "10.1.1.12:70000")
		if err == nil {
			t.Fatal("Load accepted member address 10.1.1.12:70000")
		}
		for _, want := range []string{"target_groups[0].members[0].address", "10.1.1.12:70000"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Load error %q does not contain %q", err, want)
			}
		}
	})
	t.Run("listen flag overrides the file", func(t *testing.T) {
		cfg, err := loadWithFlags(t, "127.0.0.1:9", "-listen", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if cfg.Listen != "127.0.0.1:0" {
			t.Errorf("Listen = %q, want the flag's 127.0.0.1:0", cfg.Listen)
		}
		if cfg.Admin.Listen != "" {
			t.Errorf("Admin.Listen = %q, want the file's \"\" (no -admin given)", cfg.Admin.Listen)
		}
	})
	t.Run("file value kept without the flag", func(t *testing.T) {
		cfg, err := loadWithFlags(t, "127.0.0.1:9")
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if cfg.Listen != "127.0.0.1:8081" {
			t.Errorf("Listen = %q, want the file's 127.0.0.1:8081", cfg.Listen)
		}
	})
	t.Run("flag replaces a bad file value", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sessiongate.yaml")
		bad := strings.Replace(fmt.Sprintf(flagsTestYAML, "127.0.0.1:9"), "listen: 127.0.0.1:8081", "listen: 127.0.0.1:99999", 1)
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		var f Flags
		fs := flag.NewFlagSet("sessiongate", flag.ContinueOnError)
		f.Register(fs)
		if err := fs.Parse([]string{"-config", path, "-listen", "127.0.0.1:0"}); err != nil {
			t.Fatal(err)
		}
		if cfg, err := f.Load(); err != nil || cfg.Listen != "127.0.0.1:0" {
			t.Fatalf("Load with a bad file listen and -listen 127.0.0.1:0 = %v, %v; want the flag's value", cfg, err)
		}
	})
	t.Run("bad flag value", func(t *testing.T) {
		_, err := loadWithFlags(t, "127.0.0.1:9", "-listen", "127.0.0.1:99999")
		if err == nil || !strings.Contains(err.Error(), "listen") || !strings.Contains(err.Error(), "127.0.0.1:99999") {
			t.Errorf("Load with -listen 127.0.0.1:99999: error %v, want one naming listen and the value", err)
		}
	})
}
