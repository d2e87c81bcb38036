package app

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	bolt "go.etcd.io/bbolt"

	"plivo-dlr/app/protocol"
)

// minimalAppend is one callback waiting for the minimal pipeline's group
// commit.
type minimalAppend struct {
	uuid string
	body []byte
	done chan error
}

// startMinimalServer runs the second baseline of BenchmarkIngest: the least
// a durable callback receiver must do. It parses the form, verifies the V2
// signature, and appends the event (the raw body) under a time-ordered
// sequence key plus a time-index entry to bbolt, fsync on, through a
// commit-when-ready group commit (one writer; each commit takes everything
// that queued while the previous one ran), and answers 200 after the
// commit. No replay protection, no message state, no stats, no metrics, no
// stream: the gap to it is what plivo-dlr's features cost.
func startMinimalServer(b *testing.B) string {
	b.Helper()
	db, err := bolt.Open(filepath.Join(b.TempDir(), "minimal.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	events, byTime := []byte("events"), []byte("by_time")
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{events, byTime} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	queue := make(chan *minimalAppend, 4096)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		batch := make([]*minimalAppend, 0, 512)
		for first := range queue {
			batch = append(batch[:0], first)
		drain:
			for len(batch) < cap(batch) {
				select {
				case r, ok := <-queue:
					if !ok {
						break drain
					}
					batch = append(batch, r)
				default:
					break drain
				}
			}
			err := db.Update(func(tx *bolt.Tx) error {
				eb, tb := tx.Bucket(events), tx.Bucket(byTime)
				now := uint64(time.Now().UnixNano())
				var tk []byte
				for _, r := range batch {
					seq, _ := eb.NextSequence()
					if err := eb.Put(binary.BigEndian.AppendUint64(nil, seq), r.body); err != nil {
						return err
					}
					tk = binary.BigEndian.AppendUint64(tk[:0], now)
					tk = append(tk, r.uuid...)
					if err := tb.Put(tk, nil); err != nil {
						return err
					}
				}
				return nil
			})
			for _, r := range batch {
				r.done <- err
			}
		}
	}()

	const signedURL = "https://hooks.example.com/plivo/callback"
	token := []byte(benchToken)
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Post("/plivo/callback", func(c *fiber.Ctx) error {
		params, err := url.ParseQuery(string(c.Body()))
		if err != nil {
			return fiber.ErrBadRequest
		}
		mac := hmac.New(sha256.New, token)
		mac.Write([]byte(signedURL))
		mac.Write([]byte(c.Get(protocol.HeaderSignatureV2Nonce)))
		want := base64.StdEncoding.AppendEncode(nil, mac.Sum(nil))
		if !hmac.Equal(want, []byte(c.Get(protocol.HeaderSignatureV2))) {
			return fiber.ErrForbidden
		}
		r := &minimalAppend{uuid: params.Get("MessageUUID"), body: append([]byte(nil), c.Body()...), done: make(chan error, 1)}
		queue <- r
		if err := <-r.done; err != nil {
			return fiber.ErrServiceUnavailable
		}
		return c.SendString("OK")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	b.Cleanup(func() {
		_ = app.Shutdown()
		close(queue)
		<-writerDone
		_ = db.Close()
	})
	return ln.Addr().String()
}
