package router

import (
	"bytes"
	"testing"
)

// maxFuzzInput bounds the total input of one fuzz call; real headers are far smaller and
// larger inputs only slow the fuzzer down.
const maxFuzzInput = 8 << 10

func tooLong(parts ...[]byte) bool {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	return n > maxFuzzInput
}

// exact returns a copy of b whose capacity equals its length, so that subSlice can find
// where a result lies in it.
func exact(b []byte) []byte {
	c := make([]byte, len(b))
	copy(c, b)
	return c
}

// subSlice reports whether out is a sub-slice of in, which must come from exact, and
// where it starts. A sub-slice in[i:j] has capacity cap(in)-i, so its offset follows
// from capacities; writing through in at that offset must then show through out.
func subSlice(in, out []byte) (off int, ok bool) {
	off = cap(in) - cap(out)
	if off < 0 || off+len(out) > len(in) || !bytes.Equal(in[off:off+len(out)], out) {
		return 0, false
	}
	if len(out) > 0 {
		old := in[off]
		in[off] = ^old
		shared := out[0] == in[off]
		in[off] = old
		if !shared {
			return 0, false
		}
	}
	return off, true
}

// checkSub fails unless out is nil or a sub-slice of in, and returns its offset in in.
func checkSub(t *testing.T, what string, in, out []byte) int {
	t.Helper()
	if out == nil {
		return -1
	}
	off, ok := subSlice(in, out)
	if !ok || !bytes.Contains(in, out) {
		t.Fatalf("%s = %q: not a sub-slice of its input %q", what, out, in)
	}
	return off
}

// without returns b with every byte in cut removed (a new slice).
func without(b []byte, cut string) []byte {
	var out []byte
	for _, c := range b {
		if bytes.IndexByte([]byte(cut), c) < 0 {
			out = append(out, c)
		}
	}
	return out
}

