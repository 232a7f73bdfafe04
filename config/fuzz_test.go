package config

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/goccy/go-yaml"
)

// FuzzParseConfig feeds arbitrary files to Parse. Properties: it never panics;
// a config it accepts is valid and has a target group; and an accepted config written
// back as YAML parses to the same config.
func FuzzParseConfig(f *testing.F) {
	seeds := []string{
		configTestYAML,
		configTestEveryKeyYAML,
		"",
		"listen: 127.0.0.1:8080\n",
		"- a\n",
		"target_groups: []\n",
		"target_groups:\n  - ~\n",
		configTestYAML + "        weight: 0\n",
		configTestYAML + "        wieght: 2\n",
		configTestYAML + "    health_check: {interval: 5x, timeout: 1s}\n",
		configTestYAML + "---\n" + configTestYAML,
		"log:\n\tlevel: info\n" + configTestYAML,                                               // a tab in the indentation
		"target_groups:\n  - name: g\n    members:\n      - id: a\n          address: 'a:1'\n", // a key deeper than its sibling
		"target_groups:\n  - name: g\n    members:\n      - id: a\n     address: 'a:1'\n",      // and shallower
		"session: {routeformat: tomcat, Listen: x, max-conns: 1}\n" + configTestYAML,           // near misses
		"log: {access_sample: -1}\n" + configTestYAML,
		"session: {cookies: [a, a], affinity: [hash, hash]}\n" + configTestYAML,
		"x: &a {id: n}\ntarget_groups: [{name: g, members: [*a]}]\n",
		"target_groups: [{name: g, members: [{<<: {id: n1, address: 'a:1'}, route: r}]}]\n",
		`target_groups:
  - {name: a, hosts: ["*.Example.com", "[::1]"], path_prefix: /a/, members: [{id: m1, address: "[::1]:80"}]}
  - {name: b, hosts: ["*.example.com"], path_prefix: /a, members: [{id: m2, address: "b:80", route: m1}]}
`,
	}
	if data, err := os.ReadFile("../examples/fbdev.yaml"); err == nil {
		seeds = append(seeds, string(data))
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			t.Skip("larger than a config file needs to be")
		}
		c, err := Parse(data)
		if errors.Is(err, errDecoderPanic) {
			t.Fatalf("Parse(%q) error = %q, want no decoder panic", data, err)
		}
		if err != nil {
			if c != nil {
				t.Fatalf("Parse(%q) = %+v with error %q, want nil config", data, c, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse(%q) accepted a config that Validate rejects: %q", data, err)
		}
		if len(c.TargetGroups) == 0 {
			t.Fatalf("Parse(%q) accepted a config without target groups", data)
		}

		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("yaml.Marshal(Parse(%q)) error = %q", data, err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(%q), the config of %q written back, error = %q", out, data, err)
		}
		out2, err := yaml.Marshal(c2)
		if err != nil {
			t.Fatalf("yaml.Marshal(Parse(%q)) error = %q", out, err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("config of %q does not round-trip:\n%s\nparses back as\n%s", data, out, out2)
		}
	})
}
