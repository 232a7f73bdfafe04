package router

import "testing"

func TestPeekCookie(t *testing.T) {
	tests := []struct {
		name   string
		hdr    string
		cookie string
		want   string
		found  bool
	}{
		{"only cookie", "JSESSIONID=abc", "JSESSIONID", "abc", true},
		{"first of several", "JSESSIONID=abc; a=1; b=2", "JSESSIONID", "abc", true},
		{"middle of several", "a=1; JSESSIONID=abc; b=2", "JSESSIONID", "abc", true},
		{"last of several", "a=1; b=2; JSESSIONID=abc", "JSESSIONID", "abc", true},
		{"no space after semicolon", "a=1;JSESSIONID=abc;b=2", "JSESSIONID", "abc", true},
		{"spaces and tabs around name and value", "a=1;\t JSESSIONID \t=\t abc \t; b=2", "JSESSIONID", "abc", true},
		{"space inside value kept", "JSESSIONID=a b", "JSESSIONID", "a b", true},
		{"quoted value", `a=1; JSESSIONID="abc"; b=2`, "JSESSIONID", "abc", true},
		{"quoted value with spaces outside quotes", `JSESSIONID = "abc" `, "JSESSIONID", "abc", true},
		{"quoted value keeps inner spaces", `JSESSIONID=" abc "`, "JSESSIONID", " abc ", true},
		{"quoted empty value", `JSESSIONID=""`, "JSESSIONID", "", true},
		{"lone quote is not unquoted", `JSESSIONID="`, "JSESSIONID", `"`, true},
		{"half quoted is not unquoted", `JSESSIONID="abc`, "JSESSIONID", `"abc`, true},
		{"value with equals sign", "JSESSIONID=a=b==", "JSESSIONID", "a=b==", true},
		{"empty value", "JSESSIONID=; b=2", "JSESSIONID", "", true},
		{"empty value at end", "a=1; JSESSIONID=", "JSESSIONID", "", true},
		{"blank value", "a=1; JSESSIONID= \t ; b=2", "JSESSIONID", "", true},
		{"duplicate: first wins", "JSESSIONID=first; a=1; JSESSIONID=second", "JSESSIONID", "first", true},
		{"duplicate: first wins even when empty", "JSESSIONID=; JSESSIONID=second", "JSESSIONID", "", true},
		{"name is suffix of another", "XJSESSIONID=x", "JSESSIONID", "", false},
		{"name is prefix of another", "JSESSIONIDX=y", "JSESSIONID", "", false},
		{"prefix and suffix names before the real one", "XJSESSIONID=x; JSESSIONIDX=y; JSESSIONID=z", "JSESSIONID", "z", true},
		{"name inside another value", "a=JSESSIONID=x; JSESSIONID=z", "JSESSIONID", "z", true},
		{"case-sensitive name", "jsessionid=x; JSessionID=y", "JSESSIONID", "", false},
		{"pair without equals sign", "JSESSIONID; a=1", "JSESSIONID", "", false},
		{"pair without equals sign then real", "JSESSIONID; JSESSIONID=z", "JSESSIONID", "z", true},
		{"nameless value", "=abc; JSESSIONID=z", "JSESSIONID", "z", true},
		{"trailing semicolon", "JSESSIONID=abc;", "JSESSIONID", "abc", true},
		{"trailing semicolon and space", "a=1; JSESSIONID=abc; ", "JSESSIONID", "abc", true},
		{"only semicolons", ";;; ;", "JSESSIONID", "", false},
		{"empty header", "", "JSESSIONID", "", false},
		{"other cookies only", "a=1; b=2", "JSESSIONID", "", false},
		{"websphere value", "lang=en; JSESSIONID=0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2:Node3; theme=dark",
			"JSESSIONID", "0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2:Node3", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, found := PeekCookie([]byte(tc.hdr), []byte(tc.cookie))
			if string(v) != tc.want || found != tc.found {
				t.Errorf("PeekCookie(%q, %q) = %q, %v; want %q, %v", tc.hdr, tc.cookie, v, found, tc.want, tc.found)
			}
			if !found && v != nil {
				t.Errorf("PeekCookie(%q, %q) = %q, false; want nil value when not found", tc.hdr, tc.cookie, v)
			}
		})
	}
}