// upperASCII upper-cases ASCII letters only; bytes.ToUpper would rewrite invalid UTF-8.
func upperASCII(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

func join(parts ...[]byte) []byte { return exact(bytes.Join(parts, nil)) }

func FuzzPeekCookie(f *testing.F) {
	f.Add([]byte("a=1; JSESSIONID=abc; b=2"), []byte("JSESSIONID"), []byte("0000A1B2C3D4E5F6G7H8I9J0K1L:Node1"))
	f.Add([]byte(`JSESSIONID="abc"`), []byte("JSESSIONID"), []byte("x"))
	f.Add([]byte("XJSESSIONID=x; JSESSIONIDX=y;;JSESSIONID"), []byte("JSESSIONID"), []byte(""))
	f.Add([]byte(" \t=; =\"\"; a"), []byte("a"), []byte("\""))
	f.Fuzz(func(t *testing.T, hdr, name, value []byte) {
		if tooLong(hdr, name, value) {
			t.Skip()
		}
		hdr = exact(hdr)
		v, found := PeekCookie(hdr, name)
		checkSub(t, "PeekCookie value", hdr, v)
		if !found && v != nil {
			t.Fatalf("PeekCookie(%q, %q) = %q, false; want nil when not found", hdr, name, v)
		}
		if bytes.IndexByte(v, ';') >= 0 {
			t.Fatalf("PeekCookie(%q, %q) = %q: value spans a ';'", hdr, name, v)
		}

		// Round trips with a well-formed cookie built from the input.
		name = without(name, "=; \t")
		value = without(value, "; \t\"")
		if len(name) == 0 {
			return
		}
		pair := join(name, []byte("="), value)

		// Appended after the header: found unless the header already had the name.
		h2 := join(hdr, []byte("; "), pair)
		v2, found2 := PeekCookie(h2, name)
		wantV, wantFound := string(value), true
		if v1, found1 := PeekCookie(hdr, name); found1 {
			wantV = string(v1)
		}
		if string(v2) != wantV || found2 != wantFound {
			t.Fatalf("PeekCookie(%q, %q) = %q, %v; want %q, %v", h2, name, v2, found2, wantV, wantFound)
		}
		// First in the header, bare, quoted or padded: always found.
		for _, h := range [][]byte{
			join(pair, []byte(";"), hdr),
			join([]byte(" \t"), name, []byte(` = "`), value, []byte(`" ;`), hdr),
			join([]byte("\t"), name, []byte("\t=  "), value, []byte(" \t; "), hdr),
		} {
			if v, found := PeekCookie(h, name); string(v) != string(value) || !found {
				t.Fatalf("PeekCookie(%q, %q) = %q, %v; want %q, true", h, name, v, found, value)
			}
		}
	})
}

func FuzzExtract(f *testing.F) {
	f.Add([]byte("a=1; JSESSIONID=c1"), []byte("SESSION=s1"), []byte("/fb;jsessionid=p1?jsessionid=q1&sid=e1"), []byte(" h1 "))
	f.Add([]byte("JSESSIONID="), []byte("JSESSIONID=c2"), []byte("http://h/fb;JSESSIONID=p1/x"), []byte(""))
	f.Add([]byte(""), []byte(""), []byte("/fb#x?sid=e1"), []byte("\t"))
	f.Add([]byte("x"), []byte("SESSION=\"s\""), []byte("*"), []byte("h"))
	spec := KeySpec{
		Cookies:  [][]byte{[]byte("JSESSIONID"), []byte("SESSION")},
		URLParam: []byte("jsessionid"),
		Query:    []byte("sid"),
		Header:   []byte("X-Session-Id"),
	}
	f.Fuzz(func(t *testing.T, c1, c2, uri, hdr []byte) {
		if tooLong(c1, c2, uri, hdr) {
			t.Skip()
		}
		c1, c2, uri, hdr = exact(c1), exact(c2), exact(uri), exact(hdr)
		key, src := spec.Extract([][]byte{c1, c2}, uri, hdr)
		if (src == SourceNone) != (len(key) == 0) {
			t.Fatalf("Extract(%q, %q, %q, %q) = %q, %v: an empty key must come with source none",
				c1, c2, uri, hdr, key, src)
		}
		switch src {
		case SourceNone:
			if key != nil {
				t.Fatalf("Extract = %q, none; want nil", key)
			}
		case SourceCookie:
			_, in1 := subSlice(c1, key)
			_, in2 := subSlice(c2, key)
			if !in1 && !in2 {
				t.Fatalf("Extract cookie key %q is not a sub-slice of %q or %q", key, c1, c2)
			}
			if bytes.IndexByte(key, ';') >= 0 {
				t.Fatalf("Extract cookie key %q spans a ';'", key)
			}
		case SourcePathParam:
			checkSub(t, "Extract path param key", uri, key)
			if bytes.ContainsAny(key, "/;?#") {
				t.Fatalf("Extract path param key %q contains one of / ; ? #", key)
			}
		case SourceQuery:
			checkSub(t, "Extract query key", uri, key)
			if bytes.ContainsAny(key, "&#") {
				t.Fatalf("Extract query key %q contains & or #", key)
			}
		case SourceHeader:
			checkSub(t, "Extract header key", hdr, key)
			if want := bytes.Trim(hdr, " \t"); !bytes.Equal(key, want) {
				t.Fatalf("Extract header key = %q, want %q", key, want)
			}
		default:
			t.Fatalf("Extract source = %d, not a Source", src)
		}
		// Precedence: a later source is used only if every earlier one had no key.
		if src != SourceCookie {
			if v, _ := PeekCookie(c1, spec.Cookies[0]); len(v) > 0 {
				t.Fatalf("Extract = %q, %v; but the first header has %s=%q", key, src, spec.Cookies[0], v)
			}
		}
		if src == SourceQuery || src == SourceHeader || src == SourceNone {
			if v := PeekPathParam(PeekPath(uri), spec.URLParam); len(v) > 0 {
				t.Fatalf("Extract(uri %q) = %q, %v; but the path param is %q", uri, key, src, v)
			}
		}
		if src == SourceHeader || src == SourceNone {
			if v := PeekQuery(uri, spec.Query, false); len(v) > 0 {
				t.Fatalf("Extract(uri %q) = %q, %v; but the query param is %q", uri, key, src, v)
			}
		}
		if src == SourceNone && len(bytes.Trim(hdr, " \t")) > 0 {
			t.Fatalf("Extract(hdr %q) = none; want the header", hdr)
		}
	})
}

func FuzzPeekPathParam(f *testing.F) {
	f.Add([]byte("/fb;jsessionid=x1/account"), []byte("jsessionid"), []byte("0000A:c1:c2"))
	f.Add([]byte("/fb;a=1;JSESSIONID=x1;b=2"), []byte("jsessionid"), []byte(""))
	f.Add([]byte(";;=;"), []byte(""), []byte("v"))
	f.Add([]byte("/a;jsessionidx=1;jsessionid"), []byte("jsessionid"), []byte("/"))
	f.Fuzz(func(t *testing.T, path, name, value []byte) {
		if tooLong(path, name, value) {
			t.Skip()
		}
		path = exact(path)
		v := PeekPathParam(path, name)
		if off := checkSub(t, "PeekPathParam value", path, v); off >= 0 {
			if bytes.ContainsAny(v, "/;?#") {
				t.Fatalf("PeekPathParam(%q, %q) = %q: contains one of / ; ? #", path, name, v)
			}
			// The value follows ";name=" and runs to the end or to a delimiter.
			start := off - len(name) - 2
			if start < 0 || path[start] != ';' || path[off-1] != '=' || !equalFoldRef(path[start+1:off-1], name) {
				t.Fatalf("PeekPathParam(%q, %q) = %q at %d: not preceded by ;name=", path, name, v, off)
			}
			if end := off + len(v); end < len(path) && bytes.IndexByte([]byte("/;?#"), path[end]) < 0 {
				t.Fatalf("PeekPathParam(%q, %q) = %q: value stops early at %q", path, name, v, path[end])
			}
		}

		// Round trip: the first ";name=value" in a path without other params.
		name = without(name, ";")
		value = without(value, "/;?#")
		p2 := join(without(path, ";"), []byte(";"), upperASCII(name), []byte("="), value,
			[]byte("/x;"), name, []byte("=second"))
		if got := PeekPathParam(p2, name); !bytes.Equal(got, value) {
			t.Fatalf("PeekPathParam(%q, %q) = %q, want %q", p2, name, got, value)
		}
	})
}

// equalFoldRef is a reference ASCII case-insensitive comparison, independent of equalFold.
func equalFoldRef(a, b []byte) bool { return bytes.Equal(upperASCII(a), upperASCII(b)) }

func FuzzPeekQuery(f *testing.F) {
	f.Add([]byte("/p?a=1&sid=x1&b=2"), []byte("sid"), []byte("x1"), false)
	f.Add([]byte("/p?JSESSIONID=x1#frag"), []byte("jsessionid"), []byte(""), true)
	f.Add([]byte("/p#f?sid=x1"), []byte("sid"), []byte("v"), false)
	f.Add([]byte("?&=&sid"), []byte(""), []byte("="), true)
	f.Fuzz(func(t *testing.T, uri, name, value []byte, fold bool) {
		if tooLong(uri, name, value) {
			t.Skip()
		}
		uri = exact(uri)
		v := PeekQuery(uri, name, fold)
		if off := checkSub(t, "PeekQuery value", uri, v); off >= 0 {
			if bytes.ContainsAny(v, "&#") {
				t.Fatalf("PeekQuery(%q, %q, %v) = %q: contains & or #", uri, name, fold, v)
			}
			q := bytes.IndexByte(uri, '?')
			if q < 0 || q >= off || bytes.IndexByte(uri[:off], '#') >= 0 {
				t.Fatalf("PeekQuery(%q, %q, %v) = %q at %d: not inside the query", uri, name, fold, v, off)
			}
			// The value follows "name=" at the start of an argument.
			start := off - len(name) - 1
			if start <= q || uri[off-1] != '=' || (uri[start-1] != '?' && uri[start-1] != '&') {
				t.Fatalf("PeekQuery(%q, %q, %v) = %q at %d: not preceded by [?&]name=", uri, name, fold, v, off)
			}
			k := uri[start : off-1]
			if fold && !equalFoldRef(k, name) || !fold && !bytes.Equal(k, name) {
				t.Fatalf("PeekQuery(%q, %q, %v) = %q: parameter name is %q", uri, name, fold, v, k)
			}
		}

		// Round trip: the first parameter of a query, ahead of a later one and a fragment.
		name = without(name, "&=#")
		value = without(value, "&#")
		u2 := join(without(uri, "?#"), []byte("?"), name, []byte("="), value,
			[]byte("&"), name, []byte("=second#"), name, []byte("=frag"))
		if got := PeekQuery(u2, name, false); !bytes.Equal(got, value) {
			t.Fatalf("PeekQuery(%q, %q, false) = %q, want %q", u2, name, got, value)
		}
		if got := PeekQuery(u2, upperASCII(name), true); !bytes.Equal(got, value) {
			t.Fatalf("PeekQuery(%q, %q, true) = %q, want %q", u2, upperASCII(name), got, value)
		}
	})
}

func FuzzPeekPath(f *testing.F) {
	f.Add([]byte("/fb/account;jsessionid=x?y=1#f"), []byte("app.example.com:8080"), []byte("/fb;jsessionid=x"))
	f.Add([]byte("HTTPS://H/p"), []byte("h"), []byte("/"))
	f.Add([]byte("http://h?q=/x"), []byte(""), []byte(""))
	f.Add([]byte("*"), []byte("[::1]:8080"), []byte("//a"))
	f.Fuzz(func(t *testing.T, uri, host, path []byte) {
		if tooLong(uri, host, path) {
			t.Skip()
		}
		uri = exact(uri)
		p := PeekPath(uri)
		off := checkSub(t, "PeekPath", uri, p)
		if bytes.ContainsAny(p, "?#") {
			t.Fatalf("PeekPath(%q) = %q: contains ? or #", uri, p)
		}
		switch {
		case len(uri) > 0 && uri[0] == '/':
			if off != 0 {
				t.Fatalf("PeekPath(%q) = %q: origin form path must be a prefix", uri, p)
			}
		case p != nil && len(p) > 0:
			if p[0] != '/' || !(hasPrefixRef(uri, "http://") || hasPrefixRef(uri, "https://")) {
				t.Fatalf("PeekPath(%q) = %q: want nil for a target that is not absolute http(s)", uri, p)
			}
		}

		// Round trips: origin and absolute forms of one path.
		host = without(host, "/?#")
		path = join([]byte("/"), without(path, "?#"))
		for _, u := range [][]byte{
			join(path, []byte("?q=1#f")),
			join(path, []byte("#f?q")),
			join([]byte("http://"), host, path, []byte("?q=/x")),
			join([]byte("HtTpS://"), host, path),
		} {
			if got := PeekPath(u); !bytes.Equal(got, path) {
				t.Fatalf("PeekPath(%q) = %q, want %q", u, got, path)
			}
		}
	})
}

func hasPrefixRef(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && equalFoldRef(b[:len(prefix)], []byte(prefix))
}

// hasCloneSep is a reference check for a WebSphere clone separator in b.
func hasCloneSep(b []byte) bool {
	return bytes.ContainsAny(b, ":+") || bytes.Contains(upperASCII(b), []byte("%3A"))
}

// cloneSepLen returns the length of the clone separator b starts with, or 0.
func cloneSepLen(b []byte) int {
	switch {
	case len(b) > 0 && (b[0] == ':' || b[0] == '+'):
		return 1
	case len(b) >= 3 && equalFoldRef(b[:3], []byte("%3A")):
		return 3
	}
	return 0
}

func FuzzPeekRoutes(f *testing.F) {
	f.Add([]byte("0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2:Node3"), uint8(0), []byte("0000A1B2C3D4E5F6G7H8I9J0K1L"), []byte("Node1,Node2,Node3"))
	f.Add([]byte("9F86D081884C7D659A2FEAA0C55AD015.Node2"), uint8(2), []byte("9F86D081884C7D659A2FEAA0C55AD015"), []byte("Node2"))
	f.Add([]byte("0000A%3Ac1+c2%3a:%3"), uint8(1), []byte("a.b"), []byte(",,c"))
	f.Add([]byte("a.b:c."), uint8(0), []byte(""), []byte(""))
	f.Fuzz(func(t *testing.T, key []byte, format uint8, id, clones []byte) {
		if tooLong(key, id, clones) {
			t.Skip()
		}
		key = exact(key)
		fm := Format(format % 3)
		list := PeekRoutes(key, fm)
		if off := checkSub(t, "PeekRoutes", key, list); off >= 0 {
			if off+len(list) != len(key) {
				t.Fatalf("PeekRoutes(%q, %d) = %q: not a suffix of the key", key, fm, list)
			}
			ws := off > 0 && cloneSepEndsAt(key, off)
			tc := off > 0 && key[off-1] == '.' && bytes.IndexByte(list, '.') < 0
			switch {
			case fm == FormatWebSphere && !ws, fm == FormatTomcat && !tc, fm == FormatAuto && !ws && !tc:
				t.Fatalf("PeekRoutes(%q, %d) = %q: does not follow a route separator", key, fm, list)
			}
		} else {
			if (fm == FormatWebSphere || fm == FormatAuto) && hasCloneSep(key) {
				t.Fatalf("PeekRoutes(%q, %d) = nil, but the key has a clone separator", key, fm)
			}
			if (fm == FormatTomcat || fm == FormatAuto) && bytes.IndexByte(key, '.') >= 0 {
				t.Fatalf("PeekRoutes(%q, %d) = nil, but the key has a '.'", key, fm)
			}
		}
		walkRoutes(t, list)

		// Round trip: a WebSphere key with the clone list built from the input, separated
		// by every separator form, and a Tomcat key with one jvmRoute.
		id = without(id, ":+%")
		var want [][]byte
		ws := exact(id)
		seps := []string{":", "+", "%3A", "%3a"}
		for i, c := range bytes.Split(clones, []byte(",")) {
			c = without(c, ":+%,")
			want = append(want, c)
			ws = join(ws, []byte(seps[i%len(seps)]), c)
		}
		for _, fm := range []Format{FormatWebSphere, FormatAuto} {
			var got [][]byte
			for l := PeekRoutes(ws, fm); l != nil; {
				var r []byte
				r, l = NextRoute(l)
				got = append(got, r)
			}
			if len(got) != len(want) {
				t.Fatalf("routes of %q (format %d) = %q, want %q", ws, fm, got, want)
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("routes of %q (format %d) = %q, want %q", ws, fm, got, want)
				}
			}
		}
		route := without(clones, ".")
		tk := join(id, []byte("."), route)
		if got := PeekRoutes(tk, FormatTomcat); !bytes.Equal(got, route) || got == nil {
			t.Fatalf("PeekRoutes(%q, tomcat) = %q, want %q", tk, got, route)
		}
	})
}

