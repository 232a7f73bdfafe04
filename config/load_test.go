package config

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// configTestValid returns a valid config with two groups, for Validate cases to break.
func configTestValid() Config {
	c := Default()
	hc := defaultHealthCheck()
	hc.Path = "/fb/healthcheck"
	fb := NewGroup("FBDevTargetGroup", "/fb",
		NewMember("Node1", "10.1.1.12:8080"), NewMember("Node2", "10.1.2.34:8081"))
	fb.HealthCheck = hc
	shop1 := NewMember("Shop1", "shop1.internal:8080")
	shop1.Route, shop1.Weight = "s1", 3
	shop := NewGroup("Shop", "/", shop1)
	shop.Hosts = []string{"shop.example.com", "*.shop.example.com"}
	c.TargetGroups = []Group{fb, shop}
	return c
}

// configTestYAML is a minimal valid file: one group of one member, all else default.
const configTestYAML = `target_groups:
  - name: fb
    members:
      - id: Node1
        address: 10.1.1.12:8080
`

// parseConfigError parses data, which must fail, and returns the error text.
func parseConfigError(t *testing.T, data string) string {
	t.Helper()
	c, err := Parse([]byte(data))
	if err == nil {
		t.Fatalf("Parse(%s) = %+v, want an error", data, c)
	}
	if c != nil {
		t.Errorf("Parse(%s) returned a config with error %q, want nil", data, err)
	}
	return err.Error()
}

func TestDefaultConfig(t *testing.T) {
	c := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, "127.0.0.1:8080"},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:9090"},
		{"log", c.Log, Log{Level: "info", Format: "json", Access: true, AccessSample: 1, AccessFormat: "json"}},
		{"server", c.Server, Server{
			ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 90 * time.Second,
			MaxHeaderBytes: 16384, MaxBodyBytes: 10 << 20, BufferBodyBytes: 65536, MaxConns: 0,
			HeaderTimeout: 10 * time.Second, PathNormalization: "reject",
			TunnelIdleTimeout: time.Hour, CloseTunnelsOnDown: true,
		}},
		{"client", c.Client, Client{
			DialTimeout: 2 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
			IdleTimeout: 60 * time.Second, MaxConns: 1024,
		}},
		{"session", c.Session, Session{
			Cookies: []string{"JSESSIONID"}, URLParam: "jsessionid",
			Affinity: []string{"route", "learned", "hash"}, RouteFormat: "auto", Balance: "round_robin",
			Learned: Learned{MaxSessions: 1000000, TTL: 30 * time.Minute}, BoundWindow: time.Minute,
			Cookie: AffinityCookie{Name: "SGROUTE", HTTPOnly: true, SameSite: "Lax"},
			Shared: Shared{Budget: 2 * time.Millisecond, KeyPrefix: "sg:"},
		}},
		{"retry", c.Retry, Retry{MaxRetries: 1, RetryBuffer: 65536, IdempotentOnTimeout: true}},
		{"target_groups", len(c.TargetGroups), 0},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("Default().%s = %+v, want %+v", tc.name, tc.got, tc.want)
			}
		})
	}

	// Default must hand out fresh slices: a caller's change must not leak.
	c.Session.Cookies[0] = "changed"
	if got := Default().Session.Cookies[0]; got != "JSESSIONID" {
		t.Errorf("Default().Session.Cookies[0] = %q after a caller changed its copy, want JSESSIONID", got)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	got, err := Parse([]byte(configTestYAML))
	if err != nil {
		t.Fatalf("Parse(%s) error = %q, want nil", configTestYAML, err)
	}
	want := Default()
	want.TargetGroups = []Group{NewGroup("fb", "/", NewMember("Node1", "10.1.1.12:8080"))}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("Parse(%s) = %+v, want %+v", configTestYAML, *got, want)
	}
}

// configTestEveryKeyYAML sets every key to a value other than its default.
const configTestEveryKeyYAML = `
listen: 0.0.0.0:80
reuseport: true
shutdown_timeout: 5s
admin:
  listen: ""
  token: s3cret
  hosts: [gw.internal]
forwarded:
  trusted_proxies: [10.0.0.0/8, 192.0.2.7]
log:
  level: debug
  format: console
  access: false
  access_sample: 100
  access_format: combined
server:
  read_timeout: 1s
  write_timeout: 2s
  idle_timeout: 3s
  max_header_bytes: 8192
  max_body_bytes: 0
  buffer_body_bytes: 4096
  max_conns: 10
  max_conns_per_ip: 4
  header_timeout: 500ms
  path_normalization: forward
  reject_encoded_slashes: true
  server_header: sg
  tunnel_idle_timeout: 2m
  close_tunnels_on_down: false
client:
  dial_timeout: 100ms
  read_timeout: 4s
  write_timeout: 5s
  idle_timeout: 6s
  max_conns: 0
retry:
  max_retries: 3
  retry_buffer: 100
  idempotent_on_timeout: false
  try_timeout: 2s
session:
  bound_window: 30s
  cookies: [SID, JSESSIONID]
  url_param: ""
  query: sid
  header: X-Session
  affinity: [hash]
  route_format: tomcat
  balance: least_requests
  learned:
    max_sessions: 10
    ttl: 1h30m
  shared:
    budget: 5ms
    key_prefix: "shop:"
    redis:
      addresses: [10.0.0.5:26379, 10.0.0.6:26379]
      username: gw
      password: pw
      db: 2
      sentinel_master: mymaster
      tls: {server_name: redis.internal, insecure_skip_verify: true}
target_groups:
  - name: shop
    hosts: [shop.example.com, "*.Shop.example.com"]
    path_prefix: /shop/
    health_check:
      path: /ping?full=1
      interval: 10s
      timeout: 500ms
      healthy_threshold: 3
      unhealthy_threshold: 5
      unhealthy_interval: 200ms
      expected_status: 200-204
      host: health.shop
      jitter: 1s
      start: unhealthy
    passive:
      consecutive_failures: 0
      eject_5xx: true
      ejection: 2s
      max_ejection: 4s
    switch_back: true
    drain_timeout: 1h
    tls:
      ca_file: testdata/tls/ca.pem
      server_name: members.internal
      insecure_skip_verify: true
      cert_file: testdata/tls/client.pem
      key_file: testdata/tls/client-key.pem
    members:
      - id: a
        address: "[::1]:9000"
        route: ra
        weight: 1000
        state: drain
      - {id: b, address: b.internal:9001}
`

