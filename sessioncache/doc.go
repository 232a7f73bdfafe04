// Package sessioncache holds learned session bindings: the hash of a session key that a
// member issued (in Set-Cookie or a rewritten Location) mapped to that member's number
// (router.MemberState.Num), in an embedded, sharded ristretto cache bounded by entry
// count and TTL.
//
// The cache is a hint, never the source of truth: ristretto's writes are asynchronous
// and may be dropped (full buffers) or refused (TinyLFU admission), and entries expire.
// Correctness rests on the route inside the key and on rendezvous hashing; the cache
// only keeps keys that carry no usable route on the member that issued them. Drops and
// rejections are counted and exported by Stats.
//
// Shared is the optional second tier: the same bindings in Redis, keyed by key hash
// and holding member ids, so that gateway instances see each other's learned sessions
// and moves. Its reads are bounded by a budget and its writes are asynchronous; when
// Redis fails it stops asking it and probes it in the background. It is a hint too.
//
// It does not import fasthttp or router; the gateway feeds it key hashes, numbers and
// member ids.
package sessioncache
