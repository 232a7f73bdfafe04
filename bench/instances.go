package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/internal/demo"
)

// Affinity modes of RunInstances: how sessions are kept on their member.
const (
	// InstancesRoute: WebSphere ids with the member's clone id ([route, learned, hash]).
	InstancesRoute = "route"
	// InstancesCookie: clients keep only the gateway's signed affinity cookie
	// ([route, cookie, learned, hash]); the members' own ids are dropped.
	InstancesCookie = "cookie"
	// InstancesHash: each client brings its own key (X-Session) and the members' ids are
	// dropped ([hash]).
	InstancesHash = "hash"
	// InstancesLearnedRedis: route-less ids learned from Set-Cookie, bindings shared
	// through Redis ([route, learned, hash], session.shared).
	InstancesLearnedRedis = "learned-redis"
	// InstancesLearnedLocal: the same without Redis: each instance learns alone. The
	// control: its sessions are expected to break across instances.
	InstancesLearnedLocal = "learned-local"
)

// InstancesOptions configure RunInstances.
type InstancesOptions struct {
	// Executable is the sessiongate binary the instances run (`serve -config`).
	// Default os.Args[0].
	Executable string
	// Instances is the number of gateway processes. Default 3.
	Instances int
	// Members is the number of members. Default 3.
	Members int
	// Sessions is the number of clients, one session each. Default 200.
	Sessions int
	// Requests is how many requests each client sends before the member kill, and
	// again after it. Default 20.
	Requests int
	// Modes are the affinity modes to run. Default route, cookie, hash, and
	// learned-redis when Redis is set.
	Modes []string
	// Redis is the address of the Redis the learned-redis mode shares bindings
	// through; "" skips that mode.
	Redis string
	// Concurrency is how many clients run at once. Default 32.
	Concurrency int
}

// InstancesResult is one mode's run.
type InstancesResult struct {
	Mode      string `json:"mode"`
	Instances int    `json:"instances"`
	Sessions  int    `json:"sessions"`
	Requests  int    `json:"requests"`
	Failed    int    `json:"failed"` // answers other than 200, and transport errors
	// Violations counts requests of a session answered by another member than the
	// session's: before the kill, the session's first member; after it, the first member
	// that answered it after the kill (the killed member's sessions move once).
	Violations int    `json:"violations"`
	Moved      int    `json:"moved_sessions"` // sessions of the killed member that moved
	Killed     string `json:"killed_member"`
	Note       string `json:"note,omitempty"`
}

func (o *InstancesOptions) defaults() {
	if o.Executable == "" {
		o.Executable = os.Args[0]
	}
	if o.Instances == 0 {
		o.Instances = 3
	}
	if o.Members == 0 {
		o.Members = 3
	}
	if o.Sessions == 0 {
		o.Sessions = 200
	}
	if o.Requests == 0 {
		o.Requests = 20
	}
	if o.Concurrency == 0 {
		o.Concurrency = 32
	}
	if len(o.Modes) == 0 {
		o.Modes = []string{InstancesRoute, InstancesCookie, InstancesHash}
		if o.Redis != "" {
			o.Modes = append(o.Modes, InstancesLearnedRedis)
		}
	}
}

// RunInstances proves that N gateway processes on one configuration route every
// session alike: in each mode it starts the members and o.Instances gateway processes,
// sends each client's requests to a random instance each time, kills one member
// halfway, and counts the requests that reached another member than their session's.
func RunInstances(ctx context.Context, o InstancesOptions) ([]InstancesResult, error) {
	o.defaults()
	var out []InstancesResult
	for _, mode := range o.Modes {
		if mode == InstancesLearnedRedis && o.Redis == "" {
			out = append(out, InstancesResult{Mode: mode, Note: "skipped: no Redis address"})
			continue
		}
		r, err := runInstancesMode(ctx, o, mode)
		if err != nil {
			return out, fmt.Errorf("bench: instances, mode %s: %w", mode, err)
		}
		out = append(out, *r)
	}
	return out, nil
}

