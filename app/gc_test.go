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
	if got := debug.SetMemoryLimit(-1); got != MemoryBudget {
		t.Fatalf("memory limit with a small heap: %d, want MemoryBudget %d", got, MemoryBudget)
	}
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
	if got := debug.SetMemoryLimit(-1); got != MemoryBudget {
		t.Fatalf("memory limit after the live heap shrank: %d, want MemoryBudget %d", got, MemoryBudget)
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
