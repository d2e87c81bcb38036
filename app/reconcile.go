package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	plivo "github.com/plivo/plivo-go/v7"

	"plivo-dlr/app/protocol"
	"plivo-dlr/storage"
)

// ReconcileOptions tune the reconciliation loop. Zero values take defaults.
type ReconcileOptions struct {
	// Interval is the pause between two scans for stuck messages (default 1m).
	Interval time.Duration
	// MinGap is the least time between two lookups at Plivo (default 200ms,
	// so at most 5 lookups per second).
	MinGap time.Duration
	// BackoffBase and BackoffMax bound the wait after a failed lookup: it
	// doubles from BackoffBase with each consecutive failure up to
	// BackoffMax (defaults 1s and 5m).
	BackoffBase, BackoffMax time.Duration
}

func (o ReconcileOptions) withDefaults() ReconcileOptions {
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.MinGap <= 0 {
		o.MinGap = 200 * time.Millisecond
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	return o
}

// reconcileMaxAttempts is how many lookups in a row may find a message still
// not terminal before reconciliation stops asking. Plain "sent" is final for
// some destinations (US and Canadian carriers often send no delivery
// report), so asking forever would cost lookups for nothing.
const reconcileMaxAttempts = 3

// reconcilePageSize and reconcileMaxPages bound one scan.
const (
	reconcilePageSize = 500
	reconcileMaxPages = 20
)

// Reconciliation results, the label values of plivo_dlr_reconcile_total.
const (
	reconcileResolved = "resolved"  // Plivo reported a terminal status
	reconcilePending  = "pending"   // still not terminal; asked again later
	reconcileGaveUp   = "gave_up"   // still not terminal after the last attempt
	reconcileNotFound = "not_found" // Plivo does not know the message
	reconcileError    = "error"     // the lookup failed; retried next scan
)

// Payload keys of reconcile events. reconciled_at also keeps two identical
// answers from being swallowed by the store's dedupe: each lookup is a
// distinct event that moves LastSeen.
const (
	payloadReconciledAt     = "reconciled_at"
	payloadReconcileAttempt = "reconcile_attempt"
	payloadReconcileResult  = "reconcile_result"
)

// reconcileEnabled reports whether RunReconcile does anything: reconcile.enabled
// is on and Plivo credentials (or the sandbox) are configured.
func (s *Server) reconcileEnabled() bool { return s.cfg.Reconcile.Enabled && s.plivo != nil }

// RunReconcile looks up, at Plivo, messages still not terminal
// reconcile.after after their last event, until ctx ends. All its state is
// in the store (candidates by LastSeen, attempt counts in event payloads),
// so a restart carries on where it stopped. It returns at once when
// reconciliation is disabled.
func (s *Server) RunReconcile(ctx context.Context) {
	if !s.reconcileEnabled() {
		return
	}
	opts := s.reconcile.withDefaults()
	st := newReconcileState()
	log := s.log.With("component", "reconcile")
	log.Info("reconciliation started", "after", s.cfg.Reconcile.After.D().String())
	for {
		if _, err := s.reconcilePass(ctx, opts, st); err != nil && ctx.Err() == nil {
			log.Warn("reconcile scan", "err", err)
		}
		if !sleepCtx(ctx, opts.Interval) {
			return
		}
	}
}

// reconcileOnce runs one scan with the server's options and returns how many
// messages it looked up at Plivo.
func (s *Server) reconcileOnce(ctx context.Context) (int, error) {
	if !s.reconcileEnabled() {
		return 0, errors.New("reconcile: disabled or no plivo credentials")
	}
	return s.reconcilePass(ctx, s.reconcile.withDefaults(), newReconcileState())
}

// reconcileState is what a loop remembers between scans: messages it gave
// up on (their attempt count is in the store; this only saves re-reading
// their history every scan) and the current backoff.
type reconcileState struct {
	gaveUp  map[string]bool
	backoff time.Duration
}

func newReconcileState() *reconcileState { return &reconcileState{gaveUp: map[string]bool{}} }

// reconcilePass scans the stuck messages once, looking each up at a bounded
// rate and backing off after failures.
func (s *Server) reconcilePass(ctx context.Context, opts ReconcileOptions, st *reconcileState) (int, error) {
	filter := storage.ListFilter{
		Status:    storage.StatusPending,
		OlderThan: s.cfg.Reconcile.After.D(),
		Limit:     reconcilePageSize,
	}
	looked := 0
	for page := 0; page < reconcileMaxPages; page++ {
		msgs, next, err := s.store.ListMessages(filter)
		if err != nil {
			return looked, fmt.Errorf("list stuck messages: %w", err)
		}
		for _, m := range msgs {
			if st.gaveUp[m.MessageUUID] {
				continue
			}
			result, err := s.reconcileMessage(m)
			switch {
			case result == "":
				// Already gave up before (counted then); remember it.
				st.gaveUp[m.MessageUUID] = true
				continue
			case result == reconcileGaveUp:
				st.gaveUp[m.MessageUUID] = true
			}
			looked++
			s.metrics.reconciles.WithLabelValues(result).Inc()
			s.reconcileHealth.note(s.now().UTC(), err)
			wait := opts.MinGap
			if err != nil {
				st.backoff = min(max(2*st.backoff, opts.BackoffBase), opts.BackoffMax)
				wait = st.backoff
				s.log.Warn("reconcile lookup failed", "component", "reconcile",
					"message_uuid", m.MessageUUID, "retry_in", wait.String(), "err", err)
			} else {
				st.backoff = 0
			}
			if !sleepCtx(ctx, wait) {
				return looked, ctx.Err()
			}
		}
		if next == "" {
			break
		}
		filter.Cursor = next
	}
	return looked, nil
}

// reconcileMessage looks one message up at Plivo and stores the answer as a
// reconcile event. It returns the result label, or "" when the message was
// already given up on (nothing asked).
func (s *Server) reconcileMessage(m storage.Message) (string, error) {
	// Stored before callbacks had to carry UUIDs: Plivo cannot know it, and
	// the lookup would put it into an API path (see plivoClient.Get).
	if !protocol.IsMessageUUID(m.MessageUUID) {
		s.log.Warn("reconcile skipped: message UUID is not a UUID", "component", "reconcile",
			"message_uuid", strconv.Quote(clip(m.MessageUUID)))
		return "", nil
	}
	// Only the newest events matter, however long the history.
	page, err := s.store.GetMessagePage(m.MessageUUID, storage.EventPage{Limit: reconcileMaxAttempts, Desc: true})
	if err != nil {
		return reconcileError, fmt.Errorf("read history: %w", err)
	}
	// Attempts are the reconcile events since anything else was heard of the
	// message: a callback in between starts the count again.
	attempts := 0
	for _, ev := range page.Events {
		if ev.Source != storage.SourceReconcile {
			break
		}
		attempts++
	}
	if attempts >= reconcileMaxAttempts {
		return "", nil
	}
	attempt := attempts + 1

	now := s.now().UTC()
	var ev storage.Event
	pm, err := s.plivo.Get(m.MessageUUID)
	var pe *plivoError
	switch {
	case errors.As(err, &pe) && pe.Status == http.StatusNotFound:
		// Plivo has no such message (another account, or past its
		// retention). Record the attempt so it counts toward giving up.
		ev = storage.Event{
			MessageUUID: m.MessageUUID,
			Status:      m.Status,
			ErrorCode:   m.ErrorCode,
			Payload:     map[string]string{payloadReconcileResult: reconcileNotFound},
		}
	case err != nil:
		return reconcileError, err
	default:
		ev = eventFromPlivoMessage(pm)
		ev.MessageUUID = m.MessageUUID
		if ev.Status == "" {
			return reconcileError, errors.New("plivo answered without message_state")
		}
	}
	ev.Source = storage.SourceReconcile
	ev.ReceivedAt = now
	ev.Payload[payloadReconciledAt] = now.Format(time.RFC3339Nano)
	ev.Payload[payloadReconcileAttempt] = strconv.Itoa(attempt)

	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	res, err := s.store.Apply(ctx, ev)
	if err != nil {
		return reconcileError, fmt.Errorf("store reconcile event: %w", err)
	}
	switch {
	case ev.Payload[payloadReconcileResult] == reconcileNotFound:
		return reconcileNotFound, nil
	case storage.IsTerminal(res.Message.Status):
		return reconcileResolved, nil
	case attempt >= reconcileMaxAttempts:
		s.log.Info("reconcile gave up: still not terminal", "component", "reconcile",
			"message_uuid", m.MessageUUID, "status", res.Message.Status, "attempts", attempt)
		return reconcileGaveUp, nil
	}
	return reconcilePending, nil
}

// eventFromPlivoMessage turns Plivo's message resource into an event; the
// payload keeps its fields under Plivo's names.
func eventFromPlivoMessage(pm *plivo.Message) storage.Event {
	ev := storage.Event{
		Status:    protocol.NormaliseStatus(pm.MessageState),
		ErrorCode: pm.ErrorCode,
		Payload:   map[string]string{},
		Details:   storage.Details{From: pm.FromNumber, To: pm.ToNumber, Type: pm.MessageType, TotalAmount: pm.TotalAmount},
	}
	// Plivo reports "000" (or 0) for no error on successful messages.
	if !storage.IsTerminal(ev.Status) || ev.Status == storage.StatusDelivered {
		if ev.ErrorCode == "0" || ev.ErrorCode == "000" {
			ev.ErrorCode = ""
		}
	}
	ev.MessageTime, _ = protocol.ParseTime(pm.MessageTime)
	ev.SentTime, _ = protocol.ParseTime(pm.MessageSentTime)
	if storage.IsTerminal(ev.Status) {
		ev.DeliveryReportTime, _ = protocol.ParseTime(pm.MessageUpdatedTime)
	}
	for k, v := range map[string]string{
		"message_state":        pm.MessageState,
		"error_code":           pm.ErrorCode,
		"error_message":        pm.ErrorMessage,
		"from_number":          pm.FromNumber,
		"to_number":            pm.ToNumber,
		"message_type":         pm.MessageType,
		"message_direction":    pm.MessageDirection,
		"total_amount":         pm.TotalAmount,
		"message_time":         pm.MessageTime,
		"message_sent_time":    pm.MessageSentTime,
		"message_updated_time": pm.MessageUpdatedTime,
		"api_id":               pm.ApiID,
	} {
		if v != "" {
			ev.Payload[k] = v
		}
	}
	return ev
}

// sleepCtx waits d or until ctx ends, and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
