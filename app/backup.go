package app

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"
)

// streamWriteTimeout bounds how long one chunk of a streamed response may
// wait for the client. A client that stops reading would otherwise hold a
// backup's read transaction open forever, and with it every page freed since.
const streamWriteTimeout = time.Minute

// backupTimeLayout names backup files: plivo-dlr-20250310T120000Z.db.
const backupTimeLayout = "20060102T150405Z"

// handleBackup streams a consistent snapshot of the database, itself a bbolt
// file, while ingestion goes on. The snapshot is a read transaction; it ends
// when the copy ends or the client goes away.
func (s *Server) handleBackup(c *fiber.Ctx) error {
	snap, err := s.store.Snapshot()
	if err != nil {
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	size := snap.Size()
	name := "plivo-dlr-" + s.now().UTC().Format(backupTimeLayout) + ".db"
	c.Set(fiber.HeaderContentType, "application/octet-stream")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+name+`"`)
	c.Set(fiber.HeaderCacheControl, "no-store")
	log := s.log.With("component", "backup", "remote_addr", c.IP())
	start := time.Now()
	body := newPipeBody(c.Context().Conn(), func(w io.Writer) error {
		defer snap.Close()
		n, err := snap.WriteTo(w)
		if err != nil {
			log.Warn("backup aborted", "bytes", n, "size", size, "err", err)
			return err
		}
		log.Info("backup sent", "bytes", n, "duration", time.Since(start).Round(time.Millisecond))
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
