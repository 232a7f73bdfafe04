package gateway

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

func TestZZReviewTargetForms(t *testing.T) {
	var served atomic.Int64
	mk := func(id string) string {
		return startFastMember(t, func(ctx *fasthttp.RequestCtx) {
			served.Add(1)
			fmt.Fprintf(ctx, "member=%s uri=%s host=%s", id, ctx.Request.Header.RequestURI(), ctx.Request.Header.Host())
		})
	}
	cfg := gwConfig(gwGroup("fb", "/fb", gwMember("fb1", mk("fb1"))), gwGroup("root", "/", gwMember("r1", mk("r1"))))
	_, addr := startGateway(t, cfg, zerolog.Nop())
	for _, target := range []string{
		"/fb/../admin",
		"ftp://app/fb/../admin",
		"ftp://app/fb/x",
		"x://app/fb/x",
		"http:/fb/../admin",
		"fb/../admin",
		"fb/x",
		"HTTP://app/fb/../admin",
		"http://app/fb/x",
		"http://app",
		"http://app?/../x",
	} {
		resp, body := rawRoundTrip(t, addr, "GET "+target+" HTTP/1.1\r\nHost: app\r\n\r\n")
		t.Logf("%-28q -> %d %q", target, resp.StatusCode, body)
	}
}
