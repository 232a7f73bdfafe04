package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/bench"
	"github.com/sessiongate/sessiongate/internal/redistest"
)

// TestThreeInstances runs three gateway processes of this binary on one configuration
// in front of the same members, each request of each client to a random instance, one
// member killed halfway: in every affinity mode every session stays on its member (and
// the killed member's sessions move once, alike everywhere), with no failed request.
// learned-redis shares learned bindings through a real redis-server. The learned-local
// control (bindings learned by each instance alone) must break sessions, or the check
// could not see a violation.
func TestThreeInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three gateway processes")
	}
	bin := buildStatic(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	modes := []string{bench.InstancesRoute, bench.InstancesCookie, bench.InstancesHash, bench.InstancesLearnedRedis, bench.InstancesLearnedLocal}
	redis := redistest.Start(t) // skips without redis-server, but under CI
	rs, err := bench.RunInstances(ctx, bench.InstancesOptions{Executable: bin, Instances: 3, Sessions: 150, Requests: 20, Modes: modes, Redis: redis.Addr})
	var table bytes.Buffer
	bench.WriteInstances(&table, rs)
	t.Logf("\n%s", table.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		want := r.Sessions * 2 * 20
		switch {
		case r.Requests != want:
			t.Errorf("%s: %d requests, want %d", r.Mode, r.Requests, want)
		case r.Mode == bench.InstancesLearnedLocal:
			if r.Violations == 0 {
				t.Errorf("%s: no violation: the check cannot see sessions break", r.Mode)
			}
		case r.Failed > 0 || r.Violations > 0:
			t.Errorf("%s: %d failed, %d violations (%s), want none", r.Mode, r.Failed, r.Violations, r.Note)
		case r.Moved == 0:
			t.Errorf("%s: no session of the killed member %s moved", r.Mode, r.Killed)
		}
	}
}
