package gateway

import (
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/config"
	"github.com/valyala/fasthttp"
)

// BenchmarkProxy compares, in the same run, requests sent straight to a member with the
// same requests sent through the gateway (WebSphere cookie with a 3-clone list, route
// affinity, access log off). Each sub-benchmark reports the process CPU time per
// request (load generator, member and gateway share the process, so the gateway's own
// cost is the difference) and p50/p99 latency; the parent logs the ratios.
//
//	go test -run=NONE -bench=Proxy -benchtime=3s ./gateway/
func BenchmarkProxy(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("member=Node1\n")
	member := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}
	go member.Serve(ln) //nolint:errcheck // ends with Shutdown
	defer member.Shutdown()

	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = ""
	cfg.Log.Access = false
	never := config.NewMember("Node2", "127.0.0.1:1") // never chosen: the key names Node1
	cfg.TargetGroups = []config.Group{config.NewGroup("FBDevTargetGroup", "/fb", config.NewMember("Node1", ln.Addr().String()), never)}
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
	targets := []struct{ name, addr string }{
		{"direct", ln.Addr().String()},
		{"gateway", lns[0].Addr().String()},
	}
	if epollAvailable {
		// The same gateway on the epoll data path.
		ecfg := cfg
		ecfg.Listeners = []config.Listener{{Address: "127.0.0.1:0", HTTP2: true, Dataplane: config.DataplaneEpoll}}
		es, err := New(&ecfg, zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		elns, err := es.Listen()
		if err != nil {
			b.Fatal(err)
		}
		go es.Serve(elns, nil) //nolint:errcheck // ends with Shutdown
		defer es.Shutdown(5 * time.Second)
		targets = append(targets, struct{ name, addr string }{"gateway-epoll", elns[0].Addr().String()})
	}

	results := map[string]proxyResult{}
	for _, target := range targets {
		b.Run(target.name, func(b *testing.B) {
			results[target.name] = runProxyLoad(b, target.addr)
		})
	}
	d, g := results["direct"], results["gateway"]
	if d.nsPerReq > 0 && g.nsPerReq > 0 {
		b.Logf("gateway/direct: throughput %.2f, p50 %.2f, p99 %.2f, CPU per request %.2f; gateway CPU per request %.0f ns",
			d.nsPerReq/g.nsPerReq, float64(g.p50)/float64(d.p50), float64(g.p99)/float64(d.p99),
			g.cpuPerReq/d.cpuPerReq, g.cpuPerReq-d.cpuPerReq)
	}
	if e := results["gateway-epoll"]; d.nsPerReq > 0 && e.nsPerReq > 0 {
		b.Logf("gateway-epoll/direct: throughput %.2f, p50 %.2f, p99 %.2f, CPU per request %.2f; gateway CPU per request %.0f ns",
			d.nsPerReq/e.nsPerReq, float64(e.p50)/float64(d.p50), float64(e.p99)/float64(d.p99),
			e.cpuPerReq/d.cpuPerReq, e.cpuPerReq-d.cpuPerReq)
	}
}

type proxyResult struct {
	nsPerReq, cpuPerReq float64
	p50, p99            time.Duration
}

func runProxyLoad(b *testing.B, addr string) proxyResult {
	c := &fasthttp.HostClient{Addr: addr, MaxConns: 64}
	const key = "JSESSIONID=0000A1B2C3D4E5F6G7H8I9J0K1L:Node1:Node2:Node3"
	var mu sync.Mutex
	var lat []time.Duration
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("/fb/account/summary?x=1")
		req.Header.SetHost("app.example.com")
		req.Header.Set("Cookie", "theme=dark; lang=en; "+key+"; _ga=GA1.2.3; csrf=abcdef")
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			t0 := time.Now()
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Errorf("request: %v, status %d", err, resp.StatusCode())
				return
			}
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	b.StopTimer()
	cpu := cpuTime() - cpu0
	r := proxyResult{
		nsPerReq:  float64(b.Elapsed().Nanoseconds()) / float64(b.N),
		cpuPerReq: float64(cpu.Nanoseconds()) / float64(b.N),
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	b.ReportMetric(r.cpuPerReq, "cpu-ns/req")
	b.ReportMetric(float64(r.p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(r.p99.Microseconds()), "p99-µs")
	b.ReportMetric(1e9/r.nsPerReq, "req/s")
	return r
}

// cpuTime is the user+system CPU time of this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
