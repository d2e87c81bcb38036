package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plivo-dlr/app/forward"
	"plivo-dlr/storage"
)

// TestTwoInstancesOneJetStream runs two real binaries forwarding to one
// JetStream (a real NATS server in this process): callbacks split between
// them, some sent to both, one instance killed with SIGKILL and restarted.
// The stream must hold every stored event exactly once.
func TestTwoInstancesOneJetStream(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		Authorization: "nats-test-token", NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	defer ns.Shutdown()

	var dirs, cfgs [2]string
	var procs [2]*proc
	for i := range procs {
		dirs[i] = t.TempDir()
		cfgs[i] = writeConfig(t, dirs[i])
		f, err := os.OpenFile(cfgs[i], os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "\n[forward.nats]\nurl = %q\ntoken = \"nats-test-token\"\n", ns.ClientURL())
		f.Close()
		procs[i] = startBinary(t, cfgs[i])
	}

	client := &http.Client{Timeout: 5 * time.Second}
	var nonce atomic.Uint64
	acked := 0
	const messages = 150
	const burstMessages = 80
	for i := 0; i < messages; i++ {
		if i == messages/2 {
			// A burst to instance 0, then kill it at once (its forwarding
			// likely mid-way) and start it again.
			var wg sync.WaitGroup
			var burst atomic.Int64
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := 0; k < 10; k++ {
						u := uuid.Must(uuid.NewUUID()).String()
						for seq, status := range []string{"queued", "sent", "delivered"} {
							cb := signedForm(t, statusFields(u, status, seq+1), fmt.Sprintf("%020d", nonce.Add(1)))
							if code, _ := procs[0].send(t, client, cb); code == 200 {
								burst.Add(1)
							}
						}
					}
				}()
			}
			wg.Wait()
			acked += int(burst.Load())
			_ = procs[0].cmd.Process.Kill()
			<-procs[0].done
			procs[0].done <- nil
			procs[0] = startBinary(t, cfgs[0])
		}
		u := uuid.Must(uuid.NewUUID()).String()
		for seq, status := range []string{"queued", "sent", "delivered"} {
			cb := signedForm(t, statusFields(u, status, seq+1), fmt.Sprintf("%020d", nonce.Add(1)))
			// A third of the messages go to both: the same callback, stored
			// by each instance, published by each.
			targets := []*proc{procs[i%2]}
			if i%3 == 0 {
				targets = procs[:]
			}
			for _, p := range targets {
				if code, body := p.send(t, client, cb); code != 200 {
					t.Fatalf("callback: %d %s", code, body)
				}
				acked++
			}
		}
	}
	for i, p := range procs {
		if !waitForDeadline(30*time.Second, func() bool { return sinkStatus(t, p, "nats").Lag == 0 }) {
			t.Fatalf("instance %d: %+v", i, sinkStatus(t, p, "nats"))
		}
		p.stop(t)
	}

	// Every event either instance stored, by id.
	want := map[string]bool{}
	stored := 0
	for _, dir := range dirs {
		st, err := storage.Open(filepath.Join(dir, "plivo-dlr.db"), storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		evs, err := st.EventsAfter(0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		for i := range evs {
			want[forward.EventID(&evs[i])] = true
		}
		stored += len(evs)
		st.Close()
	}
	if len(want) != (messages+burstMessages)*3 {
		t.Fatalf("%d distinct events stored, want %d", len(want), (messages+burstMessages)*3)
	}

	nc, err := nats.Connect(ns.ClientURL(), nats.Token("nats-test-token"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "PLIVO_DLR")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		got[m.Header.Get("Nats-Msg-Id")]++
	}
	for id, n := range got {
		if n != 1 || !want[id] {
			t.Fatalf("stream holds %s %d times (stored: %v)", id, n, want[id])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("stream holds %d events, %d were stored", len(got), len(want))
	}
	t.Logf("%d callbacks acked by two instances (%d stored events, %d distinct); the stream holds %d, each once",
		acked, stored, len(want), info.State.Msgs)
}
