package sandbox

import (
	"fmt"
	mrand "math/rand/v2"
	"testing"
)

// TestSandboxFailureShare: the allocation is exact over every block of 100.
func TestSandboxFailureShare(t *testing.T) {
	for _, share := range []float64{0, 0.1, 0.37, 1} {
		t.Run(fmt.Sprint(share), func(t *testing.T) {
			sb := &Sandbox{opts: Options{FailureShare: share}, rng: newTestRand()}
			counts := map[string]int{}
			for range 3 * allocBlock {
				counts[sb.nextOutcomeLocked()]++
			}
			want := 3 * int(share*allocBlock+0.5)
			if got := counts["failed"] + counts["undelivered"]; got != want {
				t.Errorf("failures in 300: got %d (%v), want %d", got, counts, want)
			}
		})
	}
}

func newTestRand() *mrand.Rand { return mrand.New(mrand.NewPCG(1, 2)) }
