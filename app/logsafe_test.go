package app

import (
	"strings"
	"testing"
	"time"
)

func TestClipBoundsLoggedValues(t *testing.T) {
	long := strings.Repeat("a", 1<<20)
	got := clip(long)
	if len(got) > maxLoggedValue+40 {
		t.Errorf("clip of 1 MiB: %d bytes, want at most %d", len(got), maxLoggedValue+40)
	}
	if !strings.Contains(got, "1048576 bytes") {
		t.Errorf("clip should say the original length: %q", got[len(got)-30:])
	}
	if clip("short") != "short" {
		t.Errorf("short values must pass unchanged")
	}
}

func TestRejectionLogSamples(t *testing.T) {
	r := newRejectionLog(20)
	now := time.Unix(1_700_000_000, 0)
	written := 0
	for i := 0; i < 1000; i++ {
		if ok, _ := r.allow(now); ok {
			written++
		}
	}
	if written != 20 {
		t.Errorf("lines written in one second of 1000 rejections = %d, want 20", written)
	}
	ok, suppressed := r.allow(now.Add(time.Second))
	if !ok || suppressed != 980 {
		t.Errorf("next second: ok=%v suppressed=%d, want true 980", ok, suppressed)
	}
}
