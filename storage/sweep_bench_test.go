package storage

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// sweepBenchMessages is the size of the store BenchmarkCommitAfterSweep
// sweeps: Plivo-shaped messages, three callbacks each.
const sweepBenchMessages = 30_000

// sweptStore builds, once, a file of sweepBenchMessages messages of which
// the oldest 90% are then deleted by retention (swept=true) or not, and
// returns a copy's path for the caller to open.
func sweptStore(b *testing.B, swept bool) string {
	b.Helper()
	dir := b.TempDir()
	path := filepath.Join(dir, "dlr.db")
	clock := newTestClock()
	s, err := Open(path, Options{NoSync: true, Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	const loaders = 32
	now := clock.Now()
	for w := range loaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for m := w; m < sweepBenchMessages; m += loaders {
				at := now.Add(time.Duration(m) * time.Second)
				for _, st := range benchStatuses {
					e := benchEvent(m, false, st, at)
					e.ReceivedAt = at
					n := Nonce{Value: randomNonce(r), ExpiresAt: at.Add(time.Hour)}
					if _, err := s.Apply(context.Background(), e, n); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if swept {
		cutoff := now.Add(time.Duration(sweepBenchMessages*9/10) * time.Second)
		if _, err := s.Sweep(context.Background(), RetentionPolicy{EventsBefore: cutoff, MessagesBefore: cutoff, BatchKeys: 5000}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.PurgeNonces(cutoff.Add(2*time.Hour), 0); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

func copyFile(b *testing.B, src, dst string) {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCommitAfterSweep measures one fsync'd Apply (one commit) on a
// store before and after a retention sweep freed most of its pages, with
// bbolt writing the freelist on every commit (freelist_sync=on, bbolt's
// default) or not (NoFreelistSync), and the Open that pays for not writing
// it (the freelist is rebuilt by reading every page).
func BenchmarkCommitAfterSweep(b *testing.B) {
	for _, swept := range []bool{false, true} {
		src := sweptStore(b, swept)
		for _, noSync := range []bool{false, true} {
			name := fmt.Sprintf("swept=%v/freelist_sync=%s", swept, map[bool]string{false: "on", true: "off"}[noSync])
			path := filepath.Join(b.TempDir(), "dlr.db")
			copyFile(b, src, path)
			// Kept across runs of the sub-benchmark (-count): fresh nonces
			// and messages every time.
			now := time.Now()
			r := rand.New(rand.NewPCG(uint64(now.UnixNano()), 4))
			i := 0
			b.Run("op=apply/"+name, func(b *testing.B) {
				s := mustOpenPath(b, path, Options{SyncFreelist: !noSync})
				defer s.Close()
				b.ReportAllocs()
				for b.Loop() {
					i++
					e := benchEvent(sweepBenchMessages+i, false, StatusQueued, now)
					n := Nonce{Value: randomNonce(r), ExpiresAt: now.Add(time.Hour)}
					if _, err := s.Apply(context.Background(), e, n); err != nil {
						b.Fatalf("apply %d (nonce %s): %v", i, n.Value, err)
					}
				}
				st := s.db.Stats()
				b.ReportMetric(float64(st.FreePageN+st.PendingPageN), "free_pages")
				b.ReportMetric(float64(st.FreelistInuse), "freelist_bytes")
			})
			b.Run("op=open/"+name, func(b *testing.B) {
				for b.Loop() {
					db, err := bolt.Open(path, 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType, NoFreelistSync: noSync, InitialMmapSize: 1 << 30})
					if err != nil {
						b.Fatal(err)
					}
					if err := db.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
