package gateway

import (
	"encoding/json"
	"math"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sessiongate/sessiongate/router"
)

// seriesT0 is the time of the sampler tests' first reading.
var seriesT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// reading is a gateway reading with one member "M1" of group "g".
func reading(requests, errors, moves, mreq, mfail uint64, lat [router.NumLatencyBuckets + 1]uint64) seriesReading {
	return seriesReading{requests: requests, errors: errors, moves: moves, members: []memberReading{
		{group: "g", id: "M1", requests: mreq, failures: mfail, latency: lat},
	}}
}

// hist is a cumulative histogram with n[i] responses in bucket i (not cumulative).
func hist(n map[int]uint64) [router.NumLatencyBuckets + 1]uint64 {
	var h [router.NumLatencyBuckets + 1]uint64
	var c uint64
	for i := range h {
		c += n[i]
		h[i] = c
	}
	return h
}

// seriesNum turns a sampled value into a float, NaN for null.
func seriesNum(v seriesValue) float64 { return float64(v) }

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 || (math.IsNaN(a) && math.IsNaN(b)) }

func TestSeriesRingWraps(t *testing.T) {
	r := newSeries(3)
	for i := range 6 { // a base reading, then 5 intervals: the ring keeps the last 3
		n := uint64(i * i * 10)
		r.add(seriesT0.Add(time.Duration(i)*time.Second), reading(n, 0, 0, n, 0, hist(nil)))
	}
	got := r.snapshot()
	if len(got.At) != 3 {
		t.Fatalf("snapshot has %d samples, want 3 (the ring's size)", len(got.At))
	}
	for i, want := range []float64{50, 70, 90} { // (i²-(i-1)²)·10 for i = 3, 4, 5
		if at := time.UnixMilli(got.At[i]).UTC(); !at.Equal(seriesT0.Add(time.Duration(i+3) * time.Second)) {
			t.Errorf("At[%d] = %v, want %v", i, at, seriesT0.Add(time.Duration(i+3)*time.Second))
		}
		if v := seriesNum(got.Gateway.RPS[i]); !near(v, want) {
			t.Errorf("gateway RPS[%d] = %v, want %v", i, v, want)
		}
		if v := seriesNum(got.Members[0].RPS[i]); !near(v, want) {
			t.Errorf("M1 RPS[%d] = %v, want %v", i, v, want)
		}
	}
}

func TestSeriesRates(t *testing.T) {
	r := newSeries(10)
	r.add(seriesT0, reading(100, 4, 0, 90, 1, hist(map[int]uint64{3: 90})))
	if n := len(r.snapshot().At); n != 0 {
		t.Fatalf("after the base reading the snapshot has %d samples, want 0", n)
	}
	// 2 s later: 40 more requests, 6 more gateway errors, 20 more to M1 of which 4 failed.
	r.add(seriesT0.Add(2*time.Second), reading(140, 10, 0, 110, 5, hist(map[int]uint64{3: 110})))
	// A member that appears has no point until its second reading.
	cur := reading(150, 10, 0, 110, 5, hist(map[int]uint64{3: 110}))
	cur.members = append(cur.members, memberReading{group: "g", id: "M2", requests: 7})
	r.add(seriesT0.Add(3*time.Second), cur)
	got := r.snapshot()
	cases := []struct {
		name      string
		got, want float64
	}{
		{"gateway rps", seriesNum(got.Gateway.RPS[0]), 20},
		{"gateway errors/s", seriesNum(got.Gateway.Errors[0]), 3},
		{"M1 rps", seriesNum(got.Members[0].RPS[0]), 10},
		{"M1 failures/s", seriesNum(got.Members[0].Errors[0]), 2},
		{"gateway rps, second interval", seriesNum(got.Gateway.RPS[1]), 10},
		{"M1 rps, second interval", seriesNum(got.Members[0].RPS[1]), 0},
		{"M1 p99 without responses", seriesNum(got.Members[0].P99[1]), math.NaN()},
		{"M2 rps at its first reading", seriesNum(got.Members[1].RPS[1]), math.NaN()},
	}
	for _, c := range cases {
		if !near(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(got.Members) != 2 || got.Members[1].ID != "M2" || len(got.Members[1].RPS) != 2 {
		t.Errorf("members = %+v, want M1 and M2 with 2 samples each", got.Members)
	}
}

// TestSeriesP99FromDeltas: the p99 of an interval is over the responses of that
// interval, whatever came before.
func TestSeriesP99FromDeltas(t *testing.T) {
	// Bucket i's upper bound: 0.5, 1, 2.5, 5, 10, 25, 50, 100 ms, ...
	cases := []struct {
		name       string
		prev, cur  map[int]uint64 // per bucket, not cumulative
		wantMember float64
	}{
		// 1000 responses in (5, 10] ms: rank 990 of 1000, interpolated in the bucket.
		{"one bucket", nil, map[int]uint64{4: 1000}, 5 + 5*990.0/1000},
		// 10000 slow responses before, 100 fast ones now: the slow ones do not count.
		{"old slow ones ignored", map[int]uint64{9: 10000}, map[int]uint64{9: 10000, 1: 100}, 0.5 + 0.5*99.0/100},
		// 980 fast and 20 at (50, 100] ms: rank 990 falls in the slow bucket.
		{"tail", nil, map[int]uint64{0: 980, 7: 20}, 50 + 50*10.0/20},
		// all past the last bound: the largest finite bound.
		{"past every bound", nil, map[int]uint64{router.NumLatencyBuckets: 5}, 10000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newSeries(4)
			r.add(seriesT0, reading(0, 0, 0, 0, 0, hist(c.prev)))
			r.add(seriesT0.Add(time.Second), reading(0, 0, 0, 0, 0, hist(c.cur)))
			got := r.snapshot()
			if v := seriesNum(got.Members[0].P99[0]); !near(v, c.wantMember) {
				t.Errorf("member p99 = %v ms, want %v ms", v, c.wantMember)
			}
			if v := seriesNum(got.Gateway.P99[0]); !near(v, c.wantMember) {
				t.Errorf("gateway p99 (one member) = %v ms, want %v ms", v, c.wantMember)
			}
		})
	}
}

func TestSeriesMovesPerMinute(t *testing.T) {
	r := newSeries(seriesLen)
	// 3 moves a second for 30 s, then none for 90 s.
	var moves uint64
	for i := range 121 {
		if i > 0 && i <= 30 {
			moves += 3
		}
		r.add(seriesT0.Add(time.Duration(i)*time.Second), reading(0, 0, moves, 0, 0, hist(nil)))
	}
	got := r.snapshot().Gateway.MovesPM
	cases := []struct {
		at   int // sample index: the interval ending at i+1 s
		want float64
	}{
		{0, 180},  // 3 in 1 s
		{29, 180}, // 90 in 30 s
		{59, 90},  // 90 in the trailing 60 s
		{89, 0},   // the last move was 60 s before
		{119, 0},  // and nothing since
		{69, 60},  // 60 moves (seconds 11-30) in the trailing 60 s
	}
	for _, c := range cases {
		if v := seriesNum(got[c.at]); !near(v, c.want) {
			t.Errorf("moves/min at sample %d = %v, want %v", c.at, v, c.want)
		}
	}
}

func TestSeriesValueJSON(t *testing.T) {
	b, err := json.Marshal([]seriesValue{1.5, seriesValue(math.NaN()), 0})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "[1.500,null,0.000]"; got != want {
		t.Errorf("json.Marshal = %s, want %s", got, want)
	}
}

// seriesGoroutines counts the running samplers (a goroutine not yet scheduled shows
// as a wrapper, but always with its creator).
func seriesGoroutines() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "created by github.com/sessiongate/sessiongate/gateway.(*series).start")
}

