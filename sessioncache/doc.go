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
// It does not import fasthttp or router; the gateway feeds it key hashes and numbers.
package sessioncache
