package app

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// The memory limit TuneGC sets starts at MemoryBudget and follows the live
// heap up once it outgrows the budget, so a large replay window never makes
// the collector run back to back.
func TestTuneGCMemoryLimitFollowsLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	TuneGC(func(string) string { return "" })
	runtime.GC()
	runtime.GC() // the finalizer of the first collection has run
	checkBudget(t, "with a small heap")
	live := make([]byte, 200<<20) // pointer-free, like the nonce index
	for i := 0; i < len(live); i += 4096 {
		live[i] = 1
	}
	for i := 0; i < 4; i++ {
		runtime.GC()
	}
	got := debug.SetMemoryLimit(-1)
	if min := int64(float64(len(live)) * MemoryGrowth); got < min {
		t.Fatalf("memory limit with 200 MiB live: %d, want at least %d", got, min)
	}
	runtime.KeepAlive(live)
	live = nil
	for i := 0; i < 4; i++ {
		runtime.GC()
	}
	checkBudget(t, "after the live heap shrank")
}

// checkBudget: the limit is MemoryBudget when the process's own live heap
// is well under it. The test shares its process with the package's other
// tests, whose leftovers may make the heap larger: then the limit may be
// above the budget, never below.
func checkBudget(t *testing.T, when string) {
	t.Helper()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	got := debug.SetMemoryLimit(-1)
	switch {
	case got < MemoryBudget:
		t.Fatalf("memory limit %s: %d, below MemoryBudget %d", when, got, MemoryBudget)
	case ms.HeapAlloc < MemoryBudget/4 && got != MemoryBudget:
		t.Fatalf("memory limit %s (heap %d): %d, want MemoryBudget %d", when, ms.HeapAlloc, got, MemoryBudget)
	}
}

// An operator's GOMEMLIMIT is left alone.
func TestTuneGCKeepsOperatorMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	debug.SetMemoryLimit(1 << 40)
	debug.SetGCPercent(100)
	TuneGC(func(k string) string {
		if k == "GOMEMLIMIT" || k == "GOGC" {
			return "set"
		}
		return ""
	})
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("memory limit: %d, want the operator's %d", got, int64(1<<40))
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC percent: %d, want the operator's 100", got)
	}
}
