package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestNonceRetryIsDuplicate(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	ctx := context.Background()
	exp := clock.Now().Add(10 * time.Minute)
	nonce := Nonce{Value: "12345678901234567890", ExpiresAt: exp, Sum: 0xabc}

	first := mustApply(t, s, ev("r1", StatusQueued, 0), nonce)
	if first.Duplicate || first.Retry {
		t.Fatalf("first = %+v, want stored", first)
	}
	before, _ := s.LastCursor()
	// The same request again (same nonce, same sum): a retry, nothing written.
	again := mustApply(t, s, ev("r1", StatusQueued, 0), nonce)
	if !again.Duplicate || !again.Retry {
		t.Errorf("same request again = %+v, want Duplicate and Retry", again)
	}
	// Another request with that nonce (another sum): a replay, whatever it says.
	other := nonce
	other.Sum = 0xdef
	if _, err := s.Apply(ctx, ev("r2", StatusQueued, 0), other); !errors.Is(err, ErrReplayed) {
		t.Errorf("other request, used nonce: error = %v, want ErrReplayed", err)
	}
	// A repeat without a sum cannot be told from a replay.
	unknown := nonce
	unknown.Sum = 0
	if _, err := s.Apply(ctx, ev("r1", StatusQueued, 0), unknown); !errors.Is(err, ErrReplayed) {
		t.Errorf("repeat without sum: error = %v, want ErrReplayed", err)
	}
	// A nonce first used without a sum: every repeat is a replay.
	mustApply(t, s, ev("r3", StatusQueued, 0), Nonce{Value: "00000000000000000001", ExpiresAt: exp})
	if _, err := s.Apply(ctx, ev("r3", StatusQueued, 0), Nonce{Value: "00000000000000000001", ExpiresAt: exp, Sum: 1}); !errors.Is(err, ErrReplayed) {
		t.Errorf("repeat of a sum-less nonce: error = %v, want ErrReplayed", err)
	}
	if after, _ := s.LastCursor(); after != before+1 {
		t.Errorf("LastCursor = %d, want %d (only r3 stored)", after, before+1)
	}
	if _, _, err := s.GetMessage("r2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetMessage(r2) = %v, want ErrNotFound", err)
	}

	// The sum is kept on disk: after a restart the retry is still a retry
	// and the replay still a replay.
	s = reopen(t, s, Options{Now: clock.Now})
	if res := mustApply(t, s, ev("r1", StatusQueued, 0), nonce); !res.Retry {
		t.Errorf("after reopen, same request = %+v, want Retry", res)
	}
	if _, err := s.Apply(ctx, ev("r2", StatusQueued, 0), other); !errors.Is(err, ErrReplayed) {
		t.Errorf("after reopen, other request: error = %v, want ErrReplayed", err)
	}
	// Expired: anything may use it again.
	clock.Add(10 * time.Minute)
	other.ExpiresAt = clock.Now().Add(10 * time.Minute)
	if res := mustApply(t, s, ev("r2", StatusQueued, 0), other); res.Duplicate {
		t.Errorf("after expiry = %+v, want stored", res)
	}
}

// Two requests with one nonce in the same batch: the second sees the
// first's staged nonce.
func TestNonceRepeatWithinBatch(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	entered := make(chan struct{})
	s := mustOpenStore(t, Options{BeforeCommit: func() {
		once.Do(func() {
			close(entered)
			<-gate
		})
	}})
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	// The first batch holds the writer so that the next requests queue up
	// and share one batch.
	blocker := make(chan error, 1)
	go func() {
		_, err := s.Apply(ctx, ev("b0", StatusQueued, 0), Nonce{Value: "blocker", ExpiresAt: exp})
		blocker <- err
	}()
	<-entered
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.Apply(ctx, ev(fmt.Sprintf("b%d", i+1), StatusQueued, 0), Nonce{Value: "shared", ExpiresAt: exp, Sum: uint64(i + 1)})
			errs <- err
		}()
	}
	// Let the requests reach the queue, then release the writer.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.reqs) < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if len(s.reqs) < n {
		t.Fatalf("%d requests queued, want %d", len(s.reqs), n)
	}
	close(gate)
	if err := <-blocker; err != nil {
		t.Fatalf("blocker: %v", err)
	}
	stored, replayed := 0, 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			stored++
		case errors.Is(err, ErrReplayed):
			replayed++
		default:
			t.Errorf("Apply: %v", err)
		}
	}
	if stored != 1 || replayed != n-1 {
		t.Errorf("stored %d, replayed %d; want 1 and %d", stored, replayed, n-1)
	}
}

