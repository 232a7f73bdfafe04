package bench

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sessiongate/sessiongate/internal/demo"
)

// newH2Clients makes n HTTP/2 clients of one connection each, so that the h2 load runs
// on exactly n connections whatever the proxy's stream limit: the standard library's
// HTTP/2 (ALPN h2 from the dialer's configuration), MaxConnsPerHost 1, no proxy from
// the environment, no compression. Their handshakes are d's.
func newH2Clients(n int, d *tlsDialer) []*http.Client {
	out := make([]*http.Client, n)
	for i := range out {
		tr := &http.Transport{
			DialTLSContext:      d.dialContext,
			ForceAttemptHTTP2:   true,
			MaxConnsPerHost:     1,
			MaxIdleConnsPerHost: 1,
			DisableCompression:  true,
		}
		out[i] = &http.Client{Transport: tr, Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return out
}

func closeH2Clients(cs []*http.Client) {
	for _, c := range cs {
		c.CloseIdleConnections()
	}
}

// h2Worker is worker for LoadH2: one stream at a time on c's connection, which it
// shares with the other workers of that client. An answer that did not come over
// HTTP/2 is an error ("not_h2"). The Go client sends the Cookie header as one crumb
// per cookie (RFC 9113 section 8.2.3), so each proxy has to join them again.
func (l *load) h2Worker(c *http.Client, rawURL string, sessions []*session, next time.Time, interval time.Duration) workerResult {
	res := workerResult{hist: newHist(), errors: map[string]int64{}}
	u, err := url.Parse(rawURL)
	if err != nil {
		res.errors["bad_url"]++
		return res
	}
	for i := 0; !l.stop.Load(); i++ {
		s := sessions[i%len(sessions)]
		req := &http.Request{Method: http.MethodGet, URL: u, Host: benchHost, Header: http.Header{}}
		if s.cookie != nil {
			req.Header["Cookie"] = []string{string(s.cookie)}
		}
		t0 := time.Now()
		if interval > 0 {
			if d := next.Sub(t0); d > 0 {
				time.Sleep(d)
			}
			t0 = next // latency from the intended send time
			next = next.Add(interval)
		}
		measured := l.measuring.Load()
		if measured && l.opts.Requests > 0 && l.count.Add(1) > l.opts.Requests {
			break
		}
		resp, err := c.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		lat := time.Since(t0)
		l.total.Add(1)
		bad := ""
		switch {
		case err != nil:
			bad = errKind(err)
		case resp.ProtoMajor != 2:
			bad = "not_h2"
		case resp.StatusCode != http.StatusOK:
			bad = "status_" + strconv.Itoa(resp.StatusCode)
		}
		got := -1
		if bad == "" {
			got, bad = l.answeredBy([]byte(resp.Header.Get(demo.HeaderMember)))
		}
		if bad != "" {
			l.failed(&res, bad, measured)
			continue
		}
		if s.kind == kindLearned && s.cookie == nil {
			for _, ck := range resp.Cookies() {
				if ck.Name == "JSESSIONID" && ck.Value != "" {
					s.cookie = sessionCookie(ck.Value)
					break
				}
			}
		}
		l.answered(&res, s, got, lat, measured)
	}
	return res
}