// TestParseConfigEveryKey sets every key to a value other than its default, so a
// misspelled yaml tag or a lost value shows up.
func TestParseConfigEveryKey(t *testing.T) {
	data := configTestEveryKeyYAML
	got, err := Parse([]byte(data))
	if err != nil {
		t.Fatalf("Parse(%s) error = %q, want nil", data, err)
	}
	want := Config{
		Listen:          "0.0.0.0:80",
		ReusePort:       true,
		ShutdownTimeout: 5 * time.Second,
		Admin:           Admin{Listen: "", Token: "s3cret", Hosts: []string{"gw.internal"}},
		Forwarded:       Forwarded{TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7"}},
		Retry:           Retry{MaxRetries: 3, RetryBuffer: 100, IdempotentOnTimeout: false, TryTimeout: 2 * time.Second},
		Log:             Log{Level: "debug", Format: "console", Access: false, AccessSample: 100, AccessFormat: "combined"},
		Server: Server{
			ReadTimeout: time.Second, WriteTimeout: 2 * time.Second, IdleTimeout: 3 * time.Second,
			MaxHeaderBytes: 8192, MaxBodyBytes: 0, BufferBodyBytes: 4096, MaxConns: 10,
			MaxConnsPerIP: 4, HeaderTimeout: 500 * time.Millisecond, PathNormalization: "forward",
			RejectEncodedSlashes: true, ServerHeader: "sg",
			TunnelIdleTimeout: 2 * time.Minute, CloseTunnelsOnDown: false,
		},
		Client: Client{
			DialTimeout: 100 * time.Millisecond, ReadTimeout: 4 * time.Second, WriteTimeout: 5 * time.Second,
			IdleTimeout: 6 * time.Second, MaxConns: 0,
		},
		Session: Session{
			Cookies: []string{"SID", "JSESSIONID"}, URLParam: "", Query: "sid", Header: "X-Session",
			Affinity: []string{"hash"}, RouteFormat: "tomcat", Balance: "least_requests", BoundWindow: 30 * time.Second,
			Learned: Learned{MaxSessions: 10, TTL: 90 * time.Minute},
			Cookie:  AffinityCookie{Name: "SGROUTE", HTTPOnly: true, SameSite: "Lax"},
			Shared: Shared{Budget: 5 * time.Millisecond, KeyPrefix: "shop:", Redis: Redis{
				Addresses: []string{"10.0.0.5:26379", "10.0.0.6:26379"}, Username: "gw", Password: "pw", DB: 2,
				SentinelMaster: "mymaster", TLS: &RedisTLS{ServerName: "redis.internal", InsecureSkipVerify: true},
			}},
		},
		TargetGroups: []Group{{
			Name:       "shop",
			Hosts:      []string{"shop.example.com", "*.Shop.example.com"},
			PathPrefix: "/shop/",
			HealthCheck: HealthCheck{
				Path: "/ping?full=1", Interval: 10 * time.Second, Timeout: 500 * time.Millisecond,
				HealthyThreshold: 3, UnhealthyThreshold: 5, UnhealthyInterval: 200 * time.Millisecond,
				ExpectedStatus: "200-204", Host: "health.shop", Jitter: time.Second, Start: "unhealthy",
			},
			Passive:      Passive{ConsecutiveFailures: 0, Eject5xx: true, Ejection: 2 * time.Second, MaxEjection: 4 * time.Second},
			SwitchBack:   true,
			DrainTimeout: time.Hour,
			TLS: &MemberTLS{
				CAFile: "testdata/tls/ca.pem", ServerName: "members.internal", InsecureSkipVerify: true,
				CertFile: "testdata/tls/client.pem", KeyFile: "testdata/tls/client-key.pem",
			},
			Members: []Member{
				{ID: "a", Address: "[::1]:9000", Route: "ra", Weight: 1000, State: "drain"},
				{ID: "b", Address: "b.internal:9001", Route: "b", Weight: 1, State: "ready"},
			},
		}},
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("Parse(%s) =\n%+v\nwant\n%+v", data, *got, want)
	}
}

func TestLoadConfigExample(t *testing.T) {
	// The addresses are examples; this test only parses the file.
	got, err := Load("../examples/fbdev.yaml")
	if err != nil {
		t.Fatalf("Load(../examples/fbdev.yaml) error = %q, want nil", err)
	}
	want := Default()
	fb := NewGroup("FBDevTargetGroup", "/fb",
		NewMember("Node1", "10.1.1.12:8080"), NewMember("Node2", "10.1.2.34:8081"))
	fb.Hosts = []string{}
	fb.HealthCheck.Path = "/fb/healthcheck"
	want.TargetGroups = []Group{fb}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("Load(../examples/fbdev.yaml) =\n%+v\nwant\n%+v", *got, want)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	path := t.TempDir() + "/missing.yaml"
	_, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(%s) error = %v, want fs.ErrNotExist", path, err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("Load(%s) error = %q, want it to contain the path", path, err)
	}
}

func TestParseConfigMemberDefaults(t *testing.T) {
	tests := []struct {
		name       string
		member     string
		wantRoute  string
		wantWeight int
	}{
		{"omitted weight and route", "{id: n1, address: 10.0.0.1:80}", "n1", 1},
		{"null weight and route", "{id: n1, address: 10.0.0.1:80, weight: ~, route: ~}", "n1", 1},
		{"empty route", `{id: n1, address: 10.0.0.1:80, route: ""}`, "n1", 1},
		{"explicit route and weight", "{id: n1, address: 10.0.0.1:80, route: r7, weight: 5}", "r7", 5},
		{"route before id", "{route: r7, id: n1, address: 10.0.0.1:80}", "r7", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := "target_groups:\n  - name: g\n    members:\n      - " + tc.member + "\n"
			c, err := Parse([]byte(data))
			if err != nil {
				t.Fatalf("Parse(%s) error = %q, want nil", data, err)
			}
			m := c.TargetGroups[0].Members[0]
			if m.Route != tc.wantRoute || m.Weight != tc.wantWeight {
				t.Errorf("Parse(%s) member route, weight = %q, %d, want %q, %d",
					data, m.Route, m.Weight, tc.wantRoute, tc.wantWeight)
			}
		})
	}
}

func TestParseConfigGroupDefaults(t *testing.T) {
	const data = `target_groups:
  - name: a
    health_check: {path: /hc, interval: 10s}
    members: [{id: n1, address: 10.0.0.1:80}]
  - name: b
    path_prefix: /b
    health_check: ~
    members: [{id: n2, address: 10.0.0.2:80}]
`
	c, err := Parse([]byte(data))
	if err != nil {
		t.Fatalf("Parse(%s) error = %q, want nil", data, err)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"target_groups[0].path_prefix", c.TargetGroups[0].PathPrefix, "/"},
		{"target_groups[0].health_check", c.TargetGroups[0].HealthCheck, HealthCheck{
			Path: "/hc", Interval: 10 * time.Second, Timeout: 2 * time.Second, HealthyThreshold: 2, UnhealthyThreshold: 2,
			UnhealthyInterval: time.Second, ExpectedStatus: "200-399", Start: "healthy",
		}},
		{"target_groups[0].passive", c.TargetGroups[0].Passive, Passive{ConsecutiveFailures: 5, Ejection: 10 * time.Second, MaxEjection: 5 * time.Minute}},
		{"target_groups[0].drain_timeout", c.TargetGroups[0].DrainTimeout, 10 * time.Minute},
		{"target_groups[0].members[0].state", c.TargetGroups[0].Members[0].State, "ready"},
		{"target_groups[1].path_prefix", c.TargetGroups[1].PathPrefix, "/b"},
		{"target_groups[1].health_check", c.TargetGroups[1].HealthCheck, defaultHealthCheck()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("Parse(%s) %s = %+v, want %+v", data, tc.name, tc.got, tc.want)
			}
		})
	}
}

