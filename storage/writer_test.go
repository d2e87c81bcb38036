package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestApplyConcurrent(t *testing.T) {
	s := mustOpenStore(t)
	const writers, perWriter = 64, 30
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				uuid := fmt.Sprintf("c-%d-%d", w, i/3)
				_, err := s.Apply(context.Background(), ev(uuid, benchStatuses[i%3], int64(i%3+1)),
					Nonce{Value: fmt.Sprintf("n-%d-%d", w, i), ExpiresAt: time.Now().Add(time.Hour)})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Apply: %v", err)
	}
	for w := range writers {
		for m := range perWriter / 3 {
			msg, evs := mustGet(t, s, fmt.Sprintf("c-%d-%d", w, m))
			if msg.Status != StatusDelivered || len(evs) != 3 {
				t.Fatalf("message c-%d-%d = %s with %d events, want delivered with 3", w, m, msg.Status, len(evs))
			}
		}
	}
	if c, _ := s.LastCursor(); c != writers*perWriter {
		t.Errorf("LastCursor = %d, want %d", c, writers*perWriter)
	}
	evs, err := s.EventsAfter(0, 10000)
	if err != nil || len(evs) != writers*perWriter {
		t.Errorf("EventsAfter = %d events, %v, want %d", len(evs), err, writers*perWriter)
	}
	// Within a message the same batch may hold several events: its event
	// index must list each exactly once.
	total, _ := s.Stats(time.Time{})
	if total.Counts[StatusDelivered] != writers*perWriter/3 || total.Total != writers*perWriter/3 {
		t.Errorf("stats = %v, want %d delivered", total.Counts, writers*perWriter/3)
	}
}

func TestCloseWithRequestsInFlight(t *testing.T) {
	s := mustOpenStore(t)
	path := s.Path()
	const n = 200
	type outcome struct {
		uuid string
		err  error
	}
	out := make(chan outcome, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			uuid := fmt.Sprintf("inflight-%d", i)
			_, err := s.Apply(context.Background(), ev(uuid, StatusQueued, 0))
			out <- outcome{uuid, err}
		}()
	}
	close(start)
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	close(out)

	s2 := mustOpenPath(t, path, Options{})
	var ok, failed int
	for o := range out {
		_, _, err := s2.GetMessage(o.uuid)
		switch {
		case o.err == nil && err != nil:
			t.Errorf("%s: Apply succeeded but GetMessage after reopen: %v", o.uuid, err)
		case o.err != nil && !errors.Is(o.err, ErrClosed):
			t.Errorf("%s: Apply error = %v, want nil or ErrClosed", o.uuid, o.err)
		case o.err != nil && err == nil:
			t.Errorf("%s: Apply failed (%v) but the message was stored", o.uuid, o.err)
		}
		if o.err == nil {
			ok++
		} else {
			failed++
		}
	}
	t.Logf("%d stored before Close, %d refused", ok, failed)

	if _, err := s.Apply(context.Background(), ev("late", StatusQueued, 0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close: error = %v, want ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close = %v, want ErrClosed", err)
	}
	if _, _, err := s.GetMessage("inflight-0"); !errors.Is(err, ErrClosed) {
		t.Errorf("GetMessage after Close = %v, want ErrClosed", err)
	}
	if err := s.PutMeta("k", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("PutMeta after Close = %v, want ErrClosed", err)
	}
}

func TestOpenLocked(t *testing.T) {
	s := mustOpenStore(t)
	start := time.Now()
	s2, err := Open(s.Path(), Options{LockTimeout: 200 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded, want ErrLocked")
	}
	if !errors.Is(err, ErrLocked) || !errors.Is(err, bolt.ErrTimeout) || !strings.Contains(err.Error(), "locked by another plivo-dlr process") {
		t.Errorf("second Open error = %v, want ErrLocked wrapping bbolt's timeout", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("second Open took %s, want about the 200ms lock timeout", elapsed)
	}
}

// TestSnapshotBackup: a snapshot written out is a bbolt file and a store.
func TestSnapshotBackup(t *testing.T) {
	s := mustOpenStore(t)
	for i := range 5 {
		mustApply(t, s, ev(fmt.Sprintf("b%d", i), StatusDelivered, 0))
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	var buf bytes.Buffer
	n, err := snap.WriteTo(&buf)
	if cerr := snap.Close(); err == nil {
		err = cerr
	}
	if err != nil || n != int64(buf.Len()) || n == 0 {
		t.Fatalf("Snapshot.WriteTo = %d, %v; buffer %d bytes", n, err, buf.Len())
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := writeFile(path, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("bolt.Open(backup): %v", err)
	}
	var count int
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error { count++; return nil })
	})
	db.Close()
	if err != nil || count != 5 {
		t.Errorf("backup messages = %d, %v, want 5", count, err)
	}
	// The backup is also a store.
	b := mustOpenPath(t, path, Options{})
	if m, _ := mustGet(t, b, "b3"); m.Status != StatusDelivered {
		t.Errorf("backup b3 status = %q, want delivered", m.Status)
	}
}

func TestPingAndMeta(t *testing.T) {
	s := mustOpenStore(t)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if v, err := s.GetMeta("last_ping"); err != nil || len(v) != 8 {
		t.Errorf("last_ping = %x, %v, want 8 bytes", v, err)
	}
	if _, err := s.GetMeta("missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetMeta(missing) error = %v, want ErrNotFound", err)
	}
	if err := s.PutMeta("session_key", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta("schema_version", []byte{9}); err == nil {
		t.Error("PutMeta(schema_version) = nil, want refusal")
	}
	s = reopen(t, s, Options{})
	if v, err := s.GetMeta("session_key"); err != nil || string(v) != "secret" {
		t.Errorf("session_key after reopen = %q, %v, want secret", v, err)
	}
	if v, err := s.GetMeta("schema_version"); err != nil || !bytes.Equal(v, u64key(schemaVersion)) {
		t.Errorf("schema_version = %x, %v, want %d", v, err, schemaVersion)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping(canceled ctx) = %v, want context.Canceled", err)
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	s := mustOpenStore(t)
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte(metaSchemaVersion), u64key(schemaVersion+1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		if s2 != nil {
			s2.Close()
		}
		t.Errorf("Open(newer schema) error = %v, want a schema version error", err)
	}
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }
