package bench

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/gateway"
	"github.com/sessiongate/sessiongate/internal/demo"
)

// proxy is a running proxy under test: the gateway or a peer.
type proxy struct {
	addr string
	pid  int // 0 when in-process
	stop func()
}

// gatewayConfig is the gateway configuration of the bench: one group on "/", the
// members at addrs with routes n1..nN, active checks off, access log off. With
// dataplane config.DataplaneEpoll, listen is a listeners entry served by the epoll
// data path; otherwise ("" or config.DataplaneFasthttp) it is the listen shorthand.
func gatewayConfig(listen string, reusePort bool, dataplane string, members []*demo.Member, addrs []string) *config.Config {
	cfg := config.Default()
	cfg.Listen = listen
	if dataplane == config.DataplaneEpoll {
		cfg.Listeners = []config.Listener{{Address: listen, HTTP2: true, Dataplane: config.DataplaneEpoll}}
	}
	cfg.ReusePort = reusePort
	cfg.Admin.Listen = ""
	cfg.Log.Access = false
	cfg.Log.Level = "warn"
	cfg.ShutdownTimeout = 5 * time.Second
	g := config.NewGroup("bench", "/")
	for i, m := range members {
		mc := config.NewMember(m.ID, addrs[i])
		mc.Route = m.Route
		g.Members = append(g.Members, mc)
	}
	cfg.TargetGroups = []config.Group{g}
	return &cfg
}

// gatewayYAML is gatewayConfig as a configuration file for `sessiongate serve`, the
// epoll data path written as `listeners: [{address: ..., dataplane: epoll}]`. With
// certs it has instead one TLS 1.3 listener on listen serving that certificate, with
// HTTP/2 off unless h2: the HTTP/1.1 loads are then served by fasthttp alone, as the
// peers offer only HTTP/1.1 for them. (The TLS bench is fasthttp's only: a TLS listener
// with dataplane epoll is written as asked, and refused by config.Parse.)
func gatewayYAML(listen string, reusePort bool, dataplane string, members []*demo.Member, addrs []string, certs *certFiles, h2 bool) []byte {
	var b bytes.Buffer
	epoll := dataplane == config.DataplaneEpoll
	switch {
	case certs != nil:
		fmt.Fprintf(&b, "listeners:\n  - address: %q\n    http2: %t\n    tls:\n      certificates:\n        - {cert_file: %q, key_file: %q}\n      min_version: \"1.3\"\n",
			listen, h2, certs.Cert, certs.Key)
		if epoll {
			fmt.Fprintf(&b, "    dataplane: %s\n", config.DataplaneEpoll)
		}
	case epoll:
		fmt.Fprintf(&b, "listeners: [{address: %q, dataplane: %s}]\n", listen, config.DataplaneEpoll)
	default:
		fmt.Fprintf(&b, "listen: %q\n", listen)
	}
	fmt.Fprintf(&b, "reuseport: %t\nadmin:\n  listen: \"\"\nlog:\n  level: warn\n  access: false\nshutdown_timeout: 5s\n", reusePort)
	fmt.Fprintf(&b, "target_groups:\n  - name: bench\n    path_prefix: /\n    members:\n")
	for i, m := range members {
		fmt.Fprintf(&b, "      - id: %s\n        address: %q\n        route: %s\n", m.ID, addrs[i], m.Route)
	}
	return b.Bytes()
}

// startGateway starts the gateway in front of the members at addrs, in-process or as
// a child (o.Mode), on the data path dataplane (config.Listener.Dataplane); with
// certs, behind a TLS listener, with HTTP/2 if h2 (see gatewayYAML).
func startGateway(o Options, dataplane string, members []*demo.Member, addrs []string, certs *certFiles, h2 bool) (*proxy, error) {
	if o.Mode == ModeChild {
		return startGatewayChild(o, dataplane, members, addrs, certs, h2)
	}
	cfg := gatewayConfig("127.0.0.1:0", o.ReusePort, dataplane, members, addrs)
	want := ""
	if certs != nil {
		// The TLS listener is configured as a user would write it, so the bench
		// depends on the file format only.
		var err error
		if want, err = freeAddr(); err != nil {
			return nil, err
		}
		if cfg, err = config.Parse(gatewayYAML(want, o.ReusePort, dataplane, members, addrs, certs, h2)); err != nil {
			return nil, fmt.Errorf("bench: generated gateway config: %w", err)
		}
	}
	s, err := gateway.New(cfg, zerolog.Nop())
	if err != nil {
		return nil, fmt.Errorf("bench: gateway: %w", err)
	}
	lns, err := s.Listen()
	if err != nil {
		_ = s.Shutdown(time.Second)
		return nil, fmt.Errorf("bench: gateway: %w", err)
	}
	if want != "" && (len(lns) == 0 || lns[0].Addr().String() != want) {
		_ = s.Shutdown(time.Second)
		return nil, fmt.Errorf("bench: gateway: the TLS listener %s was not opened (listeners not served)", want)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(lns, nil) }()
	return &proxy{addr: lns[0].Addr().String(), stop: func() {
		_ = s.Shutdown(5 * time.Second)
		<-errc
	}}, nil
}

