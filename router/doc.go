// Package router owns the compiled snapshot of the gateway's routing: target groups and
// their members, Host and path-prefix matching, session key extraction from raw request
// bytes, affinity decoding (WebSphere clone lists, Tomcat jvmRoute), and member selection
// (rendezvous hashing, round robin, least requests), together with each member's runtime
// state held in atomics.
//
// Everything here on the request path is safe for concurrent use, takes and returns
// []byte borrowed from its input, takes no lock and does not allocate; the alloc_test.go
// guards prove it. A Table is immutable once built: a new configuration builds a new
// Table and the gateway swaps it in. Member runtime state is keyed by member id in a
// States set, which outlives tables, so health, counters and drain state survive a reload.
//
// router does not import fasthttp or the session cache: it takes the bytes the gateway
// peeks, and the learned-session store reaches it through the small Store interface.
package router
