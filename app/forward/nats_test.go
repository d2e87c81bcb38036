package forward

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plivo-dlr/internal/testsupport"
)

// startNATS runs a real NATS server with JetStream in this process, on a
// loopback port, storing in t.TempDir().
func startNATS(t testing.TB, token string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		Authorization: token, NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func TestNATSPublishesEveryEventOnceWithMsgID(t *testing.T) {
	ns := startNATS(t, "s3cret-token")
	st := openStore(t)
	storeMessages(t, st, 10, time.Time{})
	newSink := func() SinkConfig {
		n, err := NewNATS(NATSOptions{URL: ns.ClientURL(), Stream: "PLIVO_DLR", SubjectPrefix: "plivo.dlr", Token: "s3cret-token"})
		if err != nil {
			t.Fatal(err)
		}
		return SinkConfig{Name: "nats", Kind: "nats", Sink: n}
	}
	m := startManager(t, st, newSink())
	testsupport.WaitFor(t, 10*time.Second, "lag 0", func() bool {
		sts, _ := m.Status()
		return sts[0].Lag == 0
	})
	m.Stop()
	// A replay (or a second instance) publishes the same ids again: the
	// duplicate window drops them.
	m = startManager(t, st, newSink())
	if err := m.Replay(context.Background(), "nats", 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	testsupport.WaitFor(t, 10*time.Second, "lag 0 after replay", func() bool {
		sts, _ := m.Status()
		return sts[0].Lag == 0
	})
	m.Stop()

	nc, err := nats.Connect(ns.ClientURL(), nats.Token("s3cret-token"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "PLIVO_DLR")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 30 {
		t.Fatalf("stream holds %d messages, want 30", info.State.Msgs)
	}
	if info.Config.Duplicates != 10*time.Minute {
		t.Fatalf("duplicate window %s", info.Config.Duplicates)
	}
	msg, err := s.GetLastMsgForSubject(ctx, "plivo.dlr.status.delivered")
	if err != nil {
		t.Fatal(err)
	}
	if id := msg.Header.Get("Nats-Msg-Id"); len(id) != 36 || id[:4] != "evt_" {
		t.Fatalf("Nats-Msg-Id %q", id)
	}
}

func TestNATSWrongTokenRetries(t *testing.T) {
	ns := startNATS(t, "right-token")
	st := openStore(t)
	storeMessages(t, st, 1, time.Time{})
	n, _ := NewNATS(NATSOptions{URL: ns.ClientURL(), Stream: "S", SubjectPrefix: "p", Token: "wrong", Timeout: time.Second})
	m := startManager(t, st, SinkConfig{Name: "nats", Kind: "nats", Sink: n})
	defer m.Stop()
	testsupport.WaitFor(t, 10*time.Second, "failing", func() bool {
		sts, _ := m.Status()
		return sts[0].Failing && sts[0].Lag == 3
	})
}