// TestParseConfigBadValueNotDefaulted checks that an explicit bad value is rejected
// rather than replaced by the default that an omitted key would get.
func TestParseConfigBadValueNotDefaulted(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"weight 0", "target_groups: [{name: g, members: [{id: n1, address: 'a:1', weight: 0}]}]",
			`line 1: target_groups[0].members[0].weight: "0": out of range 1-1000`},
		{"healthy_threshold 0", "target_groups: [{name: g, health_check: {healthy_threshold: 0}, members: [{id: n1, address: 'a:1'}]}]",
			`target_groups[0].health_check.healthy_threshold: "0": out of range 1-100`},
		{"unhealthy_threshold 0", "target_groups: [{name: g, health_check: {unhealthy_threshold: 0}, members: [{id: n1, address: 'a:1'}]}]",
			`target_groups[0].health_check.unhealthy_threshold: "0": out of range 1-100`},
		{"interval 0s", "target_groups: [{name: g, health_check: {interval: 0s}, members: [{id: n1, address: 'a:1'}]}]",
			`target_groups[0].health_check.interval: "0s": out of range 100ms-1h`},
		{"empty path_prefix", "target_groups: [{name: g, path_prefix: '', members: [{id: n1, address: 'a:1'}]}]",
			`target_groups[0].path_prefix: "": must start with "/"`},
		{"empty log level", "log: {level: ''}\n" + configTestYAML,
			`line 1: log.level: "": want one of debug, info, warn, error`},
		{"empty affinity", "session: {affinity: []}\n" + configTestYAML,
			`line 1: session.affinity: []: must list at least one of route, learned, hash`},
		{"access_sample 0", "log: {access_sample: 0}\n" + configTestYAML,
			`line 1: log.access_sample: "0": out of range 1-1000000`},
		{"max_sessions 0", "session: {learned: {max_sessions: 0}}\n" + configTestYAML,
			`line 1: session.learned.max_sessions: "0": out of range 1-2147483648`},
		{"tunnel_idle_timeout 0s", "server: {tunnel_idle_timeout: 0s}\n" + configTestYAML,
			`line 1: server.tunnel_idle_timeout: "0s": out of range 1s-168h`},
		{"empty listen", "listen: ''\n" + configTestYAML,
			`line 1: listen: "": want host:port`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseConfigError(t, tc.data); !strings.Contains(got, tc.want) {
				t.Errorf("Parse(%s) error = %q, want it to contain %q", tc.data, got, tc.want)
			}
		})
	}
}

func TestParseConfigDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []string // each must appear in the error
	}{
		{"unknown top-level key", "lsten: 127.0.0.1:80\n" + configTestYAML,
			[]string{"config: line 1: lsten: unknown field"}},
		{"unknown key in member", configTestYAML + "        wieght: 2\n",
			[]string{`config: line 6: target_groups[0].members[0].wieght: unknown field; did you mean "weight"?`}},
		{"unknown key in flow member", "target_groups:\n  - name: g\n    members:\n      - {id: a, address: 'a:1', rout: r}\n",
			[]string{"config: line 4: target_groups[0].members[0].rout: unknown field"}},
		{"unknown key in group", configTestYAML + "    path: /fb\n",
			[]string{"config: line 6: target_groups[0].path: unknown field"}},
		{"unknown key in health_check", configTestYAML + "    health_check:\n      intervall: 5s\n",
			[]string{"config: line 7: target_groups[0].health_check.intervall: unknown field"}},
		{"unknown key in second member", configTestYAML + "      - id: n2\n        address: 10.0.0.2:80\n        weigth: 1\n",
			[]string{"config: line 8: target_groups[0].members[1].weigth: unknown field"}},
		{"unknown key in session.learned", "session:\n  learned:\n    size: 10\n" + configTestYAML,
			[]string{"config: line 3: session.learned.size: unknown field"}},
		{"string for int", configTestYAML + "        weight: heavy\n",
			[]string{"line 6: target_groups[0].members[0].weight: \"heavy\": want an integer"}},
		{"list for int", configTestYAML + "        weight: [1]\n",
			[]string{"line 6: target_groups[0].members[0].weight: a list: want an integer"}},
		{"mapping for string", "listen: {host: a}\n" + configTestYAML,
			[]string{"line 1: listen: a mapping: want a string"}},
		{"string for bool", "log:\n  access: maybe\n" + configTestYAML,
			[]string{`line 2: log.access: "maybe": want true or false`}},
		{"scalar for list", "session:\n  cookies: JSESSIONID\n" + configTestYAML,
			[]string{`line 2: session.cookies: "JSESSIONID": want a list`}},
		{"scalar for mapping", "log: loud\n" + configTestYAML,
			[]string{`line 1: log: "loud": want a mapping`}},
		{"negative uint", "log: {access_sample: -1}\n" + configTestYAML,
			[]string{`line 1: log.access_sample: "-1": number out of range`}},
		{"int overflow", "server: {max_body_bytes: 99999999999999999999}\n" + configTestYAML,
			[]string{`line 1: server.max_body_bytes: "99999999999999999999": number out of range`}},
		{"bad duration", "server:\n  read_timeout: 5x\n" + configTestYAML,
			[]string{`config: line 2: server.read_timeout: "5x": want a duration`}},
		{"duration without unit", "client: {dial_timeout: 5}\n" + configTestYAML,
			[]string{`line 1: client.dial_timeout: "5": want a duration`}},
		{"two bad durations", configTestYAML + "    health_check: {interval: soon, timeout: 1 second}\n",
			[]string{
				`line 6: target_groups[0].health_check.interval: "soon": want a duration`,
				`line 6: target_groups[0].health_check.timeout: "1 second": want a duration`,
			}},
		{"bad duration in ttl", "session: {learned: {ttl: forever}}\n" + configTestYAML,
			[]string{`line 1: session.learned.ttl: "forever": want a duration`}},
		{"null member", configTestYAML + "      - ~\n",
			[]string{"line 6: target_groups[0].members[1]: null: want a mapping"}},
		{"duplicate key", "listen: a:1\nlisten: b:2\n" + configTestYAML,
			[]string{"config: line 2: ", `"listen" already defined`}},
		{"syntax error", "listen: [\n" + configTestYAML,
			[]string{"config: line 1: "}},
		{"two documents", configTestYAML + "---\n" + configTestYAML,
			[]string{"config: line 7: document 2: the configuration must be a single YAML document"}},
		{"tag", "listen: !!str 127.0.0.1:80\n" + configTestYAML,
			[]string{`config: line 1: listen: "!!str": YAML tags are not supported`}},
		{"custom tag on a list", "session:\n  cookies: !x\n    a: 1\n" + configTestYAML,
			[]string{`config: line 2: session.cookies: "!x": YAML tags are not supported`}},
		{"list at top level", "- listen\n",
			[]string{"config: line 1: a list: want a mapping"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseConfigError(t, tc.data)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Parse(%s) error = %q, want it to contain %q", tc.data, got, w)
				}
			}
		})
	}
}

