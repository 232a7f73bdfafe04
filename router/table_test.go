package router

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// members returns n members "m1".."mn" of weight 1, routes equal to their ids.
func members(n int) []MemberSpec {
	ms := make([]MemberSpec, n)
	for i := range ms {
		n := strconv.Itoa(i + 1)
		ms[i] = MemberSpec{ID: "m" + n, Addr: "10.0.0." + n + ":8080", Weight: 1}
	}
	return ms
}

func mustTable(t testing.TB, spec Spec, states *States) *Table {
	t.Helper()
	tab, err := NewTable(spec, states)
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	return tab
}

func TestNewTableErrors(t *testing.T) {
	chain := []Link{HashResolver()}
	group := func(name string, ms ...MemberSpec) GroupSpec {
		return GroupSpec{Name: name, Members: ms}
	}
	m := func(id, route string, weight int) MemberSpec {
		return MemberSpec{ID: id, Addr: "10.0.0.1:8080", Route: route, Weight: weight}
	}
	tests := []struct {
		name string
		spec Spec
		want string // substring naming the field
	}{
		{"no group", Spec{Chain: chain}, "no group"},
		{"empty chain", Spec{Groups: []GroupSpec{group("a", m("m1", "", 1))}}, "empty resolver chain"},
		{"group without member", Spec{Chain: chain, Groups: []GroupSpec{group("a", m("m1", "", 1)), group("b")}},
			`group 1 ("b"): no member`},
		{"path prefix without slash", Spec{Chain: chain, Groups: []GroupSpec{
			{Name: "a", PathPrefix: "fb", Members: []MemberSpec{m("m1", "", 1)}}}},
			`group 0 ("a"): prefix "fb" does not start with /`},
		{"zero weight", Spec{Chain: chain, Groups: []GroupSpec{group("a", m("m1", "", 1), m("m2", "", 0))}},
			`group 0 member 1 ("m2"): weight 0 is not positive`},
		{"negative weight", Spec{Chain: chain, Groups: []GroupSpec{group("a", m("m1", "", -2))}},
			`group 0 member 0 ("m1"): weight -2 is not positive`},
		{"duplicate route", Spec{Chain: chain, Groups: []GroupSpec{group("a", m("m1", "r1", 1), m("m2", "r1", 1))}},
			`group 0 member 1 ("m2"): route "r1" is not unique`},
		{"route equal to another member's default route", Spec{Chain: chain, Groups: []GroupSpec{
			group("a", m("m1", "", 1), m("m2", "m1", 1))}},
			`group 0 member 1 ("m2"): route "m1" is not unique`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tab, err := NewTable(tc.spec, NewStates())
			if err == nil {
				t.Fatalf("NewTable(%s) = %v, nil; want error naming %q", tc.name, tab, tc.want)
			}
			if msg := err.Error(); !errors.Is(err, ErrSpec) || !strings.Contains(msg, tc.want) {
				t.Errorf("NewTable(%s) error = %q, want ErrSpec naming %q", tc.name, msg, tc.want)
			}
		})
	}
}

func TestNewTable(t *testing.T) {
	states := NewStates()
	spec := Spec{
		Chain: []Link{RouteResolver(FormatAuto), HashResolver()},
		Groups: []GroupSpec{
			{Name: "a", Members: []MemberSpec{
				{ID: "m1", Addr: "10.0.0.1:8080", Weight: 1},
				{ID: "m2", Addr: "10.0.0.2:8080", Route: "clone2", Weight: 3},
			}},
			{Name: "b", PathPrefix: "/b", Members: []MemberSpec{{ID: "m3", Addr: "10.0.0.3:8080", Weight: 1}}},
		},
	}
	t1 := mustTable(t, spec, states)
	if got := len(t1.Members); got != 3 {
		t.Fatalf("len(Table.Members) = %d, want 3", got)
	}
	for i, m := range t1.Members {
		if m.Index != i {
			t.Errorf("Members[%d].Index = %d, want %d", i, m.Index, i)
		}
	}
	if g := t1.Group("a"); g == nil || string(g.Prefix) != "/" || g.Index != 0 {
		t.Errorf(`Group("a") = %+v, want prefix "/" and index 0`, g)
	}
	if g := t1.Group("missing"); g != nil {
		t.Errorf(`Group("missing") = %v, want nil`, g)
	}
	if r := string(t1.Members[0].Route); r != "m1" {
		t.Errorf("Members[0].Route = %q, want the id %q", r, "m1")
	}
	if r := string(t1.Members[1].Route); r != "clone2" {
		t.Errorf("Members[1].Route = %q, want %q", r, "clone2")
	}

	// A second table from the same States shares member runtime state by id.
	t1.Members[1].State.SetAdmin(AdminDrain)
	t1.Members[2].State.SetHealthy(false)
	t2 := mustTable(t, spec, states)
	for i := range t1.Members {
		if t1.Members[i].State != t2.Members[i].State {
			t.Errorf("Members[%d].State differs between tables built from one States", i)
		}
	}
	if a := t2.Members[1].State.Admin(); a != AdminDrain {
		t.Errorf("reloaded m2 Admin() = %v, want drain", a)
	}
	if t2.Members[2].State.Healthy() {
		t.Errorf("reloaded m3 Healthy() = true, want false")
	}
	st, ok := states.Lookup("m2")
	if !ok || st != t2.Members[1].State || st.ID() != "m2" {
		t.Errorf(`States.Lookup("m2") = %v, %v; want the table's state`, st, ok)
	}
	if _, ok := states.Lookup("m9"); ok {
		t.Errorf(`States.Lookup("m9") found a state, want none`)
	}
	nums := map[uint32]bool{}
	for _, m := range t2.Members {
		nums[m.State.Num()] = true
	}
	if len(nums) != 3 {
		t.Errorf("member state numbers %v are not unique", nums)
	}
}

