package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/router"
)

// startAdminGateway serves a group of two members with the admin listener on, and
// returns the server, its client address and its admin base URL.
func startAdminGateway(t *testing.T, token string, log zerolog.Logger) (*Server, string, string) {
	t.Helper()
	cfg := gwConfig(gwGroup("fb", "/fb",
		gwMember("Node1", startFastMember(t, idMember("Node1"))),
		gwMember("Node2", startFastMember(t, idMember("Node2")))))
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Token = token
	s, addr := startGateway(t, cfg, log)
	s.mu.Lock()
	admin := s.listeners[len(s.listeners)-1].Addr().String()
	s.mu.Unlock()
	return s, addr, "http://" + admin
}

func adminDo(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminGroups(t *testing.T) {
	s, addr, admin := startAdminGateway(t, "s3cret", zerolog.Nop())
	if code, body := adminDo(t, "GET", admin+"/healthz", "", ""); code != 200 || body != "ok\n" {
		t.Fatalf("GET /healthz = %d %q, want 200 ok", code, body)
	}
	c := newHTTPClient(t)
	for range 4 {
		httpGet(t, c, "http://"+addr+"/fb/x", "0000abcdefghijklmnopqrstuvw:Node2")
	}
	code, body := adminDo(t, "GET", admin+"/api/groups", "", "")
	if code != 200 {
		t.Fatalf("GET /api/groups = %d %s", code, body)
	}
	var st GroupsStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /api/groups body is not GroupsStatus JSON: %v\n%s", err, body)
	}
	if len(st.Groups) != 1 || st.Groups[0].Name != "fb" || len(st.Groups[0].Members) != 2 {
		t.Fatalf("GET /api/groups = %+v, want group fb with 2 members", st.Groups)
	}
	n2 := st.Groups[0].Members[1]
	if n2.ID != "Node2" || n2.Requests != 4 || n2.State != "ready" || n2.Health != "up" || !n2.UsableNew || n2.BoundSessions != 1 {
		t.Fatalf("Node2 status = %+v, want 4 requests, ready, up, usable, 1 bound session", n2)
	}
	if st.Outcomes["route"] != 4 || st.Requests != 4 {
		t.Fatalf("outcomes %v, requests %d; want 4 route", st.Outcomes, st.Requests)
	}
	_ = s
}

func TestAdminSetStateNeedsToken(t *testing.T) {
	var logs syncBuffer
	s, _, admin := startAdminGateway(t, "s3cret", zerolog.New(&logs))
	url := admin + "/api/groups/fb/members/Node1/state"
	for _, tc := range []struct {
		name, token, body string
		code              int
	}{
		{"no token", "", `{"state":"drain"}`, 401},
		{"wrong token", "nope", `{"state":"drain"}`, 401},
		{"bad state", "s3cret", `{"state":"down"}`, 400},
		{"bad body", "s3cret", `drain`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := adminDo(t, "POST", url, tc.token, tc.body); code != tc.code {
				t.Fatalf("POST state = %d %s, want %d", code, body, tc.code)
			}
			if a := tableMember(t, s, "Node1").State.Admin(); a != router.AdminReady {
				t.Fatalf("state after a refused POST = %s, want ready", a)
			}
		})
	}
	if code, body := adminDo(t, "POST", admin+"/api/groups/nope/members/Node1/state", "s3cret", `{"state":"drain"}`); code != 404 {
		t.Fatalf("POST for an unknown group = %d %s, want 404", code, body)
	}
	if code, body := adminDo(t, "POST", admin+"/api/groups/fb/members/Node9/state", "s3cret", `{"state":"drain"}`); code != 404 {
		t.Fatalf("POST for an unknown member = %d %s, want 404", code, body)
	}
	for _, state := range []string{"drain", "maint", "ready"} {
		code, body := adminDo(t, "POST", url, "s3cret", `{"state":"`+state+`"}`)
		var ms MemberStatus
		if code != 200 || json.Unmarshal([]byte(body), &ms) != nil || ms.State != state {
			t.Fatalf("POST state %s = %d %s", state, code, body)
		}
		if a := tableMember(t, s, "Node1").State.Admin(); a.String() != state {
			t.Fatalf("member state = %s, want %s", a, state)
		}
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Fatalf("the admin token appears in the log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "unauthorized mutation refused") {
		t.Fatalf("refused mutations were not logged:\n%s", logs.String())
	}
}

func TestAdminNoTokenRefusesMutations(t *testing.T) {
	_, _, admin := startAdminGateway(t, "", zerolog.Nop())
	if code, _ := adminDo(t, "POST", admin+"/api/groups/fb/members/Node1/state?state=drain", "anything", ""); code != 401 {
		t.Fatalf("POST with no admin token configured = %d, want 401", code)
	}
}

func TestAdminTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := loadToken(config.Admin{TokenFile: path}); err != nil || tok != "from-file" {
		t.Fatalf("loadToken = %q, %v; want from-file", tok, err)
	}
	if _, err := loadToken(config.Admin{TokenFile: path + ".missing"}); err == nil || !strings.Contains(err.Error(), "admin.token_file") {
		t.Fatalf("loadToken(missing file) = %v, want an error naming admin.token_file", err)
	}
}