func TestConsumeNonces(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	ctx := context.Background()
	n := Nonce{Value: "55555555555555555555", ExpiresAt: clock.Now().Add(time.Hour), Sum: 7}
	if err := s.ConsumeNonces(ctx, n); err != nil {
		t.Fatalf("ConsumeNonces: %v", err)
	}
	// The same refused request again: consumed already, no error.
	if err := s.ConsumeNonces(ctx, n); err != nil {
		t.Errorf("ConsumeNonces again, same request: %v", err)
	}
	forged := n
	forged.Sum = 8
	if err := s.ConsumeNonces(ctx, forged); !errors.Is(err, ErrReplayed) {
		t.Errorf("ConsumeNonces, other request: %v, want ErrReplayed", err)
	}
	// The consumed nonce cannot carry an event, before or after a restart.
	if _, err := s.Apply(ctx, ev("c1", StatusQueued, 0), forged); !errors.Is(err, ErrReplayed) {
		t.Errorf("Apply with consumed nonce: %v, want ErrReplayed", err)
	}
	s = reopen(t, s, Options{Now: clock.Now})
	if _, err := s.Apply(ctx, ev("c1", StatusQueued, 0), forged); !errors.Is(err, ErrReplayed) {
		t.Errorf("after reopen, Apply with consumed nonce: %v, want ErrReplayed", err)
	}
	if c, _ := s.LastCursor(); c != 0 {
		t.Errorf("LastCursor = %d, want 0", c)
	}
}

