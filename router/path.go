package router

// CheckPath looks for what lets a path leave the prefix it was matched on at a member
// that normalises it: dot reports a dot segment, "." or "..", raw or percent-encoded
// ("%2e", any case), alone in its segment up to the segment's parameters (";..."; a
// Tomcat reads "..;x" as ".."); slash reports an encoded slash or backslash ("%2f",
// "%5c"). Segments are split at '/', '\' and the encoded slashes too, as members may
// decode or accept them as separators: "/fb/..%2fadmin" has a dot segment. path is a
// raw path (PeekPath). Double encoding ("%252e") is not decoded.
//
// Safe for concurrent use; does not allocate.
func CheckPath(path []byte) (dot, slash bool) {
	dots, other, params := 0, false, false
	end := func() {
		if !other && (dots == 1 || dots == 2) {
			dot = true
		}
		dots, other, params = 0, false, false
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '/' || c == '\\':
			end()
			continue
		case c == '%' && i+2 < len(path):
			switch hexPair(path[i+1], path[i+2]) {
			case '.':
				i += 2
				if !params {
					dots++
				}
				continue
			case '/', '\\':
				i += 2
				slash = true
				end()
				continue
			}
		}
		if params {
			continue
		}
		switch c {
		case '.':
			dots++
		case ';':
			params = true
		default:
			other = true
		}
	}
	end()
	return dot, slash
}

// hexPair decodes two hex digits, or returns 0.
func hexPair(a, b byte) byte {
	x, ok1 := unhex(a)
	y, ok2 := unhex(b)
	if !ok1 || !ok2 {
		return 0
	}
	return x<<4 | y
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
