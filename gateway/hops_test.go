package gateway

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestHopsOfRaw(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		want       uint16
	}{
		{"none", "Host: a\r\nCookie: JSESSIONID=x\r\nAccept: */*\r\n\r\n", 0},
		{"connection", "Host: a\r\nConnection: keep-alive, X-Private\r\n\r\n", hopConnection},
		{"any case", "host: a\r\nKEEP-ALIVE: 5\r\nte: trailers\r\nupgrade: h2c\r\n\r\n", 1<<2 | 1<<5 | 1<<7},
		{"proxy ones", "Proxy-Connection: x\r\nProxy-Authorization: b\r\nProxy-Authenticate: c\r\n\r\n", 1<<1 | 1<<3 | 1<<4},
		{"trailer", "Trailer: X-Sum\r\n\r\n", 1 << 6},
		{"forwarded", "X-Forwarded-For: 1.2.3.4\r\nx-forwarded-proto: https\r\nX-Forwarded-Host: h\r\nX-Forwarded-Port: 1\r\n\r\n",
			hopXForwardedFor | hopXForwardedProto | hopXForwardedHost | hopXForwardedPort},
		{"value is no name", "X-Note: Connection: close\r\n\r\n", 0},
		{"folded line is no name", "X-Note: a\r\n Connection: b\r\n\r\n", 0},
		{"prefix is no match", "Connections: 1\r\nTe-X: 2\r\n\r\n", 0},
		{"empty block: all", "", hopAll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := hopsOfRaw([]byte(tc.head)); got != tc.want {
				t.Errorf("hopsOfRaw(%q) = %012b, want %012b", tc.head, got, tc.want)
			}
		})
	}
}

// FuzzHopsOfRaw checks hopsOfRaw against fasthttp's own reading of the head: every
// hop-by-hop or X-Forwarded-* header fasthttp parsed is in the mask, so none is ever
// forwarded for want of a delete.
func FuzzHopsOfRaw(f *testing.F) {
	f.Add([]byte("Host: a\r\nConnection: keep-alive, X-Private\r\nKeep-Alive: 5\r\n\r\n"))
	f.Add([]byte("Host: a\r\nX-Note: a\r\n Te: b\r\nUpgrade: h2c\r\n\r\n"))
	f.Add([]byte("Host: a\r\nx-forwarded-for: 1\r\nTRAILER: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		if len(head) > 4096 {
			return
		}
		var h fasthttp.RequestHeader
		raw := append([]byte("GET / HTTP/1.1\r\n"), head...)
		if err := h.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
			return
		}
		got := hopsOfRaw(h.RawHeaders())
		names := append(append([][]byte(nil), hopHeaders...), forwardedHeaders...)
		for i, name := range names {
			if name := string(name); name == "Connection" && h.ConnectionClose() {
				continue // "Connection: close" alone: a flag fasthttp resets, nothing to delete
			}
			if len(h.PeekAll(string(name))) > 0 && got&(1<<i) == 0 {
				t.Fatalf("head %q: fasthttp has %s, hopsOfRaw = %012b misses it", head, name, got)
			}
		}
	})
}