func TestMatch(t *testing.T) {
	long := strings.Repeat("a", 300) + ".example.com"
	host255 := strings.Repeat("a", 255-len(".example.com")) + ".example.com"
	host256 := "a" + host255
	spec := Spec{
		Chain: []Link{HashResolver()},
		Groups: []GroupSpec{
			{Name: "exact-root", Hosts: []string{"app.example.com"}, PathPrefix: "/", Members: members(1)},
			{Name: "exact-fb", Hosts: []string{"App.Example.COM"}, PathPrefix: "/fb", Members: members(1)},
			{Name: "wild-fb", Hosts: []string{"*.Example.com"}, PathPrefix: "/fb", Members: members(1)},
			{Name: "wild-eu", Hosts: []string{"*.eu.example.com"}, Members: members(1)},
			{Name: "ipv6", Hosts: []string{"[::1]", "127.0.0.1"}, PathPrefix: "/", Members: members(1)},
			{Name: "any-root", Members: members(1)},
			{Name: "any-fb", PathPrefix: "/fb", Members: members(1)},
			{Name: "any-fb-account", PathPrefix: "/fb/account", Members: members(1)},
		},
	}
	tab := mustTable(t, spec, NewStates())
	tests := []struct {
		name string
		host string
		path string
		want string
	}{
		{"exact host and prefix", "app.example.com", "/fb/x", "exact-fb"},
		{"exact host upper case with port", "APP.EXAMPLE.COM:8080", "/fb", "exact-fb"},
		{"exact host other path", "app.example.com", "/other", "exact-root"},
		{"exact host empty path is root", "app.example.com", "", "exact-root"},
		{"exact host beats wildcard", "app.example.com", "/fb/account", "exact-fb"},
		{"exact host segment boundary", "app.example.com", "/fbx", "exact-root"},
		{"wildcard", "www.example.com", "/fb/x", "wild-fb"},
		{"wildcard upper case with port", "WWW.Example.Com:443", "/fb", "wild-fb"},
		{"wildcard deep subdomain", "a.b.example.com", "/fb", "wild-fb"},
		{"wildcard without matching prefix falls to any host", "www.example.com", "/fb2", "any-root"},
		{"most specific wildcard first", "x.eu.example.com", "/fb", "wild-eu"},
		{"wildcard does not match bare domain", "example.com", "/fb", "any-fb"},
		{"wildcard does not match suffix without dot", "badexample.com", "/fb", "any-fb"},
		{"wildcard beats any host", "www.example.com", "/fb/account", "wild-fb"},
		{"any host longest prefix", "other.org", "/fb/account/x", "any-fb-account"},
		{"any host prefix segment boundary", "other.org", "/fb/accountx", "any-fb"},
		{"any host root", "other.org", "/x", "any-root"},
		{"empty host", "", "/fb", "any-fb"},
		{"ipv6 with port", "[::1]:8080", "/x", "ipv6"},
		{"ipv6 without port", "[::1]", "/", "ipv6"},
		{"ipv6 unterminated", "[::1", "/", "any-root"},
		{"ipv4 with port", "127.0.0.1:80", "/fb", "ipv6"},
		{"host of 255 bytes", host255, "/fb", "wild-fb"},
		{"host of 256 bytes matches only any host", host256, "/fb", "any-fb"},
		{"very long host matches only any host", long, "/fb/account", "any-fb-account"},
		{"path from absolute form", "app.example.com", string(PeekPath([]byte("http://app.example.com/fb?x=1"))), "exact-fb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := tab.Match([]byte(tc.host), []byte(tc.path))
			if g == nil || g.Name != tc.want {
				t.Errorf("Match(%q, %q) = %s, want %s", tc.host, tc.path, groupName(g), tc.want)
			}
		})
	}
}