// A file written by the previous version (nonces in the nonces bucket)
// keeps refusing its live nonces after the upgrade, forgets them once
// expired, and PurgeNonces empties the old buckets.
func TestNonceLegacyBucketAfterUpgrade(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "v2-legacy-nonces.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dlr.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// The fixture was written at 12:00 by the previous version with nonce
	// A expiring at 12:10 and nonce B at 12:30.
	const a, b = "12345678901234567890", "09876543210987654321"
	clock := newTestClock()
	clock.Add(5 * time.Minute)
	s := mustOpenPath(t, path, Options{Now: clock.Now})
	ctx := context.Background()
	exp := clock.Now().Add(time.Hour)
	if m, _ := mustGet(t, s, "legacy-1"); m.Status != StatusQueued {
		t.Fatalf("legacy-1 status %q, want queued", m.Status)
	}
	for _, nonce := range []string{a, b} {
		// Old nonces have no sum: even a would-be retry is refused.
		if _, err := s.Apply(ctx, ev("new", StatusQueued, 0), Nonce{Value: nonce, ExpiresAt: exp, Sum: 1}); !errors.Is(err, ErrReplayed) {
			t.Errorf("legacy nonce %s at 12:05: %v, want ErrReplayed", nonce, err)
		}
	}
	if n, err := s.PurgeNonces(clock.Now(), 0); err != nil || n != 0 {
		t.Errorf("PurgeNonces at 12:05 = %d, %v; want 0", n, err)
	}

	clock.Add(10 * time.Minute) // 12:15: A expired, B live
	s = reopen(t, s, Options{Now: clock.Now})
	mustApply(t, s, ev("new-a", StatusQueued, 0), Nonce{Value: a, ExpiresAt: clock.Now().Add(time.Hour)})
	if _, err := s.Apply(ctx, ev("new-b", StatusQueued, 0), Nonce{Value: b, ExpiresAt: exp}); !errors.Is(err, ErrReplayed) {
		t.Errorf("legacy nonce B at 12:15: %v, want ErrReplayed", err)
	}
	if n, err := s.PurgeNonces(clock.Now(), 0); err != nil || n != 1 {
		t.Errorf("PurgeNonces at 12:15 = %d, %v; want 1 (A)", n, err)
	}
	// A was used again since, now in the new log: still refused after a
	// restart even though its old entry is gone.
	s = reopen(t, s, Options{Now: clock.Now})
	if _, err := s.Apply(ctx, ev("new-a2", StatusQueued, 0), Nonce{Value: a, ExpiresAt: exp}); !errors.Is(err, ErrReplayed) {
		t.Errorf("A reused after upgrade, after reopen: %v, want ErrReplayed", err)
	}

	clock.Add(20 * time.Minute) // 12:35: B expired too
	if n, err := s.PurgeNonces(clock.Now(), 0); err != nil || n != 1 {
		t.Errorf("PurgeNonces at 12:35 = %d, %v; want 1 (B)", n, err)
	}
	mustApply(t, s, ev("new-b", StatusQueued, 0), Nonce{Value: b, ExpiresAt: clock.Now().Add(time.Hour)})
	if err := s.view(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketNonces, bucketNonceExpiry} {
			if k, _ := tx.Bucket(name).Cursor().First(); k != nil {
				t.Errorf("bucket %s still holds %q", name, k)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestNonceCapacity(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now, MaxNonces: 10, NoSync: true})
	ctx := context.Background()
	for i := range 10 {
		mustApply(t, s, ev(fmt.Sprintf("m%d", i), StatusQueued, 0), Nonce{Value: fmt.Sprint(i), ExpiresAt: clock.Now().Add(time.Minute)})
	}
	if _, err := s.Apply(ctx, ev("over", StatusQueued, 0), Nonce{Value: "over", ExpiresAt: clock.Now().Add(time.Minute)}); !errors.Is(err, ErrNonceCapacity) {
		t.Errorf("11th nonce: %v, want ErrNonceCapacity", err)
	}
	// A replay is still a replay at capacity, and an event without nonces
	// is not limited.
	if _, err := s.Apply(ctx, ev("over", StatusQueued, 0), Nonce{Value: "3", ExpiresAt: clock.Now().Add(time.Minute)}); !errors.Is(err, ErrReplayed) {
		t.Errorf("replay at capacity: %v, want ErrReplayed", err)
	}
	mustApply(t, s, ev("sent-by-app", StatusQueued, 0))
	if st := s.NonceStats(); st.Entries != 10 || st.Max != 10 {
		t.Errorf("NonceStats = %+v, want 10 entries, max 10", st)
	}
	// Once they expire there is room again, without waiting for a sweep.
	clock.Add(2 * time.Minute)
	mustApply(t, s, ev("over", StatusQueued, 0), Nonce{Value: "over", ExpiresAt: clock.Now().Add(time.Minute)})
	if st := s.NonceStats(); st.Entries != 1 {
		t.Errorf("NonceStats after expiry = %+v, want 1 entry", st)
	}
}

// The index against a map, through growth, sweeps and expiry.
func TestNonceIndexModel(t *testing.T) {
	ix := newNonceIndex(1 << 30)
	model := map[string]nonceEntry{}
	rng := rand.New(rand.NewPCG(1, 2))
	now := int64(1_700_000_000) * 1e9
	for step := range 200_000 {
		now += int64(rng.IntN(50)) * 1e6 // 0–50 ms per step
		nowSec := uint32(now / 1e9)
		var nonce string
		if step > 0 && rng.IntN(4) == 0 {
			nonce = fmt.Sprint(rng.IntN(step)) // maybe used before
		} else {
			nonce = fmt.Sprint(step)
		}
		sum := uint64(rng.IntN(3))
		n := []Nonce{{Value: nonce, ExpiresAt: time.Unix(0, now+int64(rng.IntN(60_000))*1e6), Sum: sum}}
		want := nonceFresh
		if e, ok := model[nonce]; ok && e.exp > nowSec {
			want = nonceReplayed
			if e.sum != 0 && e.sum == requestSum32(sum) {
				want = nonceRetry
			}
		}
		ix.begin()
		if got := ix.check(n, now); got != want {
			t.Fatalf("step %d nonce %s: verdict %d, want %d", step, nonce, got, want)
		}
		if want == nonceFresh {
			ix.stage(n)
			model[nonce] = nonceEntry{exp: expSeconds(n[0].ExpiresAt.UnixNano()), sum: requestSum32(sum)}
		}
		ix.promote(now)
		ix.committed()
	}
	live := 0
	nowSec := uint32(now / 1e9)
	for _, e := range model {
		if e.exp > nowSec {
			live++
		}
	}
	// Sweeps drop only expired entries; expired ones wait at most a sweep.
	if ix.count < live || ix.count > len(model) {
		t.Errorf("index holds %d entries, live %d, ever %d", ix.count, live, len(model))
	}
}

// BenchmarkNonceIndexMemory reports the heap the replay-protection index
// takes for n unexpired nonces (random 20-digit strings) and the cost of a
// lookup in it.
//
//	go test -run '^$' -bench NonceIndexMemory -benchtime 1x ./storage
func BenchmarkNonceIndexMemory(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("nonces=%d", n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(uint64(n), 7))
			now := time.Now()
			exp := now.Add(24 * time.Hour).UnixNano()
			probe := make([]Nonce, 1024)
			var before, after runtimeMem
			before.read()
			ix := newNonceIndex(n)
			nowSec := uint32(now.Unix())
			batch := make([]Nonce, 1)
			for i := range n {
				batch[0] = Nonce{Value: randomNonce(rng), Sum: uint64(i) + 1}
				ix.put(nonceEntry{fp: ix.fingerprint(batch[0].Value), exp: expSeconds(exp), sum: requestSum32(batch[0].Sum)}, nowSec)
				if i < len(probe) {
					probe[i] = batch[0]
				}
			}
			ix.publishStats()
			after.read()
			if ix.count != n {
				b.Fatalf("index holds %d, want %d", ix.count, n)
			}
			heap := float64(after.heap - before.heap)
			b.ResetTimer()
			for i := range b.N {
				p := probe[i%len(probe)]
				if ix.check([]Nonce{p}, now.UnixNano()) != nonceRetry {
					b.Fatal("stored nonce not found")
				}
			}
			b.StopTimer()
			// After the loop: ResetTimer drops metrics reported before it.
			b.ReportMetric(heap/float64(n), "heapB/nonce")
			b.ReportMetric(heap/(1<<20), "heapMB")
			b.ReportMetric(float64(ix.statBytes.Load())/(1<<20), "tableMB")
			runtimeKeepAlive(ix)
		})
	}
}

