package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/goccy/go-yaml"
)

// examplesGlob matches the example configurations that README.md and
// docs/app-servers.md point users to.
const examplesGlob = "../examples/*.yaml"

// examplesRequired are the examples the docs link to; losing one is a failure.
var examplesRequired = []string{"fbdev.yaml", "jetty.yaml", "tomcat.yaml", "websphere.yaml"}

// exampleRoutes is the part of an example file that says which routes it writes
// out. It is decoded from the raw file because Load fills an omitted route with
// the member id.
type exampleRoutes struct {
	TargetGroups []struct {
		Name    string `yaml:"name"`
		Members []struct {
			ID    string `yaml:"id"`
			Route string `yaml:"route"`
		} `yaml:"members"`
	} `yaml:"target_groups"`
}

// TestExamplesValidate loads every examples/*.yaml with Load, so that an example a
// user copies always validates, and checks that each shows affinity: at least one
// target group whose members all set route explicitly in the file.
func TestExamplesValidate(t *testing.T) {
	files, err := filepath.Glob(examplesGlob)
	if err != nil {
		t.Fatalf("Glob(%q) = %v", examplesGlob, err)
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = filepath.Base(f)
	}
	for _, want := range examplesRequired {
		if !slices.Contains(names, want) {
			t.Errorf("Glob(%q) = %q, want it to contain %s", examplesGlob, names, want)
		}
	}

	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg, err := Load(path)
			if err != nil {
				t.Fatalf("Load(%q) = %v, want a valid configuration", path, err)
			}
			if !hasRoutedGroup(cfg) {
				t.Errorf("Load(%q): no target group has members that all have a route", path)
			}
			checkExampleRoutesWritten(t, path)
		})
	}
}

// hasRoutedGroup reports whether cfg has a group with at least one member in which
// every member has a non-empty route.
func hasRoutedGroup(cfg *Config) bool {
	for _, g := range cfg.TargetGroups {
		if len(g.Members) == 0 {
			continue
		}
		routed := true
		for _, m := range g.Members {
			if m.Route == "" {
				routed = false
				break
			}
		}
		if routed {
			return true
		}
	}
	return false
}

// checkExampleRoutesWritten fails unless the file at path sets route on every member
// of at least one target group: examples show the route next to the address, since
// a route that differs from the application server's id is the mistake they warn of.
func checkExampleRoutesWritten(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile(%q) = %v", path, err)
	}
	var ex exampleRoutes
	if err := yaml.Unmarshal(data, &ex); err != nil {
		t.Fatalf("yaml.Unmarshal(%q) = %v", path, err)
	}
	for _, g := range ex.TargetGroups {
		if len(g.Members) == 0 {
			continue
		}
		written := true
		for _, m := range g.Members {
			if m.Route == "" {
				written = false
				break
			}
		}
		if written {
			return
		}
	}
	t.Errorf("%s: no target group sets route on all of its members; write each member's route (jvmRoute, clone id or workerName) out", path)
}
