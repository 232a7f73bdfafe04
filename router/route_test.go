package router

import (
	"slices"
	"testing"
)

// Realistic session keys: a WebSphere id is a 4-char cache id, a 23-char session id and
// a clone list; a Tomcat id is 32 hex chars and ".jvmRoute".
const (
	wsID     = "0000A1B2C3D4E5F6G7H8I9J0K1L"
	tomcatID = "9F86D081884C7D659A2FEAA0C55AD015"
)

// routeList collects the route ids of key in format f, empty ids included; nil when
// the key carries no route.
func routeList(t *testing.T, key []byte, f Format) []string {
	t.Helper()
	list := PeekRoutes(key, f)
	if list == nil {
		return nil
	}
	routes := []string{}
	for n := 0; list != nil; n++ {
		if n > len(key) {
			t.Fatalf("NextRoute loop over %q did not end after %d routes", key, n)
		}
		var route []byte
		route, list = NextRoute(list)
		routes = append(routes, string(route))
	}
	return routes
}

func TestPeekRoutes(t *testing.T) {
	tests := []struct {
		name   string
		key    string
		format Format
		list   string
		routes []string // nil: no route list
	}{
		{"websphere three clones", wsID + ":clone1:clone2:clone3", FormatWebSphere,
			"clone1:clone2:clone3", []string{"clone1", "clone2", "clone3"}},
		{"websphere one clone", wsID + ":clone1", FormatWebSphere, "clone1", []string{"clone1"}},
		{"websphere plus separators", wsID + "+clone1+clone2+clone3", FormatWebSphere,
			"clone1+clone2+clone3", []string{"clone1", "clone2", "clone3"}},
		{"websphere encoded colon upper", wsID + "%3Aclone1%3Aclone2", FormatWebSphere,
			"clone1%3Aclone2", []string{"clone1", "clone2"}},
		{"websphere encoded colon lower", wsID + "%3aclone1%3aclone2", FormatWebSphere,
			"clone1%3aclone2", []string{"clone1", "clone2"}},
		{"websphere mixed separators", wsID + ":clone1+clone2%3Aclone3", FormatWebSphere,
			"clone1+clone2%3Aclone3", []string{"clone1", "clone2", "clone3"}},
		{"websphere negative clone id", wsID + ":-1", FormatWebSphere, "-1", []string{"-1"}},
		{"websphere empty clone in list", wsID + ":clone1::clone3", FormatWebSphere,
			"clone1::clone3", []string{"clone1", "", "clone3"}},
		{"websphere trailing separator", wsID + ":clone1:", FormatWebSphere, "clone1:", []string{"clone1", ""}},
		{"websphere separator only", wsID + ":", FormatWebSphere, "", []string{""}},
		{"websphere truncated percent is no separator", wsID + ":clone1%3", FormatWebSphere,
			"clone1%3", []string{"clone1%3"}},
		{"websphere other percent escape is no separator", wsID + ":clone1%3Bx", FormatWebSphere,
			"clone1%3Bx", []string{"clone1%3Bx"}},
		{"websphere without clone list", wsID, FormatWebSphere, "", nil},
		{"websphere format on tomcat key", tomcatID + ".jvmRoute1", FormatWebSphere, "", nil},
		{"tomcat", tomcatID + ".jvmRoute1", FormatTomcat, "jvmRoute1", []string{"jvmRoute1"}},
		{"tomcat route after last dot", "a.b." + tomcatID + ".jvmRoute1", FormatTomcat, "jvmRoute1", []string{"jvmRoute1"}},
		{"tomcat trailing dot", tomcatID + ".", FormatTomcat, "", []string{""}},
		{"tomcat without route", tomcatID, FormatTomcat, "", nil},
		{"tomcat format on websphere key", wsID + ":clone1:clone2", FormatTomcat, "", nil},
		{"auto websphere", wsID + ":clone1:clone2:clone3", FormatAuto,
			"clone1:clone2:clone3", []string{"clone1", "clone2", "clone3"}},
		{"auto websphere plus", wsID + "+clone1", FormatAuto, "clone1", []string{"clone1"}},
		{"auto websphere encoded", wsID + "%3Aclone1", FormatAuto, "clone1", []string{"clone1"}},
		{"auto tomcat", tomcatID + ".jvmRoute1", FormatAuto, "jvmRoute1", []string{"jvmRoute1"}},
		{"auto prefers clone list over dot", "a.b:clone1", FormatAuto, "clone1", []string{"clone1"}},
		{"auto dot inside clone list", wsID + ":node.1", FormatAuto, "node.1", []string{"node.1"}},
		{"auto no route", tomcatID, FormatAuto, "", nil},
		{"auto empty key", "", FormatAuto, "", nil},
		{"unknown format acts as auto", tomcatID + ".jvmRoute1", Format(9), "jvmRoute1", []string{"jvmRoute1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := []byte(tc.key)
			list := PeekRoutes(key, tc.format)
			if string(list) != tc.list || (list == nil) != (tc.routes == nil) {
				t.Errorf("PeekRoutes(%q, %d) = %q (nil %v), want %q (nil %v)",
					tc.key, tc.format, list, list == nil, tc.list, tc.routes == nil)
			}
			if got := routeList(t, key, tc.format); !slices.Equal(got, tc.routes) {
				t.Errorf("routes of %q in format %d = %q, want %q", tc.key, tc.format, got, tc.routes)
			}
		})
	}
}

func TestNextRoute(t *testing.T) {
	tests := []struct {
		name      string
		list      string
		route     string
		rest      string
		restIsNil bool
	}{
		{"colon", "c1:c2:c3", "c1", "c2:c3", false},
		{"plus", "c1+c2", "c1", "c2", false},
		{"encoded colon", "c1%3Ac2", "c1", "c2", false},
		{"encoded colon lower", "c1%3ac2", "c1", "c2", false},
		{"last", "c3", "c3", "", true},
		{"empty first", ":c2", "", "c2", false},
		{"separator only", ":", "", "", false},
		{"empty list", "", "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			route, rest := NextRoute([]byte(tc.list))
			if string(route) != tc.route || string(rest) != tc.rest || (rest == nil) != tc.restIsNil {
				t.Errorf("NextRoute(%q) = %q, %q (nil %v); want %q, %q (nil %v)",
					tc.list, route, rest, rest == nil, tc.route, tc.rest, tc.restIsNil)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in   string
		want Format
		ok   bool
	}{
		{"auto", FormatAuto, true},
		{"", FormatAuto, true},
		{"websphere", FormatWebSphere, true},
		{"tomcat", FormatTomcat, true},
		{"WebSphere", FormatAuto, false},
		{"Tomcat", FormatAuto, false},
		{"jboss", FormatAuto, false},
		{" tomcat", FormatAuto, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got, ok := ParseFormat(tc.in); got != tc.want || ok != tc.ok {
				t.Errorf("ParseFormat(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}