func runInstancesMode(ctx context.Context, o InstancesOptions, mode string) (*InstancesResult, error) {
	ids := demo.Plain
	if mode == InstancesRoute {
		ids = demo.WebSphere
	}
	var members []*demo.Member
	defer func() {
		for _, m := range members {
			m.Close()
		}
	}()
	for i := range o.Members {
		m, err := demo.Start(demo.Options{ID: fmt.Sprintf("n%d", i+1), IDs: ids, HealthPath: "/health"})
		if err != nil {
			return nil, err
		}
		members = append(members, m)
	}
	dir, err := os.MkdirTemp("", "sessiongate-instances-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var gws []*proxy
	defer func() {
		for _, g := range gws {
			g.stop()
		}
	}()
	for i := range o.Instances {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		yml := instancesYAML(addr, mode, o.Redis, members)
		if _, err := config.Parse(yml); err != nil {
			return nil, fmt.Errorf("generated config: %w", err)
		}
		sub := filepath.Join(dir, fmt.Sprint(i))
		if err := os.Mkdir(sub, 0o700); err != nil {
			return nil, err
		}
		file := filepath.Join(sub, "sessiongate.yaml")
		if err := os.WriteFile(file, yml, 0o600); err != nil {
			return nil, err
		}
		g, err := startChild(Options{}, sub, addr, o.Executable, "serve", "-config", file)
		if err != nil {
			return nil, err
		}
		gws = append(gws, g)
	}

	clients := make([]*instanceClient, o.Sessions)
	tr := &http.Transport{MaxIdleConnsPerHost: o.Concurrency, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i := range clients {
		clients[i] = &instanceClient{mode: mode, key: fmt.Sprintf("client-%d-%x", i, rand.Uint64()), cookies: map[string]string{}}
	}
	res := &InstancesResult{Mode: mode, Instances: o.Instances, Sessions: o.Sessions}
	run := func(phase int) error {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		sem := make(chan struct{}, o.Concurrency)
		for _, c := range clients {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				for range o.Requests {
					if ctx.Err() != nil {
						return
					}
					g := gws[rand.IntN(len(gws))]
					member, err := c.get(ctx, hc, "http://"+g.addr+"/app")
					mu.Lock()
					res.Requests++
					switch {
					case err != nil:
						res.Failed++
						if firstErr == nil {
							firstErr = err
						}
					case c.member[phase] == "":
						c.member[phase] = member
					case c.member[phase] != member:
						res.Violations++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if firstErr != nil && res.Note == "" {
			res.Note = "first failure: " + firstErr.Error()
		}
		return nil
	}
	if err := run(0); err != nil {
		return nil, err
	}
	// The kill: the member with most sessions, so that many move.
	count := map[string]int{}
	for _, c := range clients {
		count[c.member[0]]++
	}
	victim := members[0]
	for _, m := range members {
		if count[m.ID] > count[victim.ID] {
			victim = m
		}
	}
	res.Killed = victim.ID
	victim.Close()
	if err := run(1); err != nil {
		return nil, err
	}
	for _, c := range clients {
		if c.member[0] == victim.ID {
			res.Moved++
		} else if c.member[1] != c.member[0] && c.member[1] != "" {
			res.Violations++ // a survivor's session that moved
		}
	}
	return res, nil
}

// instanceClient is one session: the cookies it keeps and the member of each phase.
type instanceClient struct {
	mode    string
	key     string
	cookies map[string]string
	member  [2]string
}

// get sends one request and returns the member that answered; it keeps the cookies
// its mode keeps.
func (c *instanceClient) get(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	var parts []string
	for k, v := range c.cookies {
		parts = append(parts, k+"="+v)
	}
	if len(parts) > 0 {
		req.Header.Set("Cookie", strings.Join(parts, "; "))
	}
	if c.mode == InstancesHash {
		req.Header.Set("X-Session", c.key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	for _, ck := range resp.Cookies() {
		switch {
		case c.mode == InstancesCookie && ck.Name == "SGROUTE",
			c.mode != InstancesCookie && c.mode != InstancesHash && ck.Name == "JSESSIONID":
			c.cookies[ck.Name] = ck.Value
		}
	}
	member := resp.Header.Get("X-Member")
	if member == "" {
		return "", errors.New("answer without X-Member")
	}
	return member, nil
}

// instancesYAML is the one configuration every instance of a mode runs, but for its
// listen address: active checks every 200ms, retries on, access log off.
func instancesYAML(listen, mode, redis string, members []*demo.Member) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %q\nadmin: {listen: \"\"}\nlog: {level: warn, access: false}\nshutdown_timeout: 2s\n", listen)
	switch mode {
	case InstancesRoute, InstancesLearnedLocal:
		b.WriteString("session: {affinity: [route, learned, hash]}\n")
	case InstancesLearnedRedis:
		fmt.Fprintf(&b, "session:\n  affinity: [route, learned, hash]\n  shared: {redis: {addresses: [%q]}, budget: 50ms}\n", redis)
	case InstancesCookie:
		b.WriteString("session:\n  affinity: [route, cookie, learned, hash]\n  cookie: {keys: [instances-bench-key-0001]}\n")
	case InstancesHash:
		b.WriteString("session: {affinity: [hash], header: X-Session}\n")
	}
	b.WriteString("target_groups:\n  - name: app\n    path_prefix: /\n    health_check: {path: /health, interval: 200ms, timeout: 100ms, unhealthy_threshold: 1, unhealthy_interval: 100ms}\n    members:\n")
	for _, m := range members {
		fmt.Fprintf(&b, "      - {id: %s, address: %q}\n", m.ID, m.Addr())
	}
	return []byte(b.String())
}

// WriteInstances prints RunInstances' results as a table.
func WriteInstances(w io.Writer, rs []InstancesResult) {
	fmt.Fprintf(w, "%-14s %9s %8s %8s %6s %10s %6s %s\n", "mode", "instances", "sessions", "requests", "failed", "violations", "moved", "note")
	for _, r := range rs {
		fmt.Fprintf(w, "%-14s %9d %8d %8d %6d %10d %6d %s\n", r.Mode, r.Instances, r.Sessions, r.Requests, r.Failed, r.Violations, r.Moved, r.Note)
	}
}
