package config

import "time"

// Config is the whole gateway configuration: the YAML file, with flags applied on top.
// A Config is validated completely (Validate) before anything is built from it; each
// field's comment is the user documentation docs/configuration.md is written from (a test
// keeps the two in step: config/docs_test.go).
type Config struct {
	// Listen is the client-facing address, host:port: the shorthand for one plain HTTP
	// listener when listeners is empty. Default "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// Listeners are the client-facing listeners, each plain HTTP or TLS (HTTPS and, by
	// ALPN, HTTP/2), so that :80 and :443 serve side by side. Default []: one plain
	// listener on listen. Set listen or listeners, not both.
	Listeners []Listener `yaml:"listeners"`
	// ReusePort opens the listener with SO_REUSEPORT, one listener per GOMAXPROCS,
	// so the kernel spreads connections over all cores. Default false.
	ReusePort bool `yaml:"reuseport"`
	// ShutdownTimeout is how long a graceful shutdown (SIGTERM, SIGINT) waits for
	// in-flight requests before closing their connections. Default 30s; range 0-1h.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Admin is the operator listener: admin API, /metrics, the /status page, pprof.
	Admin Admin `yaml:"admin"`
	// Forwarded says which X-Forwarded-For values from clients are believed.
	Forwarded Forwarded `yaml:"forwarded"`
	// Log sets the process log and the access log.
	Log Log `yaml:"log"`
	// Server holds the client-facing limits and timeouts.
	Server Server `yaml:"server"`
	// Client holds the settings of the connection pools towards members.
	Client Client `yaml:"client"`
	// Retry says when a failed request is sent again to another member.
	Retry Retry `yaml:"retry"`
	// Session says where the session key is read and how affinity is resolved.
	Session Session `yaml:"session"`
	// TargetGroups are the groups of members, selected by Host and path prefix.
	// At least one is required.
	TargetGroups []Group `yaml:"target_groups"`
}

// Listener is one client-facing listener.
type Listener struct {
	// Address is host:port. Required; unique among the listeners.
	Address string `yaml:"address"`
	// TLS terminates TLS on this listener. Absent: plain HTTP.
	TLS *ListenerTLS `yaml:"tls"`
	// HTTP2 offers HTTP/2 (ALPN h2) beside HTTP/1.1 on a TLS listener; each HTTP/2
	// request is routed and proxied like an HTTP/1.1 one, over HTTP/1.1 to the member.
	// Without TLS it has no effect. Default true.
	HTTP2 bool `yaml:"http2"`
	// ProxyProtocol expects a PROXY protocol header (v1 or v2) at the start of every
	// connection, from an L4 load balancer; the address it names is the client's in
	// logs, X-Forwarded-For and per-client limits. A connection without one is closed.
	// Default false.
	ProxyProtocol bool `yaml:"proxy_protocol"`
	// RedirectHTTPS answers every request of this plain listener with 308 to the same
	// host and target over https, on the port of the first TLS listener (left out when
	// it is 443). Needs a TLS listener. Default false.
	RedirectHTTPS bool `yaml:"redirect_https"`
	// Dataplane is what serves this listener's connections: "fasthttp" (default),
	// fasthttp's server and client on Go's poller, or "epoll" (Linux, plain listeners
	// without proxy_protocol), an event loop per core that reads and writes clients and
	// members itself, with fewer system calls per request. It serves keep-alive HTTP/1.1
	// requests without a body or with one of at most retry.retry_buffer and
	// server.buffer_body_bytes (read whole first, so that a retry can send it again), to
	// members over plain HTTP on IP addresses; a connection whose request is anything else (an upgrade,
	// a chunked or larger body, Expect, HTTP/1.0, a head it cannot parse, a group with
	// member TLS or host names) goes on in fasthttp's data path from that request on,
	// so both answer alike. Not with session.shared, whose reads would stall a loop.
	Dataplane string `yaml:"dataplane"`
}

// Data paths (Listener.Dataplane).
const (
	DataplaneFasthttp = "fasthttp"
	DataplaneEpoll    = "epoll"
)

