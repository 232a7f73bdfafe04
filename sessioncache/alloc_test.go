//go:build !race

package sessioncache

import "testing"

// TestAllocsPack guards our own part of Lookup. ristretto's Get itself allocates about
// once per 400 calls (its read buffers), so Lookup is benchmarked, not guarded.
func TestAllocsPack(t *testing.T) {
	var v uint64
	if n := testing.AllocsPerRun(1000, func() {
		num, at := unpack(v)
		v = pack(num+1, at+1)
	}); n != 0 {
		t.Fatalf("pack/unpack: %v allocs/op, want 0", n)
	}
}