func TestExtract(t *testing.T) {
	full := KeySpec{
		Cookies:  [][]byte{[]byte("JSESSIONID"), []byte("SESSION")},
		URLParam: []byte("jsessionid"),
		Query:    []byte("sid"),
		Header:   []byte("X-Session-Id"),
	}
	cookiesOnly := KeySpec{Cookies: [][]byte{[]byte("JSESSIONID")}}
	tests := []struct {
		name    string
		spec    *KeySpec
		cookies []string
		uri     string
		hdr     string
		want    string
		src     Source
	}{
		{"nothing", &full, nil, "", "", "", SourceNone},
		{"no key anywhere", &full, []string{"a=1; b=2"}, "/fb/account?x=1", "", "", SourceNone},
		{"cookie in only header", &full, []string{"a=1; JSESSIONID=c1; b=2"}, "/fb", "", "c1", SourceCookie},
		{"cookie in second header", &full, []string{"a=1; b=2", "c=3; JSESSIONID=c2"}, "/fb", "", "c2", SourceCookie},
		{"first header wins for same name", &full, []string{"JSESSIONID=c1", "JSESSIONID=c2"}, "/fb", "", "c1", SourceCookie},
		{"preferred name in later header beats other name in earlier header", &full,
			[]string{"SESSION=s1", "JSESSIONID=c2"}, "/fb", "", "c2", SourceCookie},
		{"second name when first absent", &full, []string{"a=1", "SESSION=s2"}, "/fb", "", "s2", SourceCookie},
		{"quoted cookie value", &full, []string{`JSESSIONID="c1"`}, "/fb", "", "c1", SourceCookie},
		{"empty first value falls to path param", &full,
			[]string{"JSESSIONID=; SESSION=s1"}, "/fb;jsessionid=p1", "", "p1", SourcePathParam},
		{"empty first value hides later header", &full,
			[]string{"JSESSIONID=", "JSESSIONID=c2"}, "/fb", "", "", SourceNone},
		{"empty first value hides second name", &full,
			[]string{"JSESSIONID=", "SESSION=s2"}, "/fb", "", "", SourceNone},
		{"path param", &full, nil, "/fb;jsessionid=p1", "", "p1", SourcePathParam},
		{"path param name case-insensitive", &full, nil, "/fb;JSESSIONID=p1", "", "p1", SourcePathParam},
		{"path param in middle segment", &full, nil, "/fb;jsessionid=p1/account", "", "p1", SourcePathParam},
		{"path param ends at semicolon", &full, nil, "/fb;jsessionid=p1;x=2", "", "p1", SourcePathParam},
		{"path param ends at question mark", &full, nil, "/fb;jsessionid=p1?x=1", "", "p1", SourcePathParam},
		{"path param ends at hash", &full, nil, "/fb;jsessionid=p1#frag", "", "p1", SourcePathParam},
		{"path param after other params", &full, nil, "/fb;a=1;jsessionid=p1", "", "p1", SourcePathParam},
		{"path param websphere value", &full, nil,
			"/fb/account;jsessionid=0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2?x=1", "",
			"0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2", SourcePathParam},
		{"path param in absolute form", &full, nil, "http://app.example.com/fb;jsessionid=p1?x=1", "", "p1", SourcePathParam},
		{"empty path param falls to query", &full, nil, "/fb;jsessionid=?jsessionid=q1", "", "q1", SourceQuery},
		{"path param syntax in query is not a path param", &full, nil, "/fb?x=;jsessionid=p1", "", "", SourceNone},
		{"query fallback", &full, nil, "/fb?jsessionid=q1", "", "q1", SourceQuery},
		{"query url param case-insensitive", &full, nil, "/fb?JSessionID=q1", "", "q1", SourceQuery},
		{"extra query", &full, nil, "/fb?x=1&sid=e1", "", "e1", SourceQuery},
		{"extra query name exact", &full, nil, "/fb?SID=e1", "", "", SourceNone},
		{"url param query before extra query", &full, nil, "/fb?sid=e1&jsessionid=q1", "", "q1", SourceQuery},
		{"empty url param query falls to extra query", &full, nil, "/fb?jsessionid=&sid=e1", "", "e1", SourceQuery},
		{"header", &full, nil, "/fb", "h1", "h1", SourceHeader},
		{"header with spaces", &full, nil, "/fb", " \th1 \t", "h1", SourceHeader},
		{"blank header", &full, nil, "/fb", " \t ", "", SourceNone},
		{"cookie beats path param, query and header", &full,
			[]string{"JSESSIONID=c1"}, "/fb;jsessionid=p1?jsessionid=q1&sid=e1", "h1", "c1", SourceCookie},
		{"path param beats query and header", &full,
			[]string{"other=1"}, "/fb;jsessionid=p1?jsessionid=q1&sid=e1", "h1", "p1", SourcePathParam},
		{"query beats header", &full, nil, "/fb?sid=e1", "h1", "e1", SourceQuery},
		{"cookies only: path param ignored", &cookiesOnly, nil, "/fb;jsessionid=p1?jsessionid=q1", "h1", "", SourceNone},
		{"cookies only: other cookie name ignored", &cookiesOnly, []string{"SESSION=s1"}, "/fb", "", "", SourceNone},
		{"cookies only: cookie", &cookiesOnly, []string{"SESSION=s1; JSESSIONID=c1"}, "/fb", "", "c1", SourceCookie},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hdrs [][]byte
			for _, c := range tc.cookies {
				hdrs = append(hdrs, []byte(c))
			}
			var hdr []byte
			if tc.hdr != "" {
				hdr = []byte(tc.hdr)
			}
			got, src := tc.spec.Extract(hdrs, []byte(tc.uri), hdr)
			if string(got) != tc.want || src != tc.src {
				t.Errorf("Extract(%q, %q, %q) = %q, %v; want %q, %v", tc.cookies, tc.uri, tc.hdr, got, src, tc.want, tc.src)
			}
			if src == SourceNone && got != nil {
				t.Errorf("Extract(%q, %q, %q) = %q, none; want nil key", tc.cookies, tc.uri, tc.hdr, got)
			}
		})
	}
}