// ListenerTLS is the TLS of a listener. The defaults are modern: TLS 1.2 and 1.3, ECDHE
// key exchange and AEAD ciphers only.
type ListenerTLS struct {
	// Certificates are PEM certificate chains and keys. Each is served to the names of
	// its certificate (DNS names, wildcards "*.example.com" for one label, IP
	// addresses), chosen by the client's SNI; the first is served when no name matches.
	// At least one. They are read again on reload (SIGHUP, POST /api/reload) and when a
	// file changes; a pair that fails to load is refused and the old one keeps serving.
	Certificates []Certificate `yaml:"certificates"`
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// ClientAuth asks clients for a certificate: none (default), request (verified
	// when given) or require (a connection without a valid one is refused).
	ClientAuth string `yaml:"client_auth"`
	// ClientCAFile is the PEM file of the CAs client certificates must chain to.
	// Required with request and require. Default "".
	ClientCAFile string `yaml:"client_ca_file"`
	// TicketKeysFile holds session ticket keys, one per line, each 32 bytes as 64 hex
	// digits ("openssl rand -hex 32"); the first seals new tickets, all open them.
	// Instances that share the file resume each other's TLS sessions, and route them
	// alike (the tls resolver). Default "": keys of this process, rotated by Go.
	TicketKeysFile string `yaml:"ticket_keys_file"`
	// HSTS adds Strict-Transport-Security to every answer on this listener.
	HSTS HSTS `yaml:"hsts"`
}

// Certificate is one certificate chain and its private key.
type Certificate struct {
	// CertFile is the PEM certificate chain, leaf first. Required.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of the leaf. Required.
	KeyFile string `yaml:"key_file"`
}

// HSTS is the Strict-Transport-Security header of a TLS listener.
type HSTS struct {
	// MaxAge is the header's max-age; 0 sends no header. Default 0; range 0-87600h.
	MaxAge time.Duration `yaml:"max_age"`
	// IncludeSubdomains adds includeSubDomains. Default false.
	IncludeSubdomains bool `yaml:"include_subdomains"`
	// Preload adds preload. Default false.
	Preload bool `yaml:"preload"`
}

// Admin is the admin listener.
type Admin struct {
	// Listen is the admin address, host:port. Default "127.0.0.1:9090"; "" disables it.
	// Keep it on loopback or a management network: reads need no token.
	Listen string `yaml:"listen"`
	// Token is the bearer token that mutations (POST) require, sent as
	// "Authorization: Bearer <token>". Default "": mutations are refused (401). It is
	// never logged.
	Token string `yaml:"token"`
	// TokenFile is a file holding the token (surrounding white space is trimmed); it
	// takes the place of token. Default "".
	TokenFile string `yaml:"token_file"`
	// Hosts are the Host names (without port) the admin listener answers besides IP
	// literals and localhost, so that a DNS-rebinding page in an operator's browser
	// cannot read it; any other Host gets 421. Default []: IP literals and localhost only.
	Hosts []string `yaml:"hosts"`
}

