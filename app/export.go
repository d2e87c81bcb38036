package app

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"plivo-dlr/storage"
)

// csvHeader is the header row of a CSV export: the message JSON fields, in
// the order of DESIGN.md.
var csvHeader = []string{
	"message_uuid", "status", "error_code", "from", "to", "type", "units", "total_rate", "total_amount",
	"mcc", "mnc", "parent_message_uuid", "part_info", "message_time", "queued_time", "sent_time",
	"delivery_report_time", "first_seen", "last_seen", "event_count", "text", "media_urls",
	"direction", "intent",
}

// csvRecord is one message as a CSV row matching csvHeader: times in
// RFC 3339 UTC (empty when unknown), media URLs joined by a space.
func csvRecord(rec []string, m *storage.Message) []string {
	t := func(p *time.Time) string {
		if p == nil {
			return ""
		}
		return p.UTC().Format(time.RFC3339Nano)
	}
	return append(rec[:0],
		m.MessageUUID, m.Status, m.ErrorCode, m.From, m.To, m.Type, strconv.Itoa(m.Units), m.TotalRate, m.TotalAmount,
		m.MCC, m.MNC, m.ParentMessageUUID, m.PartInfo, t(m.MessageTime), t(m.QueuedTime), t(m.SentTime),
		t(m.DeliveryReportTime), t(&m.FirstSeen), t(&m.LastSeen), strconv.Itoa(m.EventCount), m.Text,
		strings.Join(m.MediaURLs, " "), m.Direction.String(), m.Intent,
	)
}

// handleExport streams the matching messages, oldest first, one per line:
// ?format=ndjson (default; the message JSON of GET /api/messages) or csv.
// Filters: since, until (FirstSeen), status. The store is read in short
// chunks, so memory stays flat and no transaction stays open.
func (s *Server) handleExport(c *fiber.Ctx) error {
	bad := func(key, problem string) error {
		return &httpError{Code: fiber.StatusBadRequest, Message: key + ": " + problem}
	}
	format := c.Query("format", "ndjson")
	var ctype string
	switch format {
	case "ndjson":
		ctype = "application/x-ndjson"
	case "csv":
		ctype = "text/csv; charset=utf-8"
	default:
		return bad("format", "must be csv or ndjson")
	}
	var f storage.ExportFilter
	var err error
	if v := c.Query("since"); v != "" {
		if f.Since, err = parseTimeParam(v); err != nil {
			return bad("since", err.Error())
		}
	}
	if v := c.Query("until"); v != "" {
		if f.Until, err = parseTimeParam(v); err != nil {
			return bad("until", err.Error())
		}
	}
	// Copy: Fiber reuses the buffer behind Query after the handler returns,
	// and the producer runs after that.
	f.Status = strings.Clone(strings.TrimSpace(c.Query("status")))
	format = strings.Clone(format)

	name := "plivo-dlr-messages-" + s.now().UTC().Format(backupTimeLayout) + "." + format
	c.Set(fiber.HeaderContentType, ctype)
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+name+`"`)
	c.Set(fiber.HeaderCacheControl, "no-store")
	log := s.log.With("component", "export", "remote_addr", c.IP(), "format", format)
	start := time.Now()
	body := newPipeBody(c.Context().Conn(), func(w io.Writer) error {
		n, err := writeExport(w, format, f, s.store)
		if err != nil {
			log.Warn("export aborted", "messages", n, "err", err)
			return err
		}
		log.Info("export sent", "messages", n, "duration", time.Since(start).Round(time.Millisecond))
		return nil
	})
	// Size unknown: chunked transfer encoding.
	c.Context().SetBodyStream(body, -1)
	return nil
}

// writeExport writes the messages matching f to w in format and returns how
// many it wrote.
func writeExport(w io.Writer, format string, f storage.ExportFilter, store *storage.Store) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	var write func(m storage.Message) error
	flush := bw.Flush
	switch format {
	case "csv":
		cw := csv.NewWriter(bw)
		if err := cw.Write(csvHeader); err != nil {
			return 0, fmt.Errorf("write csv: %w", err)
		}
		var rec []string
		write = func(m storage.Message) error {
			rec = csvRecord(rec, &m)
			if err := cw.Write(rec); err != nil {
				return fmt.Errorf("write csv: %w", err)
			}
			n++
			return nil
		}
		flush = func() error {
			cw.Flush()
			if err := cw.Error(); err != nil {
				return err
			}
			return bw.Flush()
		}
	default:
		enc := json.NewEncoder(bw)
		write = func(m storage.Message) error {
			if err := enc.Encode(&m); err != nil {
				return fmt.Errorf("write ndjson: %w", err)
			}
			n++
			return nil
		}
	}
	if err := store.ExportMessages(f, write); err != nil {
		return n, err
	}
	if err := flush(); err != nil {
		return n, fmt.Errorf("write export: %w", err)
	}
	return n, nil
}