func TestSourceString(t *testing.T) {
	tests := []struct {
		src  Source
		want string
	}{
		{SourceNone, "none"},
		{SourceCookie, "cookie"},
		{SourcePathParam, "path_param"},
		{SourceQuery, "query"},
		{SourceHeader, "header"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.src.String(); got != tc.want {
				t.Errorf("Source(%d).String() = %q, want %q", tc.src, got, tc.want)
			}
		})
	}
}

func TestPeekPath(t *testing.T) {
	tests := []struct {
		name string
		uri  string
		want string
		null bool
	}{
		{"origin form", "/fb/account", "/fb/account", false},
		{"origin form root", "/", "/", false},
		{"origin form with query", "/fb/account?x=1&y=2", "/fb/account", false},
		{"origin form keeps path params", "/fb/account;jsessionid=x?y=1", "/fb/account;jsessionid=x", false},
		{"origin form with fragment", "/fb#frag", "/fb", false},
		{"fragment before question mark", "/fb#frag?x=1", "/fb", false},
		{"query then fragment", "/fb?x=1#frag", "/fb", false},
		{"empty query", "/fb?", "/fb", false},
		{"absolute form", "http://h/p?q", "/p", false},
		{"absolute form with port and params", "http://app.example.com:8080/fb;jsessionid=x?y=1", "/fb;jsessionid=x", false},
		{"absolute form https", "https://h/p", "/p", false},
		{"absolute form scheme case-insensitive", "HTTPS://H/p", "/p", false},
		{"absolute form mixed case http", "Http://h/p#f", "/p", false},
		{"absolute form root", "https://h/", "/", false},
		{"absolute form without path", "http://h", "", true},
		{"absolute form query without path", "http://h?q=/x", "", true},
		{"absolute form fragment without path", "http://h#/x", "", true},
		{"asterisk", "*", "", true},
		{"authority form", "app.example.com:443", "", true},
		{"other scheme", "ftp://h/p", "", true},
		{"truncated scheme", "http:/", "", true},
		{"empty", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := PeekPath([]byte(tc.uri))
			if string(got) != tc.want || tc.null != (got == nil) {
				t.Errorf("PeekPath(%q) = %q (nil %v), want %q (nil %v)", tc.uri, got, got == nil, tc.want, tc.null)
			}
		})
	}
}