func groupName(g *Group) string {
	if g == nil {
		return "<nil>"
	}
	return g.Name
}

func TestMatchSegmentBoundary(t *testing.T) {
	spec := Spec{
		Chain: []Link{HashResolver()},
		Groups: []GroupSpec{
			{Name: "fb", Hosts: []string{"app.example.com"}, PathPrefix: "/fb", Members: members(1)},
			{Name: "slash", Hosts: []string{"app.example.com"}, PathPrefix: "/static/", Members: members(1)},
		},
	}
	tab := mustTable(t, spec, NewStates())
	tests := []struct {
		name string
		uri  string
		want string // "" for no match
	}{
		{"exact", "/fb", "fb"},
		{"trailing slash", "/fb/", "fb"},
		{"sub path", "/fb/account", "fb"},
		{"path param", "/fb;jsessionid=x", "fb"},
		{"query", "/fb?x", "fb"},
		{"fragment", "/fb#x", "fb"},
		{"absolute form", "http://app.example.com/fb/x?y", "fb"},
		{"longer segment", "/fbx", ""},
		{"longer segment with slash", "/fbx/", ""},
		{"shorter", "/f", ""},
		{"case-sensitive path", "/FB", ""},
		{"root", "/", ""},
		{"asterisk", "*", ""},
		{"prefix ending in slash", "/static/app.js", "slash"},
		{"prefix ending in slash exact", "/static/", "slash"},
		{"prefix ending in slash, longer segment", "/staticx/app.js", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := PeekPath([]byte(tc.uri))
			g := tab.Match([]byte("app.example.com"), path)
			if got := groupName(g); tc.want == "" && g != nil || tc.want != "" && got != tc.want {
				t.Errorf("Match(%q, PeekPath(%q) = %q) = %s, want %q", "app.example.com", tc.uri, path, got, tc.want)
			}
		})
	}
}

func TestMatchNoGroup(t *testing.T) {
	spec := Spec{
		Chain: []Link{HashResolver()},
		Groups: []GroupSpec{
			{Name: "exact", Hosts: []string{"app.example.com"}, PathPrefix: "/fb", Members: members(1)},
			{Name: "wild", Hosts: []string{"*.example.com"}, PathPrefix: "/fb", Members: members(1)},
		},
	}
	tab := mustTable(t, spec, NewStates())
	tests := []struct {
		name, host, path string
	}{
		{"unknown host", "other.org", "/fb"},
		{"known host, no prefix", "app.example.com", "/x"},
		{"wildcard host, no prefix", "www.example.com", "/"},
		{"empty host", "", "/fb"},
		{"long host", strings.Repeat("a", 300) + ".example.com", "/fb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if g := tab.Match([]byte(tc.host), []byte(tc.path)); g != nil {
				t.Errorf("Match(%q, %q) = %s, want <nil>", tc.host, tc.path, g.Name)
			}
		})
	}
}

func TestParseAdmin(t *testing.T) {
	tests := []struct {
		in   string
		want Admin
		ok   bool
	}{
		{"ready", AdminReady, true},
		{"drain", AdminDrain, true},
		{"maint", AdminMaint, true},
		{"Drain", AdminReady, false},
		{"", AdminReady, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := ParseAdmin(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("ParseAdmin(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
			if ok && got.String() != tc.in {
				t.Errorf("Admin(%d).String() = %q, want %q", got, got.String(), tc.in)
			}
		})
	}
	if s := Admin(7).String(); s != "unknown" {
		t.Errorf("Admin(7).String() = %q, want %q", s, "unknown")
	}
}

func TestMemberState(t *testing.T) {
	st := NewStates().Get("m1")
	check := func(step string, healthy bool, admin Admin, bound, fresh bool) {
		t.Helper()
		if st.Healthy() != healthy || st.Admin() != admin || st.UsableBound() != bound || st.UsableNew() != fresh {
			t.Errorf("%s: Healthy, Admin, UsableBound, UsableNew = %v, %v, %v, %v; want %v, %v, %v, %v", step,
				st.Healthy(), st.Admin(), st.UsableBound(), st.UsableNew(), healthy, admin, bound, fresh)
		}
	}
	check("new", true, AdminReady, true, true)
	if !st.SetHealthy(false) {
		t.Errorf("SetHealthy(false) on a healthy member = false, want true (changed)")
	}
	if st.SetHealthy(false) {
		t.Errorf("SetHealthy(false) twice = true, want false (unchanged)")
	}
	check("down", false, AdminReady, false, false)
	st.SetAdmin(AdminDrain)
	check("down, drain", false, AdminDrain, false, false)
	st.SetHealthy(true)
	check("drain", true, AdminDrain, true, false)
	st.SetAdmin(AdminMaint)
	check("maint", true, AdminMaint, false, false)
	st.SetAdmin(AdminReady)
	check("ready again", true, AdminReady, true, true)
}
