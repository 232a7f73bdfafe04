package router

// Format is how a member's route id is written inside a session key.
type Format uint8

// Route formats.
const (
	// FormatAuto reads a WebSphere clone list when the key has ':' or '+' (or "%3A"),
	// else a Tomcat jvmRoute when it has '.'.
	FormatAuto Format = iota
	// FormatWebSphere is "<cache id><session id>:<clone>[:<clone>...]" ('+' also separates).
	FormatWebSphere
	// FormatTomcat is "<session id>.<jvmRoute>".
	FormatTomcat
)

var formatNames = [...]string{"auto", "websphere", "tomcat"}

// FormatNames are the route_format values, in Format order.
func FormatNames() []string { return formatNames[:] }

// String returns the format's config name.
func (f Format) String() string { return nameOf(formatNames[:], int(f)) }

// ParseFormat maps a route_format config value ("" is auto) to a Format.
func ParseFormat(s string) (Format, bool) {
	if s == "" {
		return FormatAuto, true
	}
	i, ok := indexOf(formatNames[:], s)
	return Format(i), ok
}

// PeekRoutes returns the part of a session key that lists route ids: for WebSphere the
// clone list after the first separator, for Tomcat the jvmRoute after the last '.'.
// It returns nil when the key carries no route in that format. Iterate the list with
// NextRoute.
//
// Safe for concurrent use; does not allocate; the list is a sub-slice of key.
func PeekRoutes(key []byte, f Format) []byte {
	switch f {
	case FormatWebSphere:
		return webSphereClones(key)
	case FormatTomcat:
		return tomcatRoute(key)
	}
	if l := webSphereClones(key); l != nil {
		return l
	}
	return tomcatRoute(key)
}

// NextRoute splits the first route id off a route list. The ids are separated by ':',
// '+' or a percent-encoded colon ("%3A"). Empty ids are returned as empty slices; the
// caller skips them. rest is nil after the last id.
//
// Safe for concurrent use; does not allocate; route and rest are sub-slices of list.
func NextRoute(list []byte) (route, rest []byte) {
	i, n := cloneSep(list)
	if i < 0 {
		return list, nil
	}
	return list[:i], list[i+n:]
}

func webSphereClones(key []byte) []byte {
	i, n := cloneSep(key)
	if i < 0 {
		return nil
	}
	return key[i+n:]
}

func tomcatRoute(key []byte) []byte {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '.' {
			return key[i+1:]
		}
	}
	return nil
}

// cloneSep finds the first clone separator and returns its index and length.
func cloneSep(b []byte) (int, int) {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case ':', '+':
			return i, 1
		case '%':
			if i+2 < len(b) && b[i+1] == '3' && (b[i+2] == 'A' || b[i+2] == 'a') {
				return i, 3
			}
		}
	}
	return -1, 0
}
