// Package gateway is the fasthttp server in front of the target groups: it loads and
// validates the configuration, builds the immutable snapshot (router.Table plus one
// fasthttp.HostClient per member) and swaps it atomically, proxies each request to the
// member that holds its session, learns bindings from members' Set-Cookie, maps every
// failure to one status code and one log line, and writes the access log.
//
// The request path (handler in proxy.go) loads the snapshot once, then calls router for
// matching, key extraction and member choice without allocating or locking; only the
// proxying itself (fasthttp's client) and the learning of a new session may allocate.
// Nothing outside cmd and bench imports this package.
package gateway
