package app

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// GCPercent is the garbage collector target the server runs with unless
// GOGC is set. Its live heap is small (about 8 MB with a million stored
// messages: the data lives in the memory-mapped database file, not the
// heap) while every callback allocates a few kilobytes, so Go's default of
// 100 collects hundreds of times a second; 400 lets the heap grow to about
// five times the live data and gives that CPU back to ingestion.
const GCPercent = 400

// MemoryBudget is the soft memory limit (as GOMEMLIMIT) the server runs with
// unless GOMEMLIMIT is set: it caps what GCPercent lets the heap grow to.
// GCPercent alone scales the garbage allowed with everything live, and the
// replay-protection index is live: with a million nonces in the window
// (about 29 MB of index, 37 MB live heap) it let the heap reach 183 MB and
// RssAnon 187 MB (BenchmarkServerMemory). With the budget the collector
// runs once the process's Go memory reaches 56 MiB; the index itself is
// pointer-free, so those extra collections stay cheap.
const MemoryBudget = 56 << 20

// MemoryGrowth is how far above the memory in use after a collection the
// limit is raised when the live data alone outgrows MemoryBudget (a larger
// replay window): the limit never sits so close to the live data that the
// collector runs back to back.
const MemoryGrowth = 1.25

var (
	tuneOnce sync.Once
	// adaptiveLimit is on while the limit is ours to move (GOMEMLIMIT unset).
	adaptiveLimit atomic.Bool
)

// TuneGC applies GCPercent unless the operator set GOGC, and MemoryBudget
// (raised after each collection to MemoryGrowth times the memory then in
// use, when that is larger) unless the operator set GOMEMLIMIT; getenv is
// main's view of the environment.
func TuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
	if getenv("GOMEMLIMIT") != "" {
		adaptiveLimit.Store(false)
		return
	}
	adaptiveLimit.Store(true)
	debug.SetMemoryLimit(MemoryBudget)
	tuneOnce.Do(func() { afterEachGC(adjustMemoryLimit) })
}

// memSamples are what adjustMemoryLimit reads: the heap objects reachable
// at the end of the last collection, and the Go memory that is neither heap
// objects nor free heap (stacks, runtime metadata).
var memSamples = []metrics.Sample{
	{Name: "/gc/heap/live:bytes"},
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
	{Name: "/memory/classes/heap/free:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
}

// adjustMemoryLimit sets the limit to MemoryBudget, or to MemoryGrowth
// times the memory in use after the last collection if that is more.
func adjustMemoryLimit() {
	if !adaptiveLimit.Load() {
		return
	}
	metrics.Read(memSamples)
	v := func(i int) float64 {
		if memSamples[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return float64(memSamples[i].Value.Uint64())
	}
	live := v(0)
	overhead := v(1) - v(2) - v(3) - v(4) - v(5)
	limit := math.Max(MemoryBudget, (live+math.Max(overhead, 0))*MemoryGrowth)
	debug.SetMemoryLimit(int64(limit))
}

// afterEachGC calls fn on the finalizer goroutine after every collection:
// a sentinel object's finalizer runs once the collector found it
// unreachable, and re-arms itself on a new sentinel.
func afterEachGC(fn func()) {
	type sentinel struct{ _ [32]byte } // not tiny-allocated, so collected alone
	var arm func()
	arm = func() {
		runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
			fn()
			arm()
		})
	}
	arm()
}
