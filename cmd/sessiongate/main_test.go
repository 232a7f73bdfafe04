package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/bench"
)

// build compiles the command into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sessiongate")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestSIGTERMDuringSlowRequests runs the real binary: SIGTERM while slow requests are
// in flight lets them complete, refuses new connections, and exits 0. SIGHUP reloads.
func TestSIGTERMDuringSlowRequests(t *testing.T) {
	bin := build(t)
	var arrived atomic.Int64
	release := make(chan struct{})
	member := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fast" {
			io.WriteString(w, "fast\n")
			return
		}
		arrived.Add(1)
		<-release
		io.WriteString(w, "slow done\n")
	})}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go member.Serve(mln) //nolint:errcheck
	defer member.Close()

	listen := freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "sessiongate.yaml")
	cfg := fmt.Sprintf("listen: %s\nadmin: {listen: \"\"}\nshutdown_timeout: 20s\nlog: {format: json}\n"+
		"target_groups:\n  - name: g\n    members:\n      - {id: m1, address: %q}\n", listen, mln.Addr().String())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfgPath)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() //nolint:errcheck // after a failure only
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	waitLog := func(what string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-logs:
				if !ok {
					t.Fatalf("the gateway exited before logging %q", what)
				}
				if strings.Contains(l, what) {
					return
				}
			case <-deadline:
				t.Fatalf("no log line %q within 30s", what)
			}
		}
	}
	waitLog("sessiongate serving")

	// SIGHUP reloads the (unchanged) file.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("config reloaded")

	client := &http.Client{Timeout: 30 * time.Second}
	if resp, err := client.Get("http://" + listen + "/fast"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /fast through the gateway: %v", err)
	}
	const inflight = 3
	results := make(chan string, inflight)
	for range inflight {
		go func() {
			resp, err := client.Get("http://" + listen + "/slow")
			if err != nil {
				results <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- fmt.Sprintf("%d %s", resp.StatusCode, b)
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for arrived.Load() < inflight {
		if time.Now().After(deadline) {
			t.Fatal("slow requests never reached the member")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog("shutting down")
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", listen, 200*time.Millisecond)
		if err != nil {
			break // refused: the listener is closed
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("the gateway still accepts connections after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	for range inflight {
		if r := <-results; r != "200 slow done\n" {
			t.Fatalf("in-flight request across SIGTERM: %q, want 200 slow done", r)
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway did not exit after SIGTERM")
	}
}

func TestValidateExitCodes(t *testing.T) {
	bin := build(t)
	good, err := exec.Command(bin, "validate", "-config", "../../examples/fbdev.yaml").CombinedOutput()
	if err != nil || !strings.Contains(string(good), "ok") {
		t.Fatalf("validate examples/fbdev.yaml: %v\n%s", err, good)
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(path, []byte("target_groups:\n  - name: g\n    members:\n      - {id: m1, address: \"10.1.1.12:70000\"}\n"), 0o600)
	out, err := exec.Command(bin, "validate", "-config", path).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "target_groups[0].members[0].address") {
		t.Fatalf("validate bad.yaml: %v, want exit 1 naming the field\n%s", err, out)
	}
}

// TestBenchChildJSON runs `sessiongate bench -mode child -json`: the binary re-executes
// itself as the gateway, and its JSON parses back into a bench.Report with every phase
// clean; with -dataplane both, the gateway runs twice, from a file with the listener
// on fasthttp's data path and then from one with it on epoll's.
func TestBenchChildJSON(t *testing.T) {
	bin := build(t)
	for _, tc := range []struct {
		name, dataplane string
		phases          []string
	}{
		{"default", "", []string{"direct", "sessiongate"}},
		{"both", bench.DataplaneBoth, []string{"direct", "sessiongate", bench.PhaseEpoll}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"bench", "-mode", "child", "-json", "-requests", "300", "-warmup", "100ms", "-sessions", "50", "-conns", "2"}
			if tc.dataplane != "" {
				if runtime.GOOS != "linux" {
					t.Skipf("the epoll data path needs Linux, not %s", runtime.GOOS)
				}
				args = append(args, "-dataplane", tc.dataplane)
			}
			cmd := exec.Command(bin, args...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("sessiongate %q: %v\n%s\n%s", args, err, out, stderr.String())
			}
			var r bench.Report
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("json.Unmarshal(bench -json): %v\n%s", err, out)
			}
			var names []string
			for _, p := range r.Phases {
				names = append(names, p.Name)
			}
			if !slices.Equal(names, tc.phases) || r.Mode != bench.ModeChild {
				t.Fatalf("report: mode %q, phases %q; want child, %q", r.Mode, names, tc.phases)
			}
			for _, p := range r.Phases {
				if p.Requests != 300 || p.ErrorCount != 0 || p.StickyViolations != 0 {
					t.Errorf("%s: %d requests, errors %v, sticky violations %d; want 300, none, 0", p.Name, p.Requests, p.Errors, p.StickyViolations)
				}
				if p.Name != "direct" && p.CPUScope != "proxy process" {
					t.Errorf("%s: CPU scope %q, want proxy process", p.Name, p.CPUScope)
				}
			}
		})
	}
}

// -tls has no direct phase, no memory or target mode and no epoll data path, the h2
// load has at least one connection and stream, -dataplane is one of three, and a report
// has one format: the rest are usage errors (exit 2), refused before anything starts.
func TestBenchTLSUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-tls", "-min-ratio", "0.4"},
		{"-tls", "-memory"},
		{"-tls", "-target", "https://127.0.0.1:1/"},
		{"-tls", "-h2-streams", "0"},
		{"-tls", "-h2-conns", "-1"},
		{"-tls", "-dataplane", "epoll"},
		{"-tls", "-dataplane", "both"},
		{"-dataplane", "xdp"},
		{"-markdown", "-json"},
		{"-markdown", "-memory"},
	} {
		if got := runBench(args); got != 2 {
			t.Errorf("runBench(%q) = %d, want 2", args, got)
		}
	}
}

// TestBenchTLSChildJSON runs `sessiongate bench -tls -mode child -json`: the gateway as
// a child behind its TLS listener, measured with the three loads, h2 on the
// connections and streams asked for.
func TestBenchTLSChildJSON(t *testing.T) {
	bin := build(t)
	// 1,000 requests a load: the proxy's CPU is read in clock ticks (10ms), and 200 h2
	// requests could pass in fewer than one on a fast machine.
	cmd := exec.Command(bin, "bench", "-tls", "-mode", "child", "-json", "-requests", "1000", "-warmup", "100ms",
		"-sessions", "50", "-conns", "2", "-h2-conns", "2", "-h2-streams", "4")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sessiongate bench -tls: %v\n%s\n%s", err, out, stderr.String())
	}
	var r bench.Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("json.Unmarshal(bench -tls -json): %v\n%s", err, out)
	}
	if !r.TLS || len(r.Phases) != 3 || r.H2Conns != 2 || r.H2Streams != 4 {
		t.Fatalf("report: tls %v, %d phases, h2 %d x %d; want true, 3 (sessiongate keep-alive, handshake and h2), 2 x 4\n%s", r.TLS, len(r.Phases), r.H2Conns, r.H2Streams, out)
	}
	if p := r.Phases[2]; p.VsKeepAlive == nil || p.VsKeepAlive.CPU <= 0 {
		t.Errorf("h2: ratios to keep-alive %+v, want CPU/req from the proxy process", p.VsKeepAlive)
	}
	for i, load := range []string{bench.LoadKeepAlive, bench.LoadHandshake, bench.LoadH2} {
		p := r.Phases[i]
		if p.Name != "sessiongate" || p.Load != load || p.Requests != 1000 || p.ErrorCount != 0 || p.StickyViolations != 0 || p.CPUScope != "proxy process" {
			t.Errorf("phase %d: %s %s, %d requests, errors %v, sticky violations %d, CPU scope %q; want sessiongate %s, 1000, none, 0, proxy process",
				i, p.Name, p.Load, p.Requests, p.Errors, p.StickyViolations, p.CPUScope, load)
		}
	}
}