// runtimeMem is the live heap after a full collection.
type runtimeMem struct{ heap uint64 }

func (m *runtimeMem) read() {
	runtime.GC()
	var st runtime.MemStats
	runtime.ReadMemStats(&st)
	m.heap = st.HeapAlloc
}

func runtimeKeepAlive(x any) { runtime.KeepAlive(x) }

// BenchmarkNonceIndexOpen measures Open rebuilding the index from a log of
// n unexpired nonces (groups of 32, as commits write them): the restart
// cost of replay protection.
//
//	go test -run '^$' -bench NonceIndexOpen -benchtime 3x ./storage
func BenchmarkNonceIndexOpen(b *testing.B) {
	n := benchListSize() * 10 // 1 M, or 10 M with PLIVO_DLR_BENCH_LARGE=1
	path := filepath.Join(b.TempDir(), "dlr.db")
	s := mustOpenPath(b, path, Options{NoSync: true})
	rng := rand.New(rand.NewPCG(3, 4))
	exp := time.Now().Add(24 * time.Hour).UnixNano()
	group := make([]stagedNonce, 32)
	for done := 0; done < n; {
		err := s.update(context.Background(), func(tx *bolt.Tx) error {
			bk := tx.Bucket(bucketNonceLog)
			for range 1000 {
				for i := range group {
					group[i] = stagedNonce{value: randomNonce(rng), exp: exp, sum: rng.Uint64()}
				}
				seq, _ := bk.NextSequence()
				k, v := appendNonceGroup(nil, seq, group)
				if err := bk.Put(k, v); err != nil {
					return err
				}
				done += len(group)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	var last NonceStats
	b.ResetTimer()
	for range b.N {
		s, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		last = s.NonceStats()
		if last.Entries < int64(n) {
			b.Fatalf("index holds %d nonces, want %d", last.Entries, n)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n), "nonces")
	b.ReportMetric(float64(last.IndexBytes)/(1<<20), "index-MiB")
}
