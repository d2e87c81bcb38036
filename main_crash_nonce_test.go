package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCrashKeepsAcknowledgedNonces: replay protection survives kill -9. The
// nonce index lives in memory and is rebuilt from the nonce log at start,
// so every nonce of an acknowledged callback must be in that log: after a
// SIGKILL under load (Plivo-shaped: version-1 UUIDs, random 20-digit
// nonces) and a restart, each acknowledged callback sent again with another
// body is refused (403), and sent again unchanged is a retry (200).
func TestCrashKeepsAcknowledgedNonces(t *testing.T) {
	configPath := writeConfig(t, t.TempDir())
	p := startBinary(t, configPath)

	const workers = 32
	const perWorker = 600 // bounds the loop; the kill normally comes first
	var (
		mu     sync.Mutex
		acked  []callback
		killed atomic.Bool
	)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	seed := uint64(time.Now().UnixNano())
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			var uuid string
			for i := 0; i < perWorker && ctx.Err() == nil; i++ {
				if i%3 == 0 {
					uuid = v1UUIDAt(time.Now(), rng.Uint64())
				}
				cb := signedForm(t, statusFields(uuid, []string{"queued", "sent", "delivered"}[i%3], i%3+1), plivoNonce(rng))
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.addr+"/plivo/callback", strings.NewReader(cb.body))
				req.Header.Set("Content-Type", cb.ctype)
				for k, v := range cb.headers {
					req.Header.Set(k, v)
				}
				resp, err := client.Do(req)
				if err != nil {
					if !killed.Load() && ctx.Err() == nil {
						t.Errorf("request before the kill failed: %v", err)
					}
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					acked = append(acked, cb)
					mu.Unlock()
				}
			}
		})
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 2000 {
			break
		}
	}
	killed.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil
	cancel()
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no callback was acknowledged before the kill")
	}

	p2 := startBinary(t, configPath)
	defer p2.stop(t)
	client2 := &http.Client{Timeout: 10 * time.Second}
	replayedOK, retryBad := 0, 0
	for _, cb := range acked {
		replay := cb
		replay.body = statusFields("00000000-0000-1000-8000-000000000000", "failed", 9).Encode()
		if code, body := p2.send(t, client2, replay); code != http.StatusForbidden {
			if replayedOK++; replayedOK <= 5 {
				t.Errorf("acknowledged nonce %s sent again with another body after the crash: %d %s, want 403", cb.headers["X-Plivo-Signature-V2-Nonce"], code, body)
			}
		}
		if code, body := p2.send(t, client2, cb); code != http.StatusOK {
			if retryBad++; retryBad <= 5 {
				t.Errorf("acknowledged callback sent again unchanged after the crash: %d %s, want 200", code, body)
			}
		}
	}
	t.Logf("acked %d callbacks before SIGKILL; after restart, replays not refused %d, retries not answered 200 %d", len(acked), replayedOK, retryBad)
}
