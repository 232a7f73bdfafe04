package router

import (
	"math"
	"testing"
	"time"
)

func TestObserve(t *testing.T) {
	cases := []struct {
		name   string
		status int
		d      time.Duration
		class  int
		bucket int // first bucket (index into Cumulative) that counts it
	}{
		{"fast_ok", 200, 100 * time.Microsecond, 2, 0},
		{"on_a_bound", 204, time.Millisecond, 2, 1}, // bounds are inclusive ("le")
		{"just_past_a_bound", 301, time.Millisecond + 1, 3, 2},
		{"client_error", 404, 30 * time.Millisecond, 4, 6},
		{"server_error", 503, 10 * time.Second, 5, NumLatencyBuckets - 1},
		{"past_every_bound", 101, time.Minute, 1, NumLatencyBuckets},
		{"negative", 200, -time.Second, 2, 0},
		{"status_out_of_range", 999, 2 * time.Millisecond, 0, 2},
		{"no_status", 0, 2 * time.Millisecond, 0, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := NewStates().Get("Node1")
			st.Observe(c.status, c.d)
			for i := range st.Responses {
				want := uint64(0)
				if i == c.class {
					want = 1
				}
				if got := st.Responses[i].Load(); got != want {
					t.Fatalf("Observe(%d, %v): Responses[%d] = %d, want %d", c.status, c.d, i, got, want)
				}
			}
			l := st.Latency()
			for i, got := range l.Cumulative {
				want := uint64(0)
				if i >= c.bucket {
					want = 1
				}
				if got != want {
					t.Fatalf("Observe(%d, %v): Cumulative[%d] (le %v) = %d, want %d", c.status, c.d, i, boundName(l, i), got, want)
				}
			}
			wantSum := max(c.d, 0).Seconds()
			if math.Abs(l.Sum-wantSum) > 1e-6 {
				t.Fatalf("Observe(%d, %v): Sum = %v, want %v", c.status, c.d, l.Sum, wantSum)
			}
		})
	}
}

func TestLatencyCumulative(t *testing.T) {
	st := NewStates().Get("Node1")
	ds := []time.Duration{300 * time.Microsecond, 300 * time.Microsecond, 7 * time.Millisecond, 2 * time.Second, 20 * time.Second}
	var sum time.Duration
	for _, d := range ds {
		st.Observe(200, d)
		sum += d
	}
	l := st.Latency()
	if l.Count() != uint64(len(ds)) {
		t.Fatalf("Count() = %d, want %d", l.Count(), len(ds))
	}
	want := map[time.Duration]uint64{500 * time.Microsecond: 2, 5 * time.Millisecond: 2, 10 * time.Millisecond: 3, time.Second: 3, 2500 * time.Millisecond: 4, 10 * time.Second: 4}
	for i, b := range l.Bounds {
		if i > 0 && b <= l.Bounds[i-1] {
			t.Fatalf("Bounds[%d] = %v, not above Bounds[%d] = %v", i, b, i-1, l.Bounds[i-1])
		}
		if w, ok := want[b]; ok && l.Cumulative[i] != w {
			t.Fatalf("Cumulative[le %v] = %d, want %d", b, l.Cumulative[i], w)
		}
	}
	if math.Abs(l.Sum-sum.Seconds()) > 1e-6 {
		t.Fatalf("Sum = %v, want %v", l.Sum, sum.Seconds())
	}
}

func boundName(l Latency, i int) string {
	if i == NumLatencyBuckets {
		return "+Inf"
	}
	return l.Bounds[i].String()
}