// cloneSepEndsAt reports whether the first clone separator of key ends at off.
func cloneSepEndsAt(key []byte, off int) bool {
	for i := 0; i < off; i++ {
		if n := cloneSepLen(key[i:]); n > 0 {
			return i+n == off
		}
	}
	return false
}

// walkRoutes checks NextRoute over list: it ends, routes hold no separator, and each
// step splits list into route, one separator and rest.
func walkRoutes(t *testing.T, list []byte) {
	t.Helper()
	whole := list
	for steps := 0; list != nil; steps++ {
		if steps > len(whole) {
			t.Fatalf("NextRoute over %q does not end", whole)
		}
		route, rest := NextRoute(list)
		if off := checkSub(t, "NextRoute route", list, route); off != 0 && route != nil {
			t.Fatalf("NextRoute(%q) route %q does not start the list", list, route)
		}
		if hasCloneSep(route) {
			t.Fatalf("NextRoute(%q) route %q contains a separator", list, route)
		}
		if rest == nil {
			if !bytes.Equal(route, list) {
				t.Fatalf("NextRoute(%q) = %q, nil; the last route must be the whole list", list, route)
			}
			return
		}
		off := checkSub(t, "NextRoute rest", list, rest)
		sep := list[len(route):off]
		if n := cloneSepLen(sep); n == 0 || n != len(sep) || off+len(rest) != len(list) {
			t.Fatalf("NextRoute(%q) = %q, %q: not split at one separator (%q)", list, route, rest, sep)
		}
		list = rest
	}
}
