package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"plivo-dlr/storage"
)

// Retention defaults: the first sweep shortly after start (not at once, so
// a restart loop does not sweep on every start), then hourly.
const (
	retentionFirstDelay = time.Minute
	retentionInterval   = time.Hour
	// retentionPause between delete transactions leaves the writer to
	// ingestion during a large sweep.
	retentionPause = 5 * time.Millisecond
)

// Retention deletes what the [retention] settings say is too old: raw
// events after retention.events_days, message summaries (with the rest of
// their events, index entries and stats) after retention.days.
type Retention struct {
	store *storage.Store
	cfg   RetentionConfig
	log   *slog.Logger
	now   func() time.Time
	// FirstDelay and Interval schedule Run; Pause is slept between delete
	// transactions. NewRetention sets the defaults.
	FirstDelay, Interval, Pause time.Duration
}

// NewRetention returns the retention sweeper for store; now nil means time.Now.
func NewRetention(store *storage.Store, cfg RetentionConfig, logger *slog.Logger, now func() time.Time) *Retention {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Retention{
		store: store, cfg: cfg, log: logger, now: now,
		FirstDelay: retentionFirstDelay, Interval: retentionInterval, Pause: retentionPause,
	}
}

// Enabled reports whether any retention limit is set.
func (r *Retention) Enabled() bool { return r.cfg.Days > 0 || r.cfg.EventsDays > 0 }

// Policy returns the cutoffs at now; a limit of 0 days keeps that data.
func (r *Retention) Policy(now time.Time) storage.RetentionPolicy {
	p := storage.RetentionPolicy{Pause: r.Pause}
	if r.cfg.EventsDays > 0 {
		p.EventsBefore = now.AddDate(0, 0, -r.cfg.EventsDays)
	}
	if r.cfg.Days > 0 {
		p.MessagesBefore = now.AddDate(0, 0, -r.cfg.Days)
	}
	return p
}

// Sweep runs one retention pass now and logs what it deleted.
func (r *Retention) Sweep(ctx context.Context) (storage.SweepResult, error) {
	start := time.Now()
	p := r.Policy(r.now())
	res, err := r.store.Sweep(ctx, p)
	attrs := []any{
		"events", res.Events, "messages", res.Messages, "message_events", res.MessageEvents,
		"stats_hours", res.StatsHours, "transactions", res.Transactions,
		"duration", time.Since(start).Round(time.Millisecond),
	}
	switch {
	case errors.Is(err, context.Canceled):
		r.log.Info("retention sweep interrupted", attrs...)
		return res, err
	case err != nil:
		r.log.Warn("retention sweep failed", append(attrs, "err", err)...)
		return res, err
	}
	r.log.Info("retention sweep", attrs...)
	return res, nil
}

// Run sweeps after FirstDelay and then every Interval until ctx ends. It
// returns at once when retention is off.
func (r *Retention) Run(ctx context.Context) {
	if !r.Enabled() {
		r.log.Info("retention off: keeping everything")
		return
	}
	t := time.NewTimer(r.FirstDelay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, _ = r.Sweep(ctx) // logged; the next sweep tries again
		t.Reset(r.Interval)
	}
}