func TestPeekPathParam(t *testing.T) {
	tests := []struct {
		name  string
		path  string
		param string
		want  string
	}{
		{"last segment", "/fb/account;jsessionid=x1", "jsessionid", "x1"},
		{"middle segment", "/fb;jsessionid=x1/account", "jsessionid", "x1"},
		{"several params in one segment", "/fb;a=1;jsessionid=x1;b=2", "jsessionid", "x1"},
		{"params in several segments", "/fb;a=1/account;jsessionid=x1", "jsessionid", "x1"},
		{"first of two wins", "/fb;jsessionid=x1/account;jsessionid=x2", "jsessionid", "x1"},
		{"name case-insensitive", "/fb;JSessionId=x1", "jsessionid", "x1"},
		{"config name upper case", "/fb;jsessionid=x1", "JSESSIONID", "x1"},
		{"longer name skipped", "/fb;jsessionidx=1;jsessionid=x1", "jsessionid", "x1"},
		{"suffix name skipped", "/fb;xjsessionid=1", "jsessionid", ""},
		{"name without value", "/fb;jsessionid", "jsessionid", ""},
		{"empty value", "/fb;jsessionid=", "jsessionid", ""},
		{"empty value before segment", "/fb;jsessionid=/account", "jsessionid", ""},
		{"value ends at slash", "/fb;jsessionid=x1/y", "jsessionid", "x1"},
		{"value ends at semicolon", "/fb;jsessionid=x1;y", "jsessionid", "x1"},
		{"value ends at question mark", "/fb;jsessionid=x1?y", "jsessionid", "x1"},
		{"value ends at hash", "/fb;jsessionid=x1#y", "jsessionid", "x1"},
		{"value keeps colons", "/fb;jsessionid=0000A:c1:c2", "jsessionid", "0000A:c1:c2"},
		{"value keeps equals", "/fb;jsessionid=a=b", "jsessionid", "a=b"},
		{"no param", "/fb/account", "jsessionid", ""},
		{"bare semicolon", "/fb;", "jsessionid", ""},
		{"empty path", "", "jsessionid", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := PeekPathParam([]byte(tc.path), []byte(tc.param)); string(got) != tc.want {
				t.Errorf("PeekPathParam(%q, %q) = %q, want %q", tc.path, tc.param, got, tc.want)
			}
		})
	}
}

func TestPeekQuery(t *testing.T) {
	tests := []struct {
		name  string
		uri   string
		param string
		fold  bool
		want  string
	}{
		{"only param", "/p?sid=x1", "sid", false, "x1"},
		{"middle param", "/p?a=1&sid=x1&b=2", "sid", false, "x1"},
		{"first of two wins", "/p?sid=x1&sid=x2", "sid", false, "x1"},
		{"exact: other case not matched", "/p?SID=x1", "sid", false, ""},
		{"exact: other case skipped", "/p?SID=x1&sid=x2", "sid", false, "x2"},
		{"fold: other case matched", "/p?JSessionID=x1", "jsessionid", true, "x1"},
		{"fold: same case matched", "/p?jsessionid=x1", "jsessionid", true, "x1"},
		{"longer name skipped", "/p?sidx=1&sid=x1", "sid", false, "x1"},
		{"shorter name skipped", "/p?si=1&sid=x1", "sid", false, "x1"},
		{"no equals sign: empty value", "/p?sid&x=1", "sid", false, ""},
		{"no equals sign first wins", "/p?sid&sid=x1", "sid", false, ""},
		{"empty value", "/p?sid=&x=1", "sid", false, ""},
		{"value keeps equals", "/p?sid=a=b", "sid", false, "a=b"},
		{"value not percent-decoded", "/p?sid=a%3Ab", "sid", false, "a%3Ab"},
		{"empty args skipped", "/p?&&sid=x1", "sid", false, "x1"},
		{"value ends at hash", "/p?sid=x1#frag", "sid", false, "x1"},
		{"param in fragment ignored", "/p?a=1#sid=x1", "sid", false, ""},
		{"question mark in fragment is not a query", "/p#frag?sid=x1", "sid", false, ""},
		{"path param is not a query param", "/p;sid=x1", "sid", false, ""},
		{"absolute form", "http://h/p?sid=x1", "sid", false, "x1"},
		{"no query", "/p", "sid", false, ""},
		{"empty query", "/p?", "sid", false, ""},
		{"empty uri", "", "sid", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := PeekQuery([]byte(tc.uri), []byte(tc.param), tc.fold); string(got) != tc.want {
				t.Errorf("PeekQuery(%q, %q, %v) = %q, want %q", tc.uri, tc.param, tc.fold, got, tc.want)
			}
		})
	}
}
