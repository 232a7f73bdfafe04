package gateway

import (
	"github.com/valyala/fasthttp"
)

// newAdminServer serves the admin listener: GET /healthz answers 200 while the
// gateway runs.
func (s *Server) newAdminServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               s.handleAdmin,
		Name:                  "sessiongate-admin",
		NoDefaultServerHeader: true,
		ReadTimeout:           s.snap.Load().cfg.Server.ReadTimeout,
		WriteTimeout:          s.snap.Load().cfg.Server.WriteTimeout,
		Logger:                fasthttpLogger{s.log},
	}
}

func (s *Server) handleAdmin(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/healthz":
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
	default:
		ctx.Error("404 Not Found\n", fasthttp.StatusNotFound)
	}
}
