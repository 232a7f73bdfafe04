// Package health decides whether members can take traffic: it runs the active checks
// of every member (GET a path, expect 200-399, rise/fall thresholds) and writes the
// verdict into the member's router.MemberState, which the request path reads with one
// atomic load. It never sits on the request path itself.
package health
