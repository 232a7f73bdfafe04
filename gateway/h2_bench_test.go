package gateway

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/valyala/fasthttp"
)

// BenchmarkTLS compares, in one run, the same request over a TLS listener as HTTP/1.1
// (fasthttp's server on the TLS connection) and as HTTP/2 (the standard library's
// server, bridged to the request path), from the same Go client (net/http, keep-alive,
// 32 goroutines). allocs/op and cpu-ns/req are of the whole process (client, gateway,
// member), so the difference of the two is what HTTP/2 costs the gateway.
//
//	go test -run=NONE -bench=TLS -benchtime=3s ./gateway/
func BenchmarkTLS(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("member=Node1\n")
	member := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}
	go member.Serve(ln) //nolint:errcheck // ends with Shutdown
	defer member.Shutdown()

	t := &testing.T{}
	ca := newTestCA(t)
	cert, key := ca.issue("gw", false, "localhost")
	cfg := config.Default()
	cfg.Admin.Listen = ""
	cfg.Log.Access = false
	cfg.Listeners = []config.Listener{tlsListenerCfg(pair(cert, key))}
	cfg.TargetGroups = []config.Group{config.NewGroup("fb", "/fb", config.NewMember("Node1", ln.Addr().String()))}
	s, err := New(&cfg, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	lns, err := s.Listen()
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(lns, nil) //nolint:errcheck // ends with Shutdown
	defer s.Shutdown(5 * time.Second)
	url := "https://" + lns[0].Addr().String() + "/fb/account/summary?x=1"

	res := map[string]float64{}
	for _, h2 := range []bool{false, true} {
		name := map[bool]string{false: "http1.1", true: "h2"}[h2]
		b.Run(name, func(b *testing.B) {
			tr := &http.Transport{TLSClientConfig: ca.clientConfig("localhost"), ForceAttemptHTTP2: h2, MaxIdleConnsPerHost: 64, DisableCompression: true}
			if !h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			b.ReportAllocs()
			b.SetParallelism(16)
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Cookie", "JSESSIONID=0000A1B2C3D4E5F6G7H8I9J0K1L:Node1")
				for pb.Next() {
					resp, err := c.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body) //nolint:errcheck // benchmark
					resp.Body.Close()
					if resp.StatusCode != 200 || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
						b.Errorf("%s %d", resp.Proto, resp.StatusCode)
						return
					}
				}
			})
			b.StopTimer()
			cpu := float64((cpuTime() - cpu0).Nanoseconds()) / float64(b.N)
			b.ReportMetric(cpu, "cpu-ns/req")
			res[name] = cpu
		})
	}
	if res["http1.1"] > 0 && res["h2"] > 0 {
		b.Logf("h2/http1.1 CPU per request (whole process): %.2f", res["h2"]/res["http1.1"])
	}
}