// TestParseConfigUnknownKeys checks that every unknown key of a file is reported, each
// with its line and path, and with a suggestion when a key of the same mapping is
// spelt almost the same.
func TestParseConfigUnknownKeys(t *testing.T) {
	const data = `session:
  routeformat: tomcat
target_groups:
  - name: fb
    healthcheck:
      path: /hc
    members:
      - id: Node1
        address: 10.1.1.12:8080
        wieght: 2
`
	got := parseConfigError(t, data)
	want := `config: line 2: session.routeformat: unknown field; did you mean "route_format"?
config: line 5: target_groups[0].healthcheck: unknown field; did you mean "health_check"?
config: line 10: target_groups[0].members[0].wieght: unknown field; did you mean "weight"?`
	if got != want {
		t.Errorf("Parse(%s) error =\n%s\nwant\n%s", data, got, want)
	}

	tests := []struct {
		name string
		data string
		want string
	}{
		{"case", "Listen: 127.0.0.1:80\n" + configTestYAML,
			`config: line 1: Listen: unknown field; did you mean "listen"?`},
		{"dash for underscore", "server:\n  max-conns: 10\n" + configTestYAML,
			`config: line 2: server.max-conns: unknown field; did you mean "max_conns"?`},
		{"missing letter", "lsten: 127.0.0.1:80\n" + configTestYAML,
			`config: line 1: lsten: unknown field; did you mean "listen"?`},
		{"doubled letter", configTestYAML + "    health_check:\n      intervall: 5s\n",
			`config: line 7: target_groups[0].health_check.intervall: unknown field; did you mean "interval"?`},
		{"nothing close", "frobnicate: 1\n" + configTestYAML,
			`config: line 1: frobnicate: unknown field`},
		{"nothing close in session.learned", "session:\n  learned:\n    size: 10\n" + configTestYAML,
			`config: line 3: session.learned.size: unknown field`},
		{"non-string key", "1: a\n" + configTestYAML,
			`config: line 1: 1: unknown field`},
		{"member key under the group", configTestYAML + "    weight: 2\n",
			`config: line 6: target_groups[0].weight: unknown field; check the indentation: "weight" is a key of target_groups[0].members[0], not of target_groups[0]`},
		{"group key under a member", configTestYAML + "        drain_timeout: 1m\n",
			`config: line 6: target_groups[0].members[0].drain_timeout: unknown field; check the indentation: "drain_timeout" is a key of target_groups[0], not of target_groups[0].members[0]`},
		{"top-level key under a group", configTestYAML + "    listen: 127.0.0.1:80\n",
			`config: line 6: target_groups[0].listen: unknown field; check the indentation: "listen" is a key of the top level, not of target_groups[0]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseConfigError(t, tc.data); got != tc.want {
				t.Errorf("Parse(%s) error = %q, want %q", tc.data, got, tc.want)
			}
		})
	}
}

// TestParseConfigIndentation checks the hints for tabs and misaligned keys, which the
// YAML parser reports without naming the cause.
func TestParseConfigIndentation(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"tab under a mapping key", "listen: 127.0.0.1:80\nlog:\n\tlevel: debug\n" + configTestYAML,
			"config: line 3: log.level: tab character used for indentation; YAML indents with spaces only"},
		{"tab before a list item", "target_groups:\n  - name: fb\n    members:\n\t- id: Node1\n",
			"config: line 4: target_groups[0].members[0].id: tab character used for indentation; YAML indents with spaces only"},
		{"tab among siblings", configTestYAML + "\t  weight: 2\n",
			"config: line 6: tab character used for indentation; YAML indents with spaces only"},
		{"key deeper than its sibling", "target_groups:\n  - name: fb\n    members:\n      - id: Node1\n          address: 10.1.1.12:8080\n",
			`config: line 5: target_groups[0].members[0].address: "address" is indented deeper than target_groups[0].members[0].id on line 4; check the indentation: keys of one mapping start in the same column`},
		{"key less deep than its sibling", "target_groups:\n  - name: fb\n    members:\n      - id: Node1\n       address: 10.1.1.12:8080\n",
			`config: line 5: "address" (column 8) is indented less than target_groups[0].members[0].id (line 4, column 9) and more than target_groups[0].members (line 3, column 5); check the indentation: keys of one mapping start in the same column`},
		{"key between two levels", configTestYAML + "   weight: 2\n",
			`config: line 6: "weight" (column 4) is indented less than target_groups[0].members (line 3, column 5) and more than target_groups (line 1, column 1); check the indentation: keys of one mapping start in the same column`},
		{"misaligned list item", "target_groups:\n  - name: a\n   - name: b\n",
			`config: line 3: the list item "- name: b" (column 4) is indented less than target_groups[0].name (line 2, column 5) and more than target_groups (line 1, column 1); check the indentation: the items of one list start in the same column`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseConfigError(t, tc.data); got != tc.want {
				t.Errorf("Parse(%q) error =\n%s\nwant\n%s", tc.data, got, tc.want)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"weight", "weight", 0},
		{"wieght", "weight", 1},
		{"lsten", "listen", 1},
		{"", "ttl", 3},
		{"kitten", "sitting", 3},
		{"ca", "abc", 3},
	}
	for _, tc := range tests {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestParseConfigErrorUnwraps checks that a decoding error keeps the YAML library's
// error for errors.As.
func TestParseConfigErrorUnwraps(t *testing.T) {
	data := configTestYAML + "        wieght: 2\n"
	_, err := Parse([]byte(data))
	var unknown *yaml.UnknownFieldError
	if !errors.As(err, &unknown) {
		t.Fatalf("Parse(%s) error = %#v, want it to wrap *yaml.UnknownFieldError", data, err)
	}
}

// TestUnmarshalYAMLStrict checks that the UnmarshalYAML methods keep the strict
// decoder's unknown-field check for the items they decode.
func TestUnmarshalYAMLStrict(t *testing.T) {
	tests := []struct {
		name string
		data string
		dst  any
	}{
		{"group", "{name: g, nmae: x}", new(Group)},
		{"health_check", "{path: /hc, intervl: 5s}", new(HealthCheck)},
		{"member", "{id: a, wieght: 1}", new(Member)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := yaml.UnmarshalWithOptions([]byte(tc.data), tc.dst, yaml.Strict())
			var unknown *yaml.UnknownFieldError
			if !errors.As(err, &unknown) {
				t.Errorf("UnmarshalWithOptions(%s, %T, Strict) error = %v, want an unknown field error", tc.data, tc.dst, err)
			}
		})
	}
}

// TestParseConfigAllErrors checks that every problem is reported at once, each on its
// own line with the line of its key.
func TestParseConfigAllErrors(t *testing.T) {
	const data = `listen: 127.0.0.1:80800
log:
  level: loud
target_groups:
  - name: fb
    path_prefix: fb
    members:
      - id: Node1
        address: 10.1.1.12:70000
        weight: 0
      - id: Node.2
        address: 10.1.1.13:8080
`
	got := parseConfigError(t, data)
	want := []string{
		`config: line 1: listen: "127.0.0.1:80800": port out of range 0-65535`,
		`config: line 3: log.level: "loud": want one of debug, info, warn, error`,
		`config: line 6: target_groups[0].path_prefix: "fb": must start with "/"`,
		`config: line 9: target_groups[0].members[0].address: "10.1.1.12:70000": port out of range 1-65535`,
		`config: line 10: target_groups[0].members[0].weight: "0": out of range 1-1000`,
		// The route was defaulted from the id, so it has no line of its own: the member's.
		`config: line 11: target_groups[0].members[1].route: "Node.2": must not contain "."`,
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("Parse(%s) error = %q, want it to contain %q", data, got, w)
		}
	}
	if n := strings.Count(got, "\n") + 1; n != len(want) {
		t.Errorf("Parse(%s) error has %d lines, want %d:\n%s", data, n, len(want), got)
	}
}

func TestValidateValid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
	}{
		{"as built", func(c *Config) {}},
		{"admin listener off", func(c *Config) { c.Admin.Listen = "" }},
		{"listen on all interfaces", func(c *Config) { c.Listen = ":8080" }},
		{"listen on port 0", func(c *Config) { c.Listen = "127.0.0.1:0" }},
		{"listen on IPv6", func(c *Config) { c.Listen = "[::1]:8080" }},
		{"no body allowed", func(c *Config) { c.Server.MaxBodyBytes = 0; c.Server.BufferBodyBytes = 4096 }},
		{"buffer equals max body", func(c *Config) { c.Server.MaxBodyBytes = 1 << 20; c.Server.BufferBodyBytes = 1 << 20 }},
		{"limits at their ends", func(c *Config) {
			c.Server.MaxHeaderBytes = 1048576
			c.Server.MaxBodyBytes = 1 << 40
			c.Log.AccessSample = 1000000
			c.Session.Learned.MaxSessions = 1 << 31
			c.Session.Learned.TTL = 720 * time.Hour
		}},
		{"no cookies but url_param", func(c *Config) { c.Session.Cookies = nil }},
		{"header only", func(c *Config) {
			c.Session.Cookies, c.Session.URLParam, c.Session.Header = nil, "", "X-Session-Id"
		}},
		{"query only", func(c *Config) { c.Session.Cookies, c.Session.URLParam, c.Session.Query = nil, "", "sid" }},
		{"hash only", func(c *Config) { c.Session.Affinity = []string{"hash"} }},
		{"active checks off", func(c *Config) { c.TargetGroups[0].HealthCheck.Path = "" }},
		{"bracketed IPv6 host", func(c *Config) { c.TargetGroups[1].Hosts = []string{"[::1]"} }},
		{"upper-case host", func(c *Config) { c.TargetGroups[1].Hosts = []string{"Shop.Example.COM"} }},
		{"same host, other prefix", func(c *Config) {
			c.TargetGroups[0].Hosts = []string{"shop.example.com"}
		}},
		{"same prefix, other hosts", func(c *Config) {
			c.TargetGroups[1].PathPrefix = "/fb"
		}},
		{"wildcard and exact host", func(c *Config) {
			c.TargetGroups[0].Hosts = []string{"*.example.com"}
			c.TargetGroups[0].PathPrefix = "/"
			c.TargetGroups[1].Hosts = []string{"example.com"}
		}},
		{"same route in two groups", func(c *Config) { c.TargetGroups[1].Members[0].Route = "Node1" }},
		{"member address by name", func(c *Config) { c.TargetGroups[0].Members[0].Address = "app-1.internal:8080" }},
		{"member address IPv6", func(c *Config) { c.TargetGroups[0].Members[0].Address = "[fd00::1]:8080" }},
		{"weight at its ends", func(c *Config) {
			c.TargetGroups[0].Members[0].Weight = 1
			c.TargetGroups[0].Members[1].Weight = 1000
		}},
		{"interval at its ends", func(c *Config) {
			c.TargetGroups[0].HealthCheck.Interval = 100 * time.Millisecond
			c.TargetGroups[0].HealthCheck.Timeout = 99 * time.Millisecond
			c.TargetGroups[1].HealthCheck.Interval = time.Hour
		}},
		{"route with dashes", func(c *Config) { c.TargetGroups[0].Members[0].Route = "node-1_a" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := configTestValid()
			tc.mutate(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() error = %q, want nil", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	const (
		g0 = "target_groups[0]"
		g1 = "target_groups[1]"
		m0 = g0 + ".members[0]"
	)
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string // `<path>: <value>: <reason or its start>`
	}{
		// Listeners.
		{"listen without port", func(c *Config) { c.Listen = "127.0.0.1" },
			`listen: "127.0.0.1": want host:port`},
		{"listen port out of range", func(c *Config) { c.Listen = "127.0.0.1:70000" },
			`listen: "127.0.0.1:70000": port out of range 0-65535`},
		{"listen port not a number", func(c *Config) { c.Listen = "127.0.0.1:http" },
			`listen: "127.0.0.1:http": port must be a number`},
		{"listen empty", func(c *Config) { c.Listen = "" },
			`listen: "": want host:port`},
		{"admin.listen without port", func(c *Config) { c.Admin.Listen = "localhost" },
			`admin.listen: "localhost": want host:port`},
		{"admin.listen negative port", func(c *Config) { c.Admin.Listen = "127.0.0.1:-1" },
			`admin.listen: "127.0.0.1:-1": port must be a number`},

		// Failover, retries and admin (issue 4).
		{"retry.max_retries", func(c *Config) { c.Retry.MaxRetries = 4 },
			`retry.max_retries: "4": out of range 0-3`},
		{"retry.retry_buffer", func(c *Config) { c.Retry.RetryBuffer = -1 },
			`retry.retry_buffer: "-1": out of range`},
		{"admin token twice", func(c *Config) { c.Admin.Token = "a"; c.Admin.TokenFile = "/etc/t" },
			`admin.token_file: "/etc/t": set token or token_file, not both`},
		{"bound_window", func(c *Config) { c.Session.BoundWindow = 0 },
			`session.bound_window: "0s": out of range 1s-1h`},
		{"expected_status", func(c *Config) { c.TargetGroups[0].HealthCheck.ExpectedStatus = "399-200" },
			g0 + `.health_check.expected_status: "399-200": want "lo-hi"`},
		{"start", func(c *Config) { c.TargetGroups[0].HealthCheck.Start = "up" },
			g0 + `.health_check.start: "up": want one of healthy, unhealthy`},
		{"jitter", func(c *Config) { c.TargetGroups[0].HealthCheck.Jitter = time.Hour },
			g0 + `.health_check.jitter: "1h0m0s": out of range`},
		{"unhealthy_interval", func(c *Config) { c.TargetGroups[0].HealthCheck.UnhealthyInterval = time.Millisecond },
			g0 + `.health_check.unhealthy_interval: "1ms": out of range 100ms-1h`},
		{"passive.consecutive_failures", func(c *Config) { c.TargetGroups[0].Passive.ConsecutiveFailures = -1 },
			g0 + `.passive.consecutive_failures: "-1": out of range 0-1000`},
		{"passive.max_ejection below ejection", func(c *Config) { c.TargetGroups[0].Passive.MaxEjection = time.Second },
			g0 + `.passive.max_ejection: "1s": out of range 10s (ejection)-24h`},
		{"drain_timeout", func(c *Config) { c.TargetGroups[0].DrainTimeout = 0 },
			g0 + `.drain_timeout: "0s": out of range 1s-168h`},
		{"strict with switch_back", func(c *Config) { c.TargetGroups[0].Strict = true; c.TargetGroups[0].SwitchBack = true },
			g0 + `.switch_back: "true": a strict group never moves sessions`},
		{"member state", func(c *Config) { c.TargetGroups[0].Members[0].State = "down" },
			m0 + `.state: "down": want one of ready, drain, maint`},

		// Log.
		{"log.level", func(c *Config) { c.Log.Level = "trace" },
			`log.level: "trace": want one of debug, info, warn, error`},
		{"log.level upper case", func(c *Config) { c.Log.Level = "INFO" },
			`log.level: "INFO": want one of`},
		{"log.format", func(c *Config) { c.Log.Format = "text" },
			`log.format: "text": want one of json, console`},
		{"log.access_sample 0", func(c *Config) { c.Log.AccessSample = 0 },
			`log.access_sample: "0": out of range 1-1000000`},
		{"log.access_sample too large", func(c *Config) { c.Log.AccessSample = 1000001 },
			`log.access_sample: "1000001": out of range 1-1000000`},
		{"log.access_format", func(c *Config) { c.Log.AccessFormat = "common" },
			`log.access_format: "common": want one of json, combined`},

		// Server.
		{"server.read_timeout 0", func(c *Config) { c.Server.ReadTimeout = 0 },
			`server.read_timeout: "0s": must be greater than 0`},
		{"server.write_timeout negative", func(c *Config) { c.Server.WriteTimeout = -time.Second },
			`server.write_timeout: "-1s": must be greater than 0`},
		{"server.idle_timeout 0", func(c *Config) { c.Server.IdleTimeout = 0 },
			`server.idle_timeout: "0s": must be greater than 0`},
		{"server.max_header_bytes too small", func(c *Config) { c.Server.MaxHeaderBytes = 1023 },
			`server.max_header_bytes: "1023": out of range 1024-1048576`},
		{"server.max_header_bytes too large", func(c *Config) { c.Server.MaxHeaderBytes = 1048577 },
			`server.max_header_bytes: "1048577": out of range 1024-1048576`},
		{"server.max_body_bytes negative", func(c *Config) { c.Server.MaxBodyBytes = -1 },
			`server.max_body_bytes: "-1": out of range 0-1099511627776`},
		{"server.max_body_bytes too large", func(c *Config) { c.Server.MaxBodyBytes = 1<<40 + 1 },
			`server.max_body_bytes: "1099511627777": out of range 0-1099511627776`},
		{"server.buffer_body_bytes too small", func(c *Config) { c.Server.BufferBodyBytes = 4095 },
			`server.buffer_body_bytes: "4095": out of range 4096-1073741824`},
		{"server.max_conns negative", func(c *Config) { c.Server.MaxConns = -1 },
			`server.max_conns: "-1": must not be negative`},

		// Client.
		{"client.dial_timeout 0", func(c *Config) { c.Client.DialTimeout = 0 },
			`client.dial_timeout: "0s": must be greater than 0`},
		{"client.read_timeout 0", func(c *Config) { c.Client.ReadTimeout = 0 },
			`client.read_timeout: "0s": must be greater than 0`},
		{"client.write_timeout 0", func(c *Config) { c.Client.WriteTimeout = 0 },
			`client.write_timeout: "0s": must be greater than 0`},
		{"client.idle_timeout negative", func(c *Config) { c.Client.IdleTimeout = -time.Minute },
			`client.idle_timeout: "-1m0s": must be greater than 0`},
		{"client.max_conns negative", func(c *Config) { c.Client.MaxConns = -5 },
			`client.max_conns: "-5": must not be negative`},

		// Session.
		{"empty cookie name", func(c *Config) { c.Session.Cookies = []string{"JSESSIONID", ""} },
			`session.cookies[1]: "": must not be empty`},
		{"cookie name with space", func(c *Config) { c.Session.Cookies = []string{"JSESSION ID"} },
			`session.cookies[0]: "JSESSION ID": contains " ", which is not allowed in a cookie name`},
		{"cookie name with semicolon", func(c *Config) { c.Session.Cookies = []string{"a;b"} },
			`session.cookies[0]: "a;b": contains ";"`},
		{"cookie name with equals", func(c *Config) { c.Session.Cookies = []string{"a=b"} },
			`session.cookies[0]: "a=b": contains "="`},
		{"cookie name with comma", func(c *Config) { c.Session.Cookies = []string{"a,b"} },
			`session.cookies[0]: "a,b": contains ","`},
		{"duplicate cookie", func(c *Config) { c.Session.Cookies = []string{"SID", "JSESSIONID", "SID"} },
			`session.cookies[2]: "SID": duplicate of session.cookies[0]`},
		{"no key source", func(c *Config) {
			c.Session.Cookies, c.Session.URLParam, c.Session.Query, c.Session.Header = nil, "", "", ""
		}, `session.cookies: []: no session key source: set cookies, url_param, query or header`},
		{"url_param with space", func(c *Config) { c.Session.URLParam = "js id" },
			`session.url_param: "js id": contains " ", which is not allowed in a URL parameter name`},
		{"url_param with ampersand", func(c *Config) { c.Session.URLParam = "a&b" },
			`session.url_param: "a&b": contains "&"`},
		{"query with equals", func(c *Config) { c.Session.Query = "sid=1" },
			`session.query: "sid=1": contains "=", which is not allowed in a query parameter name`},
		{"header with space", func(c *Config) { c.Session.Header = "X Session" },
			`session.header: "X Session": contains " ", which is not allowed in a header name`},
		{"header with colon", func(c *Config) { c.Session.Header = "X-Session:" },
			`session.header: "X-Session:": contains ":"`},
		{"affinity empty", func(c *Config) { c.Session.Affinity = []string{} },
			`session.affinity: []: must list at least one of route, learned, hash`},
		{"affinity unknown", func(c *Config) { c.Session.Affinity = []string{"route", "sticky"} },
			`session.affinity[1]: "sticky": want one of route, learned, hash`},
		{"affinity duplicate", func(c *Config) { c.Session.Affinity = []string{"route", "hash", "route"} },
			`session.affinity[2]: "route": duplicate of session.affinity[0]`},
		{"route_format", func(c *Config) { c.Session.RouteFormat = "jboss" },
			`session.route_format: "jboss": want one of auto, websphere, tomcat`},
		{"balance", func(c *Config) { c.Session.Balance = "random" },
			`session.balance: "random": want one of round_robin, least_requests`},
		{"learned.max_sessions 0", func(c *Config) { c.Session.Learned.MaxSessions = 0 },
			`session.learned.max_sessions: "0": out of range 1-2147483648`},
		{"learned.max_sessions too large", func(c *Config) { c.Session.Learned.MaxSessions = 1<<31 + 1 },
			`session.learned.max_sessions: "2147483649": out of range 1-2147483648`},
		{"learned.ttl too short", func(c *Config) { c.Session.Learned.TTL = 999 * time.Millisecond },
			`session.learned.ttl: "999ms": out of range 1s-720h`},
		{"learned.ttl too long", func(c *Config) { c.Session.Learned.TTL = 721 * time.Hour },
			`session.learned.ttl: "721h0m0s": out of range 1s-720h`},
		{"shared.budget 0", func(c *Config) { c.Session.Shared.Budget = 0 },
			`session.shared.budget: "0s": out of range 100us-1s`},
		{"shared.budget too long", func(c *Config) { c.Session.Shared.Budget = 2 * time.Second },
			`session.shared.budget: "2s": out of range 100us-1s`},
		{"shared.key_prefix too long", func(c *Config) { c.Session.Shared.KeyPrefix = strings.Repeat("k", 65) },
			`session.shared.key_prefix: "` + strings.Repeat("k", 65) + `": longer than 64 bytes`},
		{"shared.redis.addresses port", func(c *Config) { c.Session.Shared.Redis.Addresses = []string{"127.0.0.1:70000"} },
			`session.shared.redis.addresses[0]: "127.0.0.1:70000": port out of range 1-65535`},
		{"shared.redis.addresses duplicate", func(c *Config) { c.Session.Shared.Redis.Addresses = []string{"r:6379", "r:6379"} },
			`session.shared.redis.addresses[1]: "r:6379": duplicate of session.shared.redis.addresses[0]`},
		{"shared.redis.db", func(c *Config) { c.Session.Shared.Redis.DB = -1 },
			`session.shared.redis.db: "-1": out of range 0-1023`},
		{"shared.redis.password and file", func(c *Config) { c.Session.Shared.Redis.Password, c.Session.Shared.Redis.PasswordFile = "a", "/x" },
			`session.shared.redis.password_file: "/x": set password or password_file, not both`},
		{"shared.redis.password_file missing", func(c *Config) { c.Session.Shared.Redis.PasswordFile = "/nonexistent/pw" },
			`session.shared.redis.password_file: "/nonexistent/pw": open /nonexistent/pw: no such file or directory`},
		{"shared.redis.tls cert without key", func(c *Config) { c.Session.Shared.Redis.TLS = &RedisTLS{CertFile: "/c.pem"} },
			`session.shared.redis.tls.cert_file: "/c.pem": cert_file and key_file go together`},
		{"shared.redis.tls ca_file missing", func(c *Config) { c.Session.Shared.Redis.TLS = &RedisTLS{CAFile: "/nonexistent/ca.pem"} },
			`session.shared.redis.tls.ca_file: "/nonexistent/ca.pem": open /nonexistent/ca.pem: no such file or directory`},

		// Groups.
		{"no groups", func(c *Config) { c.TargetGroups = nil },
			`target_groups: []: at least one target group is required`},
		{"empty group name", func(c *Config) { c.TargetGroups[1].Name = "" },
			g1 + `.name: "": must not be empty`},
		{"duplicate group name", func(c *Config) { c.TargetGroups[1].Name = "FBDevTargetGroup" },
			g1 + `.name: "FBDevTargetGroup": duplicate, already used by target_groups[0]`},
		{"empty host", func(c *Config) { c.TargetGroups[1].Hosts = []string{""} },
			g1 + `.hosts[0]: "": must not be empty`},
		{"host with port", func(c *Config) { c.TargetGroups[1].Hosts = []string{"shop.example.com:8080"} },
			g1 + `.hosts[0]: "shop.example.com:8080": must not include a port`},
		{"host with space", func(c *Config) { c.TargetGroups[1].Hosts = []string{"shop example.com"} },
			g1 + `.hosts[0]: "shop example.com": must not contain spaces`},
		{"host with slash", func(c *Config) { c.TargetGroups[1].Hosts = []string{"shop.example.com/fb"} },
			g1 + `.hosts[0]: "shop.example.com/fb": want a host name, not a URL or a path`},
		{"host as URL", func(c *Config) { c.TargetGroups[1].Hosts = []string{"http://shop.example.com"} },
			g1 + `.hosts[0]: "http://shop.example.com": must not include a port`},
		{"host non-ASCII", func(c *Config) { c.TargetGroups[1].Hosts = []string{"bücher.example"} },
			g1 + `.hosts[0]: "bücher.example": must be ASCII`},
		{"host empty label", func(c *Config) { c.TargetGroups[1].Hosts = []string{"shop..example.com"} },
			g1 + `.hosts[0]: "shop..example.com": has an empty label`},
		{"host trailing dot", func(c *Config) { c.TargetGroups[1].Hosts = []string{"example.com."} },
			g1 + `.hosts[0]: "example.com.": has an empty label`},
		{"wildcard alone", func(c *Config) { c.TargetGroups[1].Hosts = []string{"*"} },
			g1 + `.hosts[0]: "*": a wildcard is allowed only as a leading "*."`},
		{"wildcard without label", func(c *Config) { c.TargetGroups[1].Hosts = []string{"*."} },
			g1 + `.hosts[0]: "*.": a wildcard must be followed by at least one label`},
		{"wildcard in the middle", func(c *Config) { c.TargetGroups[1].Hosts = []string{"shop.*.com"} },
			g1 + `.hosts[0]: "shop.*.com": a wildcard is allowed only as a leading "*."`},
		{"wildcard inside a label", func(c *Config) { c.TargetGroups[1].Hosts = []string{"*shop.example.com"} },
			g1 + `.hosts[0]: "*shop.example.com": a wildcard is allowed only as a leading "*."`},
		{"double wildcard", func(c *Config) { c.TargetGroups[1].Hosts = []string{"*.*.example.com"} },
			g1 + `.hosts[0]: "*.*.example.com": a wildcard is allowed only as a leading "*."`},
		{"unbracketed IPv6 host", func(c *Config) { c.TargetGroups[1].Hosts = []string{"::1"} },
			g1 + `.hosts[0]: "::1": must not include a port`},
		{"bad bracketed host", func(c *Config) { c.TargetGroups[1].Hosts = []string{"[shop]"} },
			g1 + `.hosts[0]: "[shop]": want a host name, an IPv4 address or a bracketed IPv6 address`},
		{"duplicate host", func(c *Config) { c.TargetGroups[1].Hosts = []string{"shop.example.com", "SHOP.example.com"} },
			g1 + `.hosts[1]: "SHOP.example.com": duplicate of target_groups[1].hosts[0]`},
		{"path_prefix without slash", func(c *Config) { c.TargetGroups[0].PathPrefix = "fb" },
			g0 + `.path_prefix: "fb": must start with "/"`},
		{"path_prefix empty", func(c *Config) { c.TargetGroups[0].PathPrefix = "" },
			g0 + `.path_prefix: "": must start with "/"`},
		{"path_prefix with query", func(c *Config) { c.TargetGroups[0].PathPrefix = "/fb?x=1" },
			g0 + `.path_prefix: "/fb?x=1": must not contain "?"`},
		{"path_prefix with semicolon", func(c *Config) { c.TargetGroups[0].PathPrefix = "/fb;jsessionid=" },
			g0 + `.path_prefix: "/fb;jsessionid=": must not contain ";"`},
		{"path_prefix with fragment", func(c *Config) { c.TargetGroups[0].PathPrefix = "/fb#top" },
			g0 + `.path_prefix: "/fb#top": must not contain "#"`},
		{"path_prefix with space", func(c *Config) { c.TargetGroups[0].PathPrefix = "/f b" },
			g0 + `.path_prefix: "/f b": must not contain spaces or control characters`},
		{"overlap any host", func(c *Config) { c.TargetGroups[1].Hosts = nil; c.TargetGroups[1].PathPrefix = "/fb/" },
			g1 + `.path_prefix: "/fb/": overlaps target_groups[0] ("FBDevTargetGroup"): both match any host with path prefix "/fb"`},
		{"overlap same host, other case", func(c *Config) {
			c.TargetGroups[0].Hosts = []string{"www.example.com", "Shop.Example.com"}
			c.TargetGroups[0].PathPrefix = "/"
		}, g1 + `.path_prefix: "/": overlaps target_groups[0] ("FBDevTargetGroup"): both match host "shop.example.com" with path prefix "/"`},
		{"health_check.path relative", func(c *Config) { c.TargetGroups[0].HealthCheck.Path = "healthcheck" },
			g0 + `.health_check.path: "healthcheck": must start with "/"`},
		{"health_check.path with space", func(c *Config) { c.TargetGroups[0].HealthCheck.Path = "/health check" },
			g0 + `.health_check.path: "/health check": must not contain spaces or control characters`},
		{"health_check.interval too short", func(c *Config) {
			c.TargetGroups[0].HealthCheck.Interval = 99 * time.Millisecond
			c.TargetGroups[0].HealthCheck.Timeout = 50 * time.Millisecond
		}, g0 + `.health_check.interval: "99ms": out of range 100ms-1h`},
		{"health_check.interval too long", func(c *Config) { c.TargetGroups[0].HealthCheck.Interval = 61 * time.Minute },
			g0 + `.health_check.interval: "1h1m0s": out of range 100ms-1h`},
		{"health_check.timeout 0", func(c *Config) { c.TargetGroups[0].HealthCheck.Timeout = 0 },
			g0 + `.health_check.timeout: "0s": must be greater than 0`},
		{"health_check.timeout equal to interval", func(c *Config) { c.TargetGroups[0].HealthCheck.Timeout = 5 * time.Second },
			g0 + `.health_check.timeout: "5s": must be below interval (5s)`},
		{"health_check.healthy_threshold 0", func(c *Config) { c.TargetGroups[0].HealthCheck.HealthyThreshold = 0 },
			g0 + `.health_check.healthy_threshold: "0": out of range 1-100`},
		{"health_check.healthy_threshold 101", func(c *Config) { c.TargetGroups[0].HealthCheck.HealthyThreshold = 101 },
			g0 + `.health_check.healthy_threshold: "101": out of range 1-100`},
		{"health_check.unhealthy_threshold negative", func(c *Config) { c.TargetGroups[0].HealthCheck.UnhealthyThreshold = -1 },
			g0 + `.health_check.unhealthy_threshold: "-1": out of range 1-100`},

		// Members.
		{"no members", func(c *Config) { c.TargetGroups[1].Members = nil },
			g1 + `.members: []: at least one member is required`},
		{"empty member id", func(c *Config) { c.TargetGroups[0].Members[0].ID = "" },
			m0 + `.id: "": must not be empty`},
		{"member id duplicate across groups", func(c *Config) { c.TargetGroups[1].Members[0].ID = "Node2" },
			g1 + `.members[0].id: "Node2": duplicate, already used by target_groups[0].members[1]`},
		{"member id duplicate in group", func(c *Config) { c.TargetGroups[0].Members[1].ID = "Node1" },
			g0 + `.members[1].id: "Node1": duplicate, already used by target_groups[0].members[0]`},
		{"address port out of range", func(c *Config) { c.TargetGroups[1].Members[0].Address = "10.1.1.12:70000" },
			g1 + `.members[0].address: "10.1.1.12:70000": port out of range 1-65535`},
		{"address port 0", func(c *Config) { c.TargetGroups[0].Members[0].Address = "10.1.1.12:0" },
			m0 + `.address: "10.1.1.12:0": port out of range 1-65535`},
		{"address port name", func(c *Config) { c.TargetGroups[0].Members[0].Address = "10.1.1.12:http" },
			m0 + `.address: "10.1.1.12:http": port must be a number`},
		{"address without port", func(c *Config) { c.TargetGroups[0].Members[0].Address = "10.1.1.12" },
			m0 + `.address: "10.1.1.12": want host:port`},
		{"address without host", func(c *Config) { c.TargetGroups[0].Members[0].Address = ":8080" },
			m0 + `.address: ":8080": host must not be empty`},
		{"address empty", func(c *Config) { c.TargetGroups[0].Members[0].Address = "" },
			m0 + `.address: "": want host:port`},
		{"address as URL", func(c *Config) { c.TargetGroups[0].Members[0].Address = "http://10.1.1.12:8080" },
			m0 + `.address: "http://10.1.1.12:8080": want host:port`},
		{"empty route", func(c *Config) { c.TargetGroups[0].Members[0].Route = "" },
			m0 + `.route: "": must not be empty`},
		{"route with colon", func(c *Config) { c.TargetGroups[0].Members[0].Route = "a:b" },
			m0 + `.route: "a:b": must not contain ":", which separates routes in session ids`},
		{"route with plus", func(c *Config) { c.TargetGroups[0].Members[0].Route = "a+b" },
			m0 + `.route: "a+b": must not contain "+"`},
		{"route with dot", func(c *Config) { c.TargetGroups[0].Members[0].Route = "a.b" },
			m0 + `.route: "a.b": must not contain "."`},
		{"route with semicolon", func(c *Config) { c.TargetGroups[0].Members[0].Route = "a;b" },
			m0 + `.route: "a;b": must not contain ";"`},
		{"route with slash", func(c *Config) { c.TargetGroups[0].Members[0].Route = "a/b" },
			m0 + `.route: "a/b": must not contain "/"`},
		{"route with space", func(c *Config) { c.TargetGroups[0].Members[0].Route = "a b" },
			m0 + `.route: "a b": must not contain spaces or control characters`},
		{"route with quote", func(c *Config) { c.TargetGroups[0].Members[0].Route = `a"b` },
			m0 + `.route: "a\"b": must not contain "\"", which a cookie value cannot carry`},
		{"route defaulted from a bad id", func(c *Config) {
			c.TargetGroups[0].Members[0].ID = "node.1"
			c.TargetGroups[0].Members[0].Route = "node.1"
		}, m0 + `.route: "node.1": must not contain ".", which separates routes in session ids (route defaults to the member id; set route)`},
		{"duplicate route in group", func(c *Config) { c.TargetGroups[0].Members[1].Route = "Node1" },
			g0 + `.members[1].route: "Node1": duplicate in the group, already used by target_groups[0].members[0]`},
		{"weight 0", func(c *Config) { c.TargetGroups[0].Members[0].Weight = 0 },
			m0 + `.weight: "0": out of range 1-1000`},
		{"weight 1001", func(c *Config) { c.TargetGroups[0].Members[0].Weight = 1001 },
			m0 + `.weight: "1001": out of range 1-1000`},
		{"weight negative", func(c *Config) { c.TargetGroups[0].Members[0].Weight = -1 },
			m0 + `.weight: "-1": out of range 1-1000`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := configTestValid()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() error = nil, want it to contain %q", tc.want)
			}
			got := err.Error()
			if !strings.Contains(got, tc.want) {
				t.Errorf("Validate() error = %q, want it to contain %q", got, tc.want)
			}
			// One bad value is one problem: nothing else may be reported with it.
			if n := strings.Count(got, "\n") + 1; n != 1 {
				t.Errorf("Validate() error has %d lines, want 1:\n%s", n, got)
			}
		})
	}
}

// TestValidateAllProblems checks that Validate reports every problem, not the first.
func TestValidateAllProblems(t *testing.T) {
	c := configTestValid()
	c.Log.Format = "xml"
	c.TargetGroups[1].Members[0].Weight = 0
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() error = nil, want two problems")
	}
	for _, want := range []string{
		`config: log.format: "xml": want one of json, console`,
		`config: target_groups[1].members[0].weight: "0": out of range 1-1000`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() error = %q, want it to contain %q", err, want)
		}
	}
}

// TestValidateDoesNotChange checks that Validate leaves the config alone, defaults
// included: an empty route stays empty and is reported.
func TestValidateDoesNotChange(t *testing.T) {
	c := configTestValid()
	c.TargetGroups[0].Members[0].Route = ""
	c.TargetGroups[0].Members[0].Weight = 0
	before := fmt.Sprintf("%+v", c)
	_ = c.Validate()
	if after := fmt.Sprintf("%+v", c); after != before {
		t.Errorf("Validate() changed the config:\n%s\nwant\n%s", after, before)
	}
}