// TestSeriesSamplerStopsOnShutdown: New starts one sampler goroutine, Shutdown ends it.
func TestSeriesSamplerStopsOnShutdown(t *testing.T) {
	before := seriesGoroutines()
	s, err := New(gwConfig(gwGroup("g", "/", gwMember("M1", closedAddr(t)))), zerolog.Nop())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if n := seriesGoroutines(); n != before+1 {
		t.Errorf("after New %d samplers run, want %d", n, before+1)
	}
	if err := s.Shutdown(time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-s.series.done:
	default:
		t.Fatal("Shutdown returned with the sampler still running")
	}
	waitFor(t, "the sampler goroutine to be gone", func() bool { return seriesGoroutines() == before })
	if err := s.Shutdown(time.Second); err != nil { // a second Shutdown does not block on it
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestSeriesEndpoint(t *testing.T) {
	s, addr, admin := startStatusGateway(t)
	statusTraffic(t, addr)
	waitFor(t, "two samples", func() bool { return len(s.series.snapshot().At) >= 2 })

	code, body := adminDo(t, "GET", admin+"/api/series", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/series = %d, want 200\n%s", code, body)
	}
	var got SeriesStatus
	if err := json.Unmarshal([]byte(strings.ReplaceAll(body, "null", "-1")), &got); err != nil {
		t.Fatalf("GET /api/series: %v\n%s", err, body)
	}
	if got.IntervalMS != 1000 || len(got.At) < 2 {
		t.Errorf("interval_ms = %d with %d samples, want 1000 with at least 2", got.IntervalMS, len(got.At))
	}
	n := len(got.At)
	for name, v := range map[string][]seriesValue{"rps": got.Gateway.RPS, "errors_per_s": got.Gateway.Errors, "p99_ms": got.Gateway.P99, "moves_per_min": got.Gateway.MovesPM} {
		if len(v) != n {
			t.Errorf("gateway %s has %d values, want %d", name, len(v), n)
		}
	}
	var ids []string
	for _, m := range got.Members {
		ids = append(ids, m.ID)
		if len(m.RPS) != n || len(m.Errors) != n || len(m.P99) != n {
			t.Errorf("member %s has %d/%d/%d values, want %d each", m.ID, len(m.RPS), len(m.Errors), len(m.P99), n)
		}
	}
	if strings.Join(ids, ",") != strings.Join(statusMembers, ",") {
		t.Errorf("members = %q, want %q", ids, statusMembers)
	}

	if code, _ := adminDo(t, "POST", admin+"/api/series", "", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/series = %d, want 405", code)
	}
	req, _ := http.NewRequest("GET", admin+"/api/series", nil)
	req.Host = "rebound.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("GET /api/series with Host rebound.example = %d, want 421", resp.StatusCode)
	}
}
