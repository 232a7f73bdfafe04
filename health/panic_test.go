package health

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestPanicModeUnderConcurrentFailures(t *testing.T) {
	c := New(zerolog.New(io.Discard), time.Minute)
	defer c.Stop()
	both := 0
	for i := 0; i < 5000; i++ {
		peers := groupStates("a", "b")
		p := Passive{Failures: 1, Ejection: time.Minute, MaxEjection: time.Hour}
		c.Update([]Target{
			{Group: "g", Member: "a", Addr: "127.0.0.1:1", State: peers[0], Peers: peers, Passive: p},
			{Group: "g", Member: "b", Addr: "127.0.0.1:2", State: peers[1], Peers: peers, Passive: p},
		})
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, st := range peers {
			wg.Add(1)
			go func() { defer wg.Done(); <-start; c.Observe(st, Connect) }()
		}
		close(start)
		wg.Wait()
		if peers[0].Ejected() && peers[1].Ejected() {
			both++
		}
	}
	if both > 0 {
		t.Fatalf("both members of a 2-member group ejected in %d of 5000 runs", both)
	}
}
