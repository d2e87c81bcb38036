package app

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"

	"plivo-dlr/storage"
)

// streamWriteTimeout bounds how long one chunk of a streamed response may
// wait for the client, so a client that stops reading is dropped.
const streamWriteTimeout = time.Minute

// backupTimeLayout names backup files: plivo-dlr-20250310T120000Z.db.
const backupTimeLayout = "20060102T150405Z"

// handleBackup sends a consistent snapshot of the database, itself a bbolt
// file, while ingestion goes on. The snapshot is first copied at disk speed
// to an unnamed temporary file in the data dir, which ends its read
// transaction, and then streamed from there: a slow client holds only that
// file, never the database (a trickling reader used to pin freed pages and
// stall every commit at the mmap boundary).
func (s *Server) handleBackup(c *fiber.Ctx) error {
	start := time.Now()
	f, size, err := s.store.SnapshotToTemp()
	if errors.Is(err, storage.ErrNoSpace) {
		return &httpError{Code: fiber.StatusInsufficientStorage, Message: "not enough free space in the data dir for a backup copy", Err: err}
	}
	if err != nil {
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	copied := time.Since(start)
	name := "plivo-dlr-" + s.now().UTC().Format(backupTimeLayout) + ".db"
	c.Set(fiber.HeaderContentType, "application/octet-stream")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+name+`"`)
	c.Set(fiber.HeaderCacheControl, "no-store")
	log := s.log.With("component", "backup", "remote_addr", c.IP())
	body := newPipeBody(c.Context().Conn(), func(w io.Writer) error {
		// Closing frees the temporary copy's space, however the send ends.
		defer f.Close()
		n, err := io.Copy(w, f)
		if err != nil {
			log.Warn("backup aborted", "bytes", n, "size", size, "err", err)
			return err
		}
		log.Info("backup sent", "bytes", n, "copy_duration", copied.Round(time.Millisecond), "duration", time.Since(start).Round(time.Millisecond))
		return nil
	})
	c.Context().SetBodyStream(body, int(size))
	return nil
}

// errStreamClosed ends a producer whose response stopped being read.
var errStreamClosed = errors.New("response stream closed")

// pipeBody is a streamed response body: a goroutine runs produce, writing
// into a pipe that fasthttp reads as the client accepts data, so nothing is
// buffered beyond one chunk. fasthttp closes the body when the response
// ends or its connection fails; Close stops the producer and waits for it,
// so whatever it holds (a read transaction) is released by then.
type pipeBody struct {
	pr   *io.PipeReader
	conn net.Conn
	done chan struct{}
}

func newPipeBody(conn net.Conn, produce func(w io.Writer) error) *pipeBody {
	pr, pw := io.Pipe()
	b := &pipeBody{pr: pr, conn: conn, done: make(chan struct{})}
	// The producer exits when it has written everything or a write fails
	// because Close closed the reading end.
	go func() {
		defer close(b.done)
		pw.CloseWithError(produce(pw)) // nil: the reader gets io.EOF
	}()
	return b
}

// Read hands fasthttp the next chunk. Each chunk gets streamWriteTimeout to
// reach the client: fasthttp sets no write deadline of its own here.
func (b *pipeBody) Read(p []byte) (int, error) {
	if b.conn != nil {
		_ = b.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	}
	return b.pr.Read(p)
}

// Close stops the producer and waits for it to return.
func (b *pipeBody) Close() error {
	_ = b.pr.CloseWithError(errStreamClosed)
	<-b.done
	if b.conn != nil {
		// The connection may serve further requests: drop our deadline.
		_ = b.conn.SetWriteDeadline(time.Time{})
	}
	return nil
}
