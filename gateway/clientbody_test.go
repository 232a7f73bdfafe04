package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// A client that stops sending its body must not get a truncated request executed by a
// member, nor get a member ejected for its own failure.

func TestTruncatedBodyNeverReachesMember(t *testing.T) {
	var got atomic.Value
	echo := func(ctx *fasthttp.RequestCtx) {
		got.Store(fmt.Sprintf("cl=%d body=%d bytes", ctx.Request.Header.ContentLength(), len(ctx.PostBody())))
		ctx.SetBodyString("member=n1\n")
	}
	_, addr := startGateway(t, gwConfig(gwGroup("g", "/", gwMember("n1", startFastMember(t, echo)))), zerolog.Nop())
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n")
	conn.Write([]byte(strings.Repeat("a", 10000)))
	conn.(*net.TCPConn).CloseWrite() // the client gives up mid-body
	conn.SetDeadline(time.Now().Add(scaled(5 * time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil && resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("truncated body: status %d, want 400 or 408 (or no answer)", resp.StatusCode)
	}
	// The gateway answers only after it decided; had it forwarded, the member would
	// have answered first.
	if v := got.Load(); v != nil {
		t.Fatalf("the member received a request with a truncated body: %s", v)
	}
}

func TestClientAbortIsNotAMemberFailure(t *testing.T) {
	sink := func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("member=x\n") }
	g := gwGroup("g", "/", gwMember("n1", startFastMember(t, sink)), gwMember("n2", startFastMember(t, sink)))
	g.Passive.ConsecutiveFailures = 3
	s, addr := startGateway(t, gwConfig(g), zerolog.Nop())
	const aborts = 6
	for range aborts {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// 1 MiB declared, 100 KiB sent (past buffer_body_bytes: streamed), then gone.
		fmt.Fprintf(conn, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
		conn.Write([]byte(strings.Repeat("a", 100<<10)))
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}
	waitFor(t, "the aborted uploads to end", func() bool {
		return s.stats.errors[kindClientBody].Load()+s.stats.errors[kindBadRequest].Load()+
			s.stats.errors[kindClientTimeout].Load() >= aborts
	})
	for _, id := range []string{"n1", "n2"} {
		st := tableMember(t, s, id).State
		if st.Failures.Load() != 0 || st.Ejected() {
			var kinds []string
			for k := kindNone; k < numErrKinds; k++ {
				if n := s.stats.errors[k].Load(); n > 0 {
					kinds = append(kinds, fmt.Sprint(errKindNames[k], "=", n))
				}
			}
			t.Fatalf("%s: %d failures, ejected %v, after client aborts; want none (errors %v)", id, st.Failures.Load(), st.Ejected(), kinds)
		}
	}
}

func TestStrictGroupNeverRetriesASession(t *testing.T) {
	g := gwGroup("strict", "/strict",
		routed(gwMember("strictA", closedAddr(t)), "A"),
		routed(gwMember("strictB", startFastMember(t, idMember("strictB"))), "B"))
	g.Strict = true
	s, addr := startGateway(t, gwConfig(g), zerolog.Nop())
	resp, body := httpGet(t, newHTTPClient(t), "http://"+addr+"/strict/x", "0000abcdefghijklmnopqrstuvw:A")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("strict group, session bound to unreachable A: %d %q, want 502 and no move", resp.StatusCode, body)
	}
	if n := s.stats.retries.Load(); n != 0 {
		t.Fatalf("strict group retried %d times, want 0", n)
	}
}
