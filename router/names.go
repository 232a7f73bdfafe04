package router

// The names of the router's enums are spelled once, here and beside each type, and used
// by config validation and by the build alike.

// ResolverKind is one kind of link of the affinity chain, as named in session.affinity.
type ResolverKind uint8

const (
	// ResolveRoute reads the member's route id inside the key (RouteResolver).
	ResolveRoute ResolverKind = iota
	// ResolveLearned looks the key up in the learned bindings (LearnedResolver).
	ResolveLearned
	// ResolveHash hashes the key over the usable members (HashResolver).
	ResolveHash
	// ResolveTLS keys a request without a session key by the affinity id of its TLS
	// session; the resolvers after it in the chain resolve that key (Spec.TLSFrom).
	ResolveTLS
	// ResolveCookie reads the gateway's signed affinity cookie (CookieResolver).
	ResolveCookie
)

var resolverNames = [...]string{"route", "learned", "hash", "tls", "cookie"}

// ResolverNames are the session.affinity values, in ResolverKind order.
func ResolverNames() []string { return resolverNames[:] }

// String returns the resolver's config name.
func (r ResolverKind) String() string { return nameOf(resolverNames[:], int(r)) }

// ParseResolver maps a session.affinity entry to a ResolverKind.
func ParseResolver(s string) (ResolverKind, bool) {
	i, ok := indexOf(resolverNames[:], s)
	return ResolverKind(i), ok
}

// Start is a member's health before its first active checks (health_check.start).
type Start uint8

const (
	// StartHealthy members take traffic at once, so that a restart black-holes nothing.
	StartHealthy Start = iota
	// StartUnhealthy members take traffic only after healthy_threshold passing checks.
	StartUnhealthy
)

var startNames = [...]string{"healthy", "unhealthy"}

// StartNames are the health_check.start values, in Start order.
func StartNames() []string { return startNames[:] }

// String returns the start state's config name.
func (s Start) String() string { return nameOf(startNames[:], int(s)) }

// ParseStart maps a health_check.start value to a Start.
func ParseStart(s string) (Start, bool) {
	i, ok := indexOf(startNames[:], s)
	return Start(i), ok
}

func indexOf(names []string, s string) (int, bool) {
	for i, n := range names {
		if n == s {
			return i, true
		}
	}
	return 0, false
}

func nameOf(names []string, i int) string {
	if i < len(names) {
		return names[i]
	}
	return "unknown"
}
