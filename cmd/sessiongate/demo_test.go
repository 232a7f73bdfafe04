package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The demo answers a browser's first visit without an error: the page, the status page
// URL in its banner, and /favicon.ico.
func TestDemoServesPageAndFavicon(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	stop := make(chan struct{})
	var out bytes.Buffer
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- runDemo(listen, "127.0.0.1:0", zerolog.Nop(), &readyWriter{w: &out, ready: ready}, stop)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("demo ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the demo printed no banner")
	}
	defer func() {
		close(stop)
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	}()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for _, tc := range []struct{ path, want string }{{"/fb/", "member="}, {"/favicon.ico", "\x89PNG"}} {
		resp, err := c.Get("http://" + listen + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), tc.want) {
			t.Errorf("GET %s: %d %q, want 200 starting %q", tc.path, resp.StatusCode, body, tc.want)
		}
	}
	if !strings.Contains(out.String(), "/status") {
		t.Errorf("the banner does not give the status page URL:\n%s", out.String())
	}
}

// readyWriter closes ready at the banner's last line.
type readyWriter struct {
	w     io.Writer
	ready chan struct{}
}

func (r *readyWriter) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	if strings.Contains(string(p), "stop with Ctrl-C") {
		close(r.ready)
	}
	return n, err
}
