package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A caller that gives up while the writer is stalled was answered "not
// stored" (the app's 503): its event and nonce must then never be written,
// or the caller's retry — or, before the fix, the next request whose nonce
// happened to share its buffer — would be refused as a replay.
func TestApplyAbandonedDuringStallIsNotWritten(t *testing.T) {
	s := mustOpenStore(t)
	exp := time.Now().Add(time.Hour)

	// Stall the writer inside a transaction, as a frozen filesystem does.
	release := make(chan struct{})
	stalled := make(chan struct{})
	go func() {
		_ = s.update(context.Background(), func(*bolt.Tx) error {
			close(stalled)
			<-release
			return nil
		})
	}()
	<-stalled

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := s.Apply(ctx, ev("abandoned", StatusQueued, 0), Nonce{Value: "n-abandoned", ExpiresAt: exp})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply during stall: error = %v, want deadline exceeded", err)
	}
	close(release)

	// The same callback retried after the stall is stored, not a replay.
	if res := mustApply(t, s, ev("abandoned", StatusQueued, 0), Nonce{Value: "n-abandoned", ExpiresAt: exp}); res.Duplicate {
		t.Errorf("retry after an abandoned Apply: Duplicate, want a fresh store")
	}
	_, evs := mustGet(t, s, "abandoned")
	if len(evs) != 1 {
		t.Errorf("events stored = %d, want 1 (the abandoned attempt must not be written)", len(evs))
	}
}

// A caller whose request the writer already took waits for the commit even
// after its context ends, so it never reports "not stored" for a write that
// lands.
func TestApplyTakenWaitsForCommit(t *testing.T) {
	commitStarted := make(chan struct{}, 1)
	release := make(chan struct{})
	var s *Store
	s = mustOpenStore(t, Options{OnCommit: func(time.Duration, int) {
		select {
		case commitStarted <- struct{}{}:
			<-release // hold the writer after the first commit
		default:
		}
	}})
	exp := time.Now().Add(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Apply(ctx, ev("taken", StatusQueued, 0), Nonce{Value: "n-taken", ExpiresAt: exp})
		done <- err
	}()
	<-commitStarted // committed and fsync'd, writer held before answering
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Apply returned %v before the writer answered; want it to wait for the commit", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Apply of a committed event: %v, want success", err)
	}
	_, evs := mustGet(t, s, "taken")
	if len(evs) != 1 {
		t.Errorf("events stored = %d, want 1", len(evs))
	}
}

// A zero-length database file (a botched copy) is refused, not silently
// replaced by an empty database.
func TestOpenRefusesEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dlr.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open of a zero-length file succeeded; want ErrEmptyFile")
	}
	if !errors.Is(err, ErrEmptyFile) {
		t.Errorf("error = %v, want ErrEmptyFile", err)
	}
}
