package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"plivo-dlr/storage"
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
		return &HTTPError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
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

// apiClient is the HTTP client of the commands that talk to a running
// server. Downloads have no overall timeout (a backup of a large store takes
// a while); a server that does not answer at all is caught by the header
// timeout.
var apiClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	ResponseHeaderTimeout: 30 * time.Second,
	TLSHandshakeTimeout:   10 * time.Second,
}}

// apiGet sends an authenticated GET to a running server and returns the
// response when it is 200; otherwise an error with the server's reason.
func apiGet(ctx context.Context, serverURL, token, path string) (*http.Response, error) {
	u := strings.TrimRight(serverURL, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return nil, connectError(strings.TrimRight(serverURL, "/")+strings.SplitN(path, "?", 2)[0], err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("server answered %d: %s%s", resp.StatusCode, e.Error, statusHint(resp.StatusCode))
		}
		return nil, fmt.Errorf("server answered %s%s", resp.Status, statusHint(resp.StatusCode))
	}
	return resp, nil
}

// BackupResult describes a backup written by BackupViaAPI.
type BackupResult struct {
	Path  string
	Bytes int64
	Info  storage.BackupInfo
}

// BackupViaAPI downloads a snapshot from a running server's GET /api/backup
// into path: it writes path.tmp, fsyncs it, checks it opens as a plivo-dlr
// store, then renames it into place, so path is either the old file or a
// complete verified backup, never a partial one.
func BackupViaAPI(ctx context.Context, serverURL, token, path string) (BackupResult, error) {
	res := BackupResult{Path: path}
	resp, err := apiGet(ctx, serverURL, token, "/api/backup")
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()

	err = storage.WriteFileAtomic(path, func(w io.Writer) error {
		var err error
		if res.Bytes, err = io.Copy(w, resp.Body); err != nil {
			return fmt.Errorf("download backup: %w", err)
		}
		if resp.ContentLength >= 0 && res.Bytes != resp.ContentLength {
			return fmt.Errorf("download backup: got %d bytes, want %d", res.Bytes, resp.ContentLength)
		}
		return nil
	}, func(tmp string) error {
		var err error
		res.Info, err = storage.VerifyBackup(tmp)
		return err
	})
	if err != nil {
		return res, err
	}
	return res, nil
}