// Forwarded says whom the gateway believes about the client address.
type Forwarded struct {
	// TrustedProxies are the peers (CIDRs, or single addresses) whose X-Forwarded-For
	// is kept: the member gets their values, in order, then the peer's address. From
	// any other peer the header is replaced by the peer's address alone. Every
	// X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host the client sent is
	// removed before the gateway writes its own. Default []: no one is trusted.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Retry says when a failed request is sent again, always to another member.
type Retry struct {
	// MaxRetries is how many more members one request may try. A request is retried
	// only when it provably did not reach a member (connection refused or reset while
	// connecting, dial timeout) or, for idempotent methods with
	// idempotent_on_timeout, when the member timed out or closed the connection before
	// answering. Never once a response byte went to the client. Default 1; range 0-3.
	MaxRetries int `yaml:"max_retries"`
	// RetryBuffer is the largest request body kept so that it can be sent again; a
	// failed request with a larger body is not retried (502). Bodies past
	// server.buffer_body_bytes stream through and are never kept, whatever this says.
	// Default 65536; range 0-1073741824.
	RetryBuffer int `yaml:"retry_buffer"`
	// IdempotentOnTimeout also retries GET, HEAD, OPTIONS, PUT, DELETE and TRACE after a
	// member read timeout or a connection closed before the response. Default true.
	IdempotentOnTimeout bool `yaml:"idempotent_on_timeout"`
	// TryTimeout bounds each attempt of an idempotent request (GET, HEAD, OPTIONS, PUT,
	// DELETE, TRACE): a member that has not answered in this time is left, and with
	// idempotent_on_timeout the request goes to the next one, as Envoy's per-try
	// timeout. Other requests keep client.read_timeout. 0 turns it off. Default 0; range
	// 0 up to client.read_timeout.
	TryTimeout time.Duration `yaml:"try_timeout"`
}

// Log sets logging.
type Log struct {
	// Level is one of debug, info, warn, error. Default info.
	Level string `yaml:"level"`
	// Format is json (default) or console (human-readable, for a terminal).
	Format string `yaml:"format"`
	// Access turns the per-request access log on. Default true.
	Access bool `yaml:"access"`
	// AccessSample logs one proxied request in N (1 = every request). Default 1; range
	// 1-1000000. Requests the gateway itself fails (404, 413, 502, 503, ...) are always
	// logged, whatever log.access and access_sample say.
	AccessSample uint32 `yaml:"access_sample"`
	// AccessFormat is how access lines are written: json (default), fields of the
	// process log's JSON, or combined: Apache/nginx combined log lines, one per line,
	// unwrapped, on the process log's output (stderr), for tools that read that format.
	// A combined line says client, time, method, path (no query or path parameters: they
	// carry session ids), protocol, status, body bytes sent, Referer and User-Agent; the
	// group, member and error are only in json. Sampling and levels are the same.
	AccessFormat string `yaml:"access_format"`
}

// Server holds the client-facing limits. Its timeouts, and Client's, are kept
// coarsely: none ends sooner than its value, and at most an eighth of it (at most 1s)
// later.
type Server struct {
	// ReadTimeout bounds reading one whole request (headers and buffered body). Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing one whole response. Default 60s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 90s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes is the largest request head (request line and headers) accepted;
	// a larger one gets 431. Default 16384; range 1024-1048576.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxBodyBytes is the largest request body accepted; a larger one gets 413.
	// Default 10485760 (10 MiB); range 0 (no body allowed) up to 1<<40.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// BufferBodyBytes is the streaming threshold: request bodies up to this size are read
	// whole before the member is contacted, larger ones are streamed through.
	// Default 65536; range 4096-1073741824.
	BufferBodyBytes int `yaml:"buffer_body_bytes"`
	// MaxConns is the most concurrent client connections; 0 means fasthttp's default
	// (256 * 1024). Default 0.
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerIP is the most concurrent connections from one client address; past it
	// a new connection is refused (fasthttp answers 429 and closes). 0 = no limit.
	// Default 0; range 0-1000000.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// HeaderTimeout bounds reading a request's head (slowloris); a head that does not
	// arrive in time gets 408. The body then has read_timeout; a header_timeout longer
	// than read_timeout is cut to it. Default 10s; range 100ms-1h.
	HeaderTimeout time.Duration `yaml:"header_timeout"`
	// PathNormalization is what happens to a path with dot segments ("/fb/../admin",
	// "/fb/%2e%2e/admin", "/fb/..%2fadmin", "/fb;x=1/../y"), which a member that
	// normalises would serve outside the group's prefix: reject (default: 400) or
	// forward (byte-exact, as received; the group is matched on the raw path).
	PathNormalization string `yaml:"path_normalization"`
	// RejectEncodedSlashes also refuses (400) paths with an encoded slash or backslash
	// ("%2f", "%5c"), for members that decode them into separators. Default false.
	RejectEncodedSlashes bool `yaml:"reject_encoded_slashes"`
	// ServerHeader is the Server header of the gateway's own answers (errors, 404); ""
	// sends none. Members' answers keep theirs. Default "".
	ServerHeader string `yaml:"server_header"`
	// TunnelIdleTimeout closes a tunnel (a WebSocket, or another protocol a member
	// switched to with 101 Switching Protocols) in which no byte moved either way for
	// this long, as HAProxy's timeout tunnel: a WebSocket client gets a close frame
	// (1001) first. Members' pings count as traffic. Default 1h; range 1s-168h.
	TunnelIdleTimeout time.Duration `yaml:"tunnel_idle_timeout"`
	// CloseTunnelsOnDown closes a member's tunnels when active checks mark it down, when
	// it is set to maint, and when its drain passes the group's drain_timeout (a
	// draining member keeps them until then), as HAProxy's on-marked-down
	// shutdown-sessions: a WebSocket client gets a close frame (1001 Going Away) at a
	// frame boundary, so that it reconnects through the gateway to a member that is up.
	// false leaves tunnels open until an end closes them or tunnel_idle_timeout passes.
	// Default true.
	CloseTunnelsOnDown bool `yaml:"close_tunnels_on_down"`
}

// Client holds the member connection pools (one pool per member).
type Client struct {
	// DialTimeout bounds connecting to a member. Default 2s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// ReadTimeout bounds waiting for a member's response once the request is sent;
	// it ends in 504. Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds sending a request to a member. Default 30s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes pooled member connections idle this long. Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConns is the most connections to one member; past it a request waits up to
	// dial_timeout for a free one, then gets 503. 0 = unlimited. Default 1024.
	MaxConns int `yaml:"max_conns"`
}

// Session says where the session key is and how it maps to a member.
type Session struct {
	// Cookies are the cookie names carrying the session key; the first name present wins.
	// Default [JSESSIONID].
	Cookies []string `yaml:"cookies"`
	// URLParam is the path parameter of rewritten URLs (";jsessionid=..."), matched
	// without regard to case; it is also looked for as a query parameter. Default
	// "jsessionid"; "" turns URL rewriting support off.
	URLParam string `yaml:"url_param"`
	// Query is an extra query parameter carrying the key. Default "" (none).
	Query string `yaml:"query"`
	// Header is a request header carrying the key. Default "" (none).
	Header string `yaml:"header"`
	// Affinity is the resolver chain, tried in order: route (member route id inside the
	// key), learned (bindings taught by members' Set-Cookie), hash (rendezvous hashing),
	// and tls: a request without a session key over a TLS connection is keyed by an
	// affinity id carried in its TLS session (its ticket), and resolved by the resolvers
	// after tls in the chain. Default [route, learned, hash]. Each at most once.
	Affinity []string `yaml:"affinity"`
	// RouteFormat is how the route is read from the key: auto, websphere
	// ("0000<id>:<clone>[:<clone>...]") or tomcat ("<id>.<jvmRoute>"). Default auto.
	RouteFormat string `yaml:"route_format"`
	// Balance chooses the member for requests without a session key: round_robin
	// (default) or least_requests.
	Balance string `yaml:"balance"`
	// Learned sizes the learned-session cache.
	Learned Learned `yaml:"learned"`
	// Cookie is the gateway's own signed affinity cookie (the cookie resolver).
	Cookie AffinityCookie `yaml:"cookie"`
	// Shared is the optional store of learned bindings shared by gateway instances
	// (Redis). Without it each instance learns on its own.
	Shared Shared `yaml:"shared"`
	// BoundWindow is the window of the per-member count of bound sessions the admin API
	// reports: sessions seen in the last two windows. Default 1m; range 1s-1h.
	BoundWindow time.Duration `yaml:"bound_window"`
}

// AffinityCookie is the signed affinity cookie the gateway sets (insert mode, as
// HAProxy's "cookie ... insert"): with cookie in session.affinity, a client the gateway
// sends to a member gets a cookie naming that member, MACed with keys[0]; the cookie
// resolver then keeps the client there, with or without a session id of the
// application's. A cookie that does not verify (forged, another key, a removed member)
// is ignored and counted, never trusted.
type AffinityCookie struct {
	// Name is the cookie's name. Default SGROUTE.
	Name string `yaml:"name"`
	// Keys are the MAC keys, at least 16 bytes each: the first signs, all verify, so
	// that keys rotate without moving anyone (put the new key first; drop the old one
	// after max_age, or a few days). Required with the cookie resolver.
	Keys []string `yaml:"keys"`
	// KeysFile holds the keys, one per line, in place of keys. Default "".
	KeysFile string `yaml:"keys_file"`
	// Path is the cookie's Path; "" (default) is the path_prefix of the member's group, so
	// that groups on one host keep their cookies apart.
	Path string `yaml:"path"`
	// Domain is the cookie's Domain; "" (default) leaves it out (host-only).
	Domain string `yaml:"domain"`
	// MaxAge is the cookie's Max-Age; 0 (default) makes a session cookie. Range 0-8760h.
	MaxAge time.Duration `yaml:"max_age"`
	// HTTPOnly hides the cookie from scripts. Default true.
	HTTPOnly bool `yaml:"http_only"`
	// Secure sends the cookie over https only. Default false.
	Secure bool `yaml:"secure"`
	// SameSite is Lax (default), Strict, None (needs secure) or "" (left out).
	SameSite string `yaml:"same_site"`
}

// Learned sizes the learned-session cache.
type Learned struct {
	// MaxSessions bounds the number of learned bindings. Default 1000000; range 1-1<<31.
	MaxSessions int `yaml:"max_sessions"`
	// TTL is how long a binding is kept after it was last written. A binding used after
	// half its TTL is written again, so a session active at least every TTL/2 keeps it.
	// Default 30m; range 1s-720h.
	TTL time.Duration `yaml:"ttl"`
}

// Shared is the store of learned bindings that gateway instances share: a second tier
// behind each instance's learned-session cache. A binding learned or moved on one
// instance is written to it (asynchronously), and a miss of the local cache reads it
// (within budget). Changing it needs a restart.
type Shared struct {
	// Redis is the Redis server, Sentinel set or Cluster. Without addresses (the
	// default) there is no shared store.
	Redis Redis `yaml:"redis"`
	// Budget bounds the read of a local miss: past it the request goes on without the
	// shared binding (route, hash) and the read counts as a timeout. Three failed
	// reads or writes in a row take the store out (degraded) until it answers PING
	// again. Default 2ms; range 100us-1s.
	Budget time.Duration `yaml:"budget"`
	// KeyPrefix starts every key; the rest is the session key hash as 8 bytes.
	// Instances that share bindings use the same prefix. Default "sg:"; at most 64 bytes.
	KeyPrefix string `yaml:"key_prefix"`
}

// Redis is how to reach Redis.
type Redis struct {
	// Addresses are host:port: one standalone server; or, with sentinel_master, the
	// sentinels; or the seed nodes of a Redis Cluster (detected). Default [] (no
	// shared store).
	Addresses []string `yaml:"addresses"`
	// Username is the ACL user; "" (default) authenticates with password alone
	// (requirepass) or not at all.
	Username string `yaml:"username"`
	// Password authenticates to Redis (not to the sentinels). Default "". Never logged.
	Password string `yaml:"password"`
	// PasswordFile is a file holding the password (surrounding white space is
	// trimmed); it takes the place of password. Default "".
	PasswordFile string `yaml:"password_file"`
	// DB is the logical database (SELECT); a Cluster has only 0. Default 0; range 0-1023.
	DB int `yaml:"db"`
	// SentinelMaster is the name of the master set the sentinels at addresses watch;
	// the gateway follows its failovers. Default "" (no Sentinel).
	SentinelMaster string `yaml:"sentinel_master"`
	// TLS is TLS to Redis (and the sentinels). Absent (default): plain TCP.
	TLS *RedisTLS `yaml:"tls"`
}

// RedisTLS is the TLS of the connections to Redis.
type RedisTLS struct {
	// CAFile is a PEM file of the CAs the server's certificate must chain to. Default
	// "": the system's roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the server's certificate must hold. Default "": the host
	// of each address.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate. Default false; for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// CertFile and KeyFile are the gateway's client certificate, for servers that
	// require one (tls-auth-clients). Default "": none. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Group is one target group.
type Group struct {
	// Name identifies the group in logs and metrics. Required, unique.
	Name string `yaml:"name"`
	// Hosts are the Host values the group answers: exact ("app.example.com") or a
	// wildcard for one or more labels ("*.example.com"). Empty means any host. Ports are
	// ignored; matching is case-insensitive.
	Hosts []string `yaml:"hosts"`
	// PathPrefix selects requests whose path starts with it at a segment boundary
	// ("/fb" matches /fb, /fb/x and /fb;jsessionid=..., not /fbx). Longest wins.
	// Default "/"; must start with "/".
	PathPrefix string `yaml:"path_prefix"`
	// HealthCheck is the active check of every member.
	HealthCheck HealthCheck `yaml:"health_check"`
	// Passive is the ejection of members that fail real requests.
	Passive Passive `yaml:"passive"`
	// SwitchBack sends a session that moved off a failed member back to it once it is
	// usable again (WebSphere's default). Default false: the session stays where its
	// state now lives.
	SwitchBack bool `yaml:"switch_back"`
	// Strict never moves a session: a request bound to a member that cannot serve it
	// gets 503. For applications without session replication. Default false.
	Strict bool `yaml:"strict"`
	// DrainTimeout is how long a draining member keeps serving the sessions bound to
	// it; after it they move. Default 10m; range 1s-168h.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// TLS makes the gateway talk HTTPS to the group's members (as WebSphere's plug-in
	// does); the active checks go the same way. Left out (or null), the members are
	// spoken to in plain HTTP; "tls: {}" is HTTPS verified against the system roots.
	TLS *MemberTLS `yaml:"tls"`
	// Members are the group's servers. At least one.
	Members []Member `yaml:"members"`
}

// HealthCheck is a group's active health check.
type HealthCheck struct {
	// Path is requested with GET on every member; "" turns active checks off
	// (members are then always considered healthy). Must start with "/".
	Path string `yaml:"path"`
	// Interval between checks of one member. Default 5s; range 100ms-1h.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one check. Default 2s; must be below interval.
	Timeout time.Duration `yaml:"timeout"`
	// HealthyThreshold is how many passing checks in a row make a member healthy. Default 2.
	HealthyThreshold int `yaml:"healthy_threshold"`
	// UnhealthyThreshold is how many failing checks in a row make it unhealthy. Default 2.
	UnhealthyThreshold int `yaml:"unhealthy_threshold"`
	// UnhealthyInterval is the interval while a member is unhealthy, so that it comes
	// back sooner; the shorter of the two is used. Default 1s; range 100ms-1h.
	UnhealthyInterval time.Duration `yaml:"unhealthy_interval"`
	// ExpectedStatus is the range of passing status codes, "lo-hi" or one code.
	// Default "200-399".
	ExpectedStatus string `yaml:"expected_status"`
	// Host is the Host header of checks. Default "": the member address.
	Host string `yaml:"host"`
	// Jitter spreads checks: each interval is lengthened by a random part of up to
	// jitter. Default 0; range 0 up to interval.
	Jitter time.Duration `yaml:"jitter"`
	// Start is the state of a member before its first checks: healthy (default, so a
	// restart does not black-hole traffic) or unhealthy (it takes traffic only after
	// healthy_threshold passing checks).
	Start string `yaml:"start"`
}

// Passive ejects members on real request failures: connection refused or
// reset, timeouts and, with eject_5xx, 5xx answers. The last usable member of a group
// is never ejected for a passive reason alone (panic mode: all rather than none).
type Passive struct {
	// ConsecutiveFailures in a row eject a member. Default 5; 0 turns passive
	// ejection off; range 0-1000.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// Eject5xx counts 5xx answers as failures. Default false.
	Eject5xx bool `yaml:"eject_5xx"`
	// Ejection is how long a first ejection lasts when the group has no active check
	// (with one, a passing check ends it); each ejection in a row doubles it up to
	// max_ejection. Default 10s; range 1s-1h.
	Ejection time.Duration `yaml:"ejection"`
	// MaxEjection caps the doubling. Default 5m; range ejection-24h.
	MaxEjection time.Duration `yaml:"max_ejection"`
}

// Member is one member of a group.
type Member struct {
	// ID names the member in logs, metrics and the learned cache. Required; unique across
	// all groups.
	ID string `yaml:"id"`
	// Address is host:port (an IP or a name resolved at dial time). Required.
	Address string `yaml:"address"`
	// Route is the route id the member's application server writes into session ids
	// (WebSphere clone id, Tomcat jvmRoute). Default: the member id. Unique in its group.
	Route string `yaml:"route"`
	// Weight shapes the share of new sessions and keyless requests. Default 1; range 1-1000.
	Weight int `yaml:"weight"`
	// State is the administrative state at start: ready (default), drain (no new
	// sessions; bound ones until drain_timeout) or maint (no traffic). The admin API
	// changes it at run time.
	State string `yaml:"state"`
}

// MemberTLS is how the gateway speaks HTTPS to the members of a group: which
// certificates it trusts, which name it expects, and the client certificate it shows.
// Files are read when the configuration is loaded and again on each reload, so a
// reload picks up renewed certificates; a relative path is relative to the gateway's
// working directory. Connections use TLS 1.2 or later.
type MemberTLS struct {
	// CAFile is a PEM file of the certificate authorities that members' certificates
	// must chain to, in place of the system roots. Default "": the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name members' certificates are verified against, and sent as
	// SNI. Default "": the host part of each member's address (a name, or an IP address
	// matched against the certificate's IP SANs).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate a member shows, unverified: the
	// connection is encrypted but not authenticated, and anyone on the path can read
	// it. For tests only; the gateway logs a warning whenever it builds such a group.
	// Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// CertFile is a PEM certificate (chain) shown to members that ask for a client
	// certificate (mutual TLS); set key_file with it. Default "": none.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of cert_file; set both or neither. Default "".
	KeyFile string `yaml:"key_file"`
}