func startGatewayChild(o Options, dataplane string, members []*demo.Member, addrs []string, certs *certFiles, h2 bool) (*proxy, error) {
	dir, err := os.MkdirTemp("", "sessiongate-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	yml := gatewayYAML(addr, o.ReusePort, dataplane, members, addrs, certs, h2)
	if _, err := config.Parse(yml); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: generated gateway config: %w", err)
	}
	file := filepath.Join(dir, "sessiongate.yaml")
	if err := os.WriteFile(file, yml, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: %w", err)
	}
	exe := o.Executable
	if exe == "" {
		exe = os.Args[0]
	}
	return startChild(o, dir, addr, exe, "serve", "-config", file)
}

// startChild runs name args (under taskset when asked and installed) with its output
// in dir/output.log, waits until addr accepts connections, and returns it as a proxy
// whose stop ends it with SIGTERM and removes dir.
func startChild(o Options, dir, addr, name string, args ...string) (*proxy, error) {
	shown := filepath.Base(name)
	if o.Taskset != "" {
		if ts, err := exec.LookPath("taskset"); err == nil {
			args = append([]string{"-c", o.Taskset, name}, args...)
			name = ts
		}
	}
	out, err := os.Create(filepath.Join(dir, "output.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: %w", err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: %s: %w", shown, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		out.Close()
		os.RemoveAll(dir)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "output.log"))
			stop()
			return nil, fmt.Errorf("bench: %s exited before listening on %s: %s", shown, addr, strings.TrimSpace(string(log)))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("%w: %s on %s", errNotReady, shown, addr)
		}
	}
	return &proxy{addr: addr, pid: cmd.Process.Pid, stop: stop}, nil
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startPeer starts HAProxy or NGINX in front of the members, with certs terminating
// TLS 1.3, and with h2 offering HTTP/2 too. When the binary is not installed it returns
// a nil proxy and a note saying so.
func startPeer(name string, o Options, members []*demo.Member, addrs []string, certs *certFiles, h2 bool) (*proxy, string, error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return nil, name + ": not installed (not on PATH), skipped", nil
	}
	dir, err := os.MkdirTemp("", "sessiongate-bench-"+name+"-")
	if err != nil {
		return nil, "", fmt.Errorf("bench: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	var conf []byte
	var args []string
	note := ""
	switch name {
	case "haproxy":
		conf = haproxyConfig(addr, members, addrs, certs, h2)
		file := filepath.Join(dir, "haproxy.cfg")
		args = []string{"-db", "-f", file}
		err = os.WriteFile(file, conf, 0o600)
	case "nginx":
		conf = nginxConfig(addr, dir, members, addrs, certs, h2)
		file := filepath.Join(dir, "nginx.conf")
		args = []string{"-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", file}
		err = os.WriteFile(file, conf, 0o600)
		note = "nginx: open-source NGINX cannot learn a session from Set-Cookie (that is NGINX Plus `sticky learn`); learned sessions fall back to `hash $cookie_JSESSIONID consistent` and are expected to show sticky violations"
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("bench: %w", err)
	}
	p, err := startChild(o, dir, addr, bin, args...)
	if err != nil {
		return nil, "", err
	}
	return p, note, nil
}

// haproxyConfig keeps sessions as the gateway does: a WebSphere key goes to the member
// whose clone id comes first in its clone list, a Tomcat key to the member of its
// jvmRoute (use-server on the JSESSIONID cookie); other keys stick to the member that
// issued them (stick store-response on the Set-Cookie) or first served them (stick on
// the request cookie). `cookie JSESSIONID prefix` would not read the routes the
// members write themselves, so it is not used. With certs the frontend terminates
// TLS 1.3 only, ALPN http/1.1; the members stay plain HTTP. HAProxy prefers its own
// cipher order, AES-256 first; ciphersuites puts AES-128-GCM first, which NGINX (the
// client's order) and Go servers choose, so that all proxies encrypt alike. And
// `http-reuse always`: by default (safe) the first request of each client connection
// opens a new member connection, which with one request per TLS connection would
// measure member connects that the gateway and NGINX (keepalive) do not make. With h2
// the bind offers `alpn h2,http/1.1`; HAProxy's HTTP/2 to clients needs nothing else,
// and its streams go to the members as HTTP/1.1, as the gateway's and NGINX's do.
func haproxyConfig(listen string, members []*demo.Member, addrs []string, certs *certFiles, h2 bool) []byte {
	bind, reuse := listen, ""
	if certs != nil {
		alpn := "http/1.1"
		if h2 {
			alpn = "h2,http/1.1"
		}
		reuse = "    http-reuse always\n"
		bind += " ssl crt " + certs.CertKey + " ssl-min-ver TLSv1.3 alpn " + alpn +
			" ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-keep-alive

frontend bench
    bind %s
    default_backend bench

backend bench
    balance roundrobin
    stick-table type string len 64 size 1m expire 30m
%s`, bind, reuse)
	for _, m := range members {
		fmt.Fprintf(&b, "    use-server %s if { req.cook(JSESSIONID) -m reg ^0000[^:]*:%s(:|$) }\n", m.ID, m.Route)
		fmt.Fprintf(&b, "    use-server %s if { req.cook(JSESSIONID) -m end .%s }\n", m.ID, m.Route)
	}
	b.WriteString("    stick on req.cook(JSESSIONID)\n    stick store-response res.cook(JSESSIONID)\n")
	for i, m := range members {
		fmt.Fprintf(&b, "    server %s %s\n", m.ID, addrs[i])
	}
	return b.Bytes()
}

// nginxConfig picks an upstream per route with a map of regexes on $cookie_JSESSIONID
// and falls back to consistent hashing of the cookie. With certs the server terminates
// TLS 1.3 only; the members stay plain HTTP. With h2 it offers HTTP/2 too, written
// `listen ... ssl http2;`: NGINX 1.22 (Debian 12) knows no `http2 on;` (1.25.1), and
// later versions still take the listen parameter, with a deprecation warning. NGINX
// joins the Cookie crumbs of an HTTP/2 request before $cookie_JSESSIONID reads them,
// and keepalive_requests bounds the streams of an HTTP/2 connection too.
func nginxConfig(listen, dir string, members []*demo.Member, addrs []string, certs *certFiles, h2 bool) []byte {
	server := "listen " + listen + ";"
	if certs != nil {
		ssl := " ssl;"
		if h2 {
			ssl = " ssl http2;"
		}
		server = "listen " + listen + ssl + "\n        ssl_protocols TLSv1.3;\n        ssl_certificate " + certs.Cert + ";\n        ssl_certificate_key " + certs.Key + ";"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    map $cookie_JSESSIONID $sg_upstream {
        default sg_hash;
`, dir)
	for _, m := range members {
		fmt.Fprintf(&b, "        \"~^0000[^:]*:%s(:|$)\" sg_%s;\n", m.Route, m.ID)
		fmt.Fprintf(&b, "        \"~\\.%s$\" sg_%s;\n", m.Route, m.ID)
	}
	b.WriteString("    }\n")
	for i, m := range members {
		fmt.Fprintf(&b, "    upstream sg_%s { server %s; keepalive 64; }\n", m.ID, addrs[i])
	}
	b.WriteString("    upstream sg_hash {\n        hash $cookie_JSESSIONID consistent;\n")
	for i := range members {
		fmt.Fprintf(&b, "        server %s;\n", addrs[i])
	}
	fmt.Fprintf(&b, `        keepalive 64;
    }
    server {
        %s
        keepalive_requests 1000000;
        location / {
            proxy_pass http://$sg_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
    }
}
`, server)
	return b.Bytes()
}
