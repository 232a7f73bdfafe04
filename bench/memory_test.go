package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMemory measures in a process of its own (this test binary again): the heap
// figures are the whole process's, and the other tests' gateways, each with a session
// cache of 48 MiB, may be freed in the middle of a measurement here.
func TestMemory(t *testing.T) {
	const n = 20000
	if os.Getenv("BENCH_MEMORY_CHILD") == "1" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, err := Memory(ctx, []int{n})
		if err != nil {
			t.Fatalf("Memory: %v", err)
		}
		if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
			t.Fatal(err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMemory$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BENCH_MEMORY_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var r MemoryReport
	line, _, _ := bytes.Cut(out, []byte("\n"))
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	if len(r.Sizes) != 1 {
		t.Fatalf("Memory: %d sizes, want 1", len(r.Sizes))
	}
	s := r.Sizes[0]
	if s.Sessions != n {
		t.Errorf("Sessions = %d, want %d", s.Sessions, n)
	}
	if s.Entries <= n*8/10 {
		t.Errorf("Entries = %d after %d passes, want more than %d", s.Entries, s.Passes, n*8/10)
	}
	if s.HeapPerEntry <= 0 || s.TotalHeapPerEntry <= 0 {
		t.Errorf("heap per entry %.1f, total %.1f, want both > 0", s.HeapPerEntry, s.TotalHeapPerEntry)
	}
	// RSS is the whole process's and moves with the runtime's scavenger, so it is
	// reported, not checked.
	t.Logf("entries %d, passes %d, heap/entry %.1f, rss/entry %.1f, empty heap %d", s.Entries, s.Passes, s.HeapPerEntry, s.RSSPerEntry, s.EmptyHeap)
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil || !strings.Contains(b.String(), "heap/entry") {
		t.Errorf("WriteTable = %v:\n%s\nwant the heap/entry column", err, b.String())
	}
}

func TestMemoryBadSize(t *testing.T) {
	if _, err := Memory(context.Background(), []int{0}); err == nil {
		t.Error("Memory([0]) = nil error, want one")
	}
}
