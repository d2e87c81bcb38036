package app

import (
	"runtime/debug"
)

// GCPercent is the garbage collector target the server runs with unless
// GOGC is set. Its live heap is small (about 8 MB with a million stored
// messages: the data lives in the memory-mapped database file, not the
// heap) while every callback allocates a few kilobytes, so Go's default of
// 100 collects hundreds of times a second; 400 lets the heap grow to about
// five times the live data, still far under the memory budget, and gives
// that CPU back to ingestion.
const GCPercent = 400

// TuneGC applies GCPercent unless the operator set GOGC; getenv is main's
// view of the environment.
func TuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}
