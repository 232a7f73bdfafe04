package router

import "bytes"

// Source says where a session key was found.
type Source uint8

// Where a session key can come from, in the order Extract looks.
const (
	SourceNone Source = iota
	SourceCookie
	SourcePathParam
	SourceQuery
	SourceHeader
)

var sourceNames = [...]string{"none", "cookie", "path_param", "query", "header"}

// String returns the source's name as used in logs and metrics.
func (s Source) String() string { return sourceNames[s] }

// KeySpec says where the session key of a request is read from. It is built at
// configuration time and read concurrently afterwards.
type KeySpec struct {
	// Cookies are cookie names, most preferred first.
	Cookies [][]byte
	// URLParam is the ";name=" path parameter of rewritten URLs, matched without regard
	// to case; the same name is also looked for in the query. Empty: not used.
	URLParam []byte
	// Query is an extra query parameter name, matched exactly. Empty: not used.
	Query []byte
	// Header marks that the gateway passes the value of a key header to Extract; the
	// name itself is used by the gateway. Empty: not used.
	Header []byte
}

// Extract returns the session key of a request and where it was found: the first cookie
// name present in any of the Cookie header values, then the URL path parameter, then the
// query parameters, then the header value. An empty value counts as no key.
//
// cookieHdrs are the raw Cookie header values in the order received, rawURI the request
// target as received, hdrVal the value of the configured key header (or nil).
// Extract is safe for concurrent use, does not allocate, and returns a sub-slice of its
// input, valid as long as the input is.
func (s *KeySpec) Extract(cookieHdrs [][]byte, rawURI, hdrVal []byte) ([]byte, Source) {
	for _, name := range s.Cookies {
		for _, h := range cookieHdrs {
			if v, ok := PeekCookie(h, name); ok {
				if len(v) > 0 {
					return v, SourceCookie
				}
				goto nextSource // the first occurrence wins, even when empty
			}
		}
	}
nextSource:
	if len(s.URLParam) > 0 {
		if v := PeekPathParam(PeekPath(rawURI), s.URLParam); len(v) > 0 {
			return v, SourcePathParam
		}
		if v := PeekQuery(rawURI, s.URLParam, true); len(v) > 0 {
			return v, SourceQuery
		}
	}
	if len(s.Query) > 0 {
		if v := PeekQuery(rawURI, s.Query, false); len(v) > 0 {
			return v, SourceQuery
		}
	}
	if len(s.Header) > 0 {
		if v := trimSpace(hdrVal); len(v) > 0 {
			return v, SourceHeader
		}
	}
	return nil, SourceNone
}

// PeekCookie scans one raw Cookie header value ("a=1; b=2") for the cookie called name
// (case-sensitive, as cookie names are) and returns its value with surrounding quotes
// and white space removed. found is true for the first cookie of that name, even if its
// value is empty. It does not decode or re-serialize anything.
//
// Safe for concurrent use; does not allocate; the value is a sub-slice of hdr.
func PeekCookie(hdr, name []byte) (value []byte, found bool) {
	value, _, found = NextCookie(hdr, name)
	return value, found
}

// NextCookie is PeekCookie that also returns the rest of hdr after the cookie found, so
// that every cookie of that name can be visited (a browser sends several of one name
// when their Path or Domain differ). Safe for concurrent use; does not allocate.
func NextCookie(hdr, name []byte) (value, rest []byte, found bool) {
	for len(hdr) > 0 {
		// One cookie-pair: up to the next ';'.
		var pair []byte
		if i := indexByte(hdr, ';'); i >= 0 {
			pair, hdr = hdr[:i], hdr[i+1:]
		} else {
			pair, hdr = hdr, nil
		}
		eq := indexByte(pair, '=')
		if eq < 0 {
			continue // a nameless value or a bare name: not ours
		}
		if string(trimSpace(pair[:eq])) != string(name) {
			continue
		}
		v := trimSpace(pair[eq+1:])
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, hdr, true
	}
	return nil, nil, false
}

// PeekPath returns the path of a raw request target: the bytes before '?' or '#',
// with the scheme and authority of an absolute-form target ("http://h/p") skipped.
// Path parameters (";jsessionid=...") are kept. It returns nil for "*" or an
// authority-only target.
//
// Safe for concurrent use; does not allocate; the path is a sub-slice of rawURI.
func PeekPath(rawURI []byte) []byte {
	if len(rawURI) > 0 && rawURI[0] != '/' {
		var rest []byte
		switch {
		case hasPrefixFold(rawURI, strHTTP):
			rest = rawURI[len(strHTTP):]
		case hasPrefixFold(rawURI, strHTTPS):
			rest = rawURI[len(strHTTPS):]
		default:
			return nil
		}
		i := indexAny3(rest, '/', '?', '#')
		if i < 0 || rest[i] != '/' {
			return nil
		}
		rawURI = rest[i:]
	}
	if i := indexAny2(rawURI, '?', '#'); i >= 0 {
		return rawURI[:i]
	}
	return rawURI
}

// PeekPathParam returns the value of the first ";name=value" parameter in path, the
// name matched without regard to ASCII case. The value ends at '/', ';', '?' or '#'.
//
// Safe for concurrent use; does not allocate; the value is a sub-slice of path.
func PeekPathParam(path, name []byte) []byte {
	for {
		i := indexByte(path, ';')
		if i < 0 {
			return nil
		}
		path = path[i+1:]
		if len(path) > len(name) && path[len(name)] == '=' && equalFold(path[:len(name)], name) {
			v := path[len(name)+1:]
			if j := indexPathValueEnd(v); j >= 0 {
				v = v[:j]
			}
			return v
		}
	}
}

// PeekQuery returns the raw (not percent-decoded) value of the first query parameter
// called name in a raw request target, the name matched exactly or, with fold, without
// regard to ASCII case. A parameter without '=' has an empty value.
//
// Safe for concurrent use; does not allocate; the value is a sub-slice of rawURI.
func PeekQuery(rawURI, name []byte, fold bool) []byte {
	// A '?' after a '#' belongs to the fragment, as in PeekPath.
	q := indexByte(rawURI, '?')
	if q < 0 || indexByte(rawURI[:q], '#') >= 0 {
		return nil
	}
	query := rawURI[q+1:]
	if h := indexByte(query, '#'); h >= 0 {
		query = query[:h]
	}
	for len(query) > 0 {
		var arg []byte
		if i := indexByte(query, '&'); i >= 0 {
			arg, query = query[:i], query[i+1:]
		} else {
			arg, query = query, nil
		}
		k, v := arg, []byte(nil)
		if eq := indexByte(arg, '='); eq >= 0 {
			k, v = arg[:eq], arg[eq+1:]
		}
		if len(k) != len(name) {
			continue
		}
		if fold && equalFold(k, name) || !fold && string(k) == string(name) {
			return v
		}
	}
	return nil
}

// indexByte is bytes.IndexByte (vectorised in the runtime), named here so the scanners
// read alike.
func indexByte(b []byte, c byte) int { return bytes.IndexByte(b, c) }

func indexAny2(b []byte, c1, c2 byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] == c1 || b[i] == c2 {
			return i
		}
	}
	return -1
}

func indexAny3(b []byte, c1, c2, c3 byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] == c1 || b[i] == c2 || b[i] == c3 {
			return i
		}
	}
	return -1
}

func indexPathValueEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '/', ';', '?', '#':
			return i
		}
	}
	return -1
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func hasPrefixFold(b, prefix []byte) bool {
	return len(b) >= len(prefix) && equalFold(b[:len(prefix)], prefix)
}
