package forward

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"plivo-dlr/storage"
)

// ErrUnknownSink means no sink of that name is configured.
var ErrUnknownSink = errors.New("no such sink")

// Sink delivers one event; nil means the sink confirmed it.
type Sink interface {
	Deliver(ctx context.Context, d *Delivery) error
	Close() error
}

// Delivery is one attempt at one event.
type Delivery struct {
	ID    string
	Type  string
	Event *storage.Event
	Body  []byte
}

// SinkConfig describes one sink to the Manager.
type SinkConfig struct {
	Name string
	Kind string // webhook | nats
	// Types and Statuses filter the events; empty means all.
	Types    []string
	Statuses []string
	// Concurrency bounds the messages in flight at once (default 8).
	Concurrency int
	// MaxAge is how long after received_at an event is retried before it is
	// dead-lettered (default 72h).
	MaxAge time.Duration
	Sink   Sink
}

// Options tune the Manager. Store is required.
type Options struct {
	Store  *storage.Store
	Logger *slog.Logger
	Now    func() time.Time
	// BackoffBase and BackoffMax bound the retry delays (default 1s, 5min);
	// tests shorten them.
	BackoffBase, BackoffMax time.Duration
	// Window bounds the events a sink holds in memory (default 8192, about
	// 150 bytes each): a sink however far behind reads the log in pages. An
	// event in backoff holds the cursor, so other messages run at most this
	// far ahead of it until it is delivered or dead-lettered.
	Window int
	// Metrics, if set, receive the deliveries.
	Metrics *Metrics
}

// Manager runs every sink.
type Manager struct {
	opts    Options
	runners []*runner
	byName  map[string]*runner
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

// New checks the sinks and builds the Manager; Start runs it.
func New(opts Options, sinks []SinkConfig) (*Manager, error) {
	if opts.Store == nil {
		return nil, errors.New("forward: no store")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 5 * time.Minute
	}
	if opts.Window <= 0 {
		opts.Window = 8192
	}
	m := &Manager{opts: opts, byName: map[string]*runner{}}
	for _, sc := range sinks {
		if sc.Name == "" || sc.Sink == nil {
			return nil, errors.New("forward: sink without name or implementation")
		}
		if _, dup := m.byName[sc.Name]; dup {
			return nil, fmt.Errorf("forward: sink %q configured twice", sc.Name)
		}
		if sc.Concurrency <= 0 {
			sc.Concurrency = 8
		}
		if sc.MaxAge <= 0 {
			sc.MaxAge = 72 * time.Hour
		}
		r := &runner{
			cfg:     sc,
			opts:    &m.opts,
			log:     opts.Logger.With("component", "forward", "sink", sc.Name),
			wake:    make(chan struct{}, 1),
			ctrl:    make(chan control),
			results: make(chan result, sc.Concurrency),
			queues:  map[string][]*item{},
		}
		m.runners = append(m.runners, r)
		m.byName[sc.Name] = r
		if opts.Metrics != nil {
			opts.Metrics.addSink(m, sc.Name)
		}
	}
	return m, nil
}

// Start runs every sink until Stop.
func (m *Manager) Start(ctx context.Context) error {
	ctx, m.cancel = context.WithCancel(ctx)
	for _, r := range m.runners {
		c, err := m.opts.Store.ForwardCursor(r.cfg.Name)
		if err != nil {
			m.cancel()
			return err
		}
		r.delivered, r.persisted, r.readCursor = c, c, c
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			r.run(ctx)
		}()
	}
	return nil
}

// Wake tells every sink that new events are stored. It never blocks, so the
// store's writer may call it after each commit.
func (m *Manager) Wake() {
	for _, r := range m.runners {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// Stop ends every sink, waits for the attempts in flight to end, saves each
// cursor and closes the sinks. Call it before closing the store.
func (m *Manager) Stop() {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	for _, r := range m.runners {
		if err := r.cfg.Sink.Close(); err != nil {
			r.log.Warn("close sink", "err", err)
		}
	}
}

// Names lists the configured sinks.
func (m *Manager) Names() []string {
	out := make([]string, 0, len(m.runners))
	for _, r := range m.runners {
		out = append(out, r.cfg.Name)
	}
	return out
}

// SinkStatus is one entry of GET /api/forward.
type SinkStatus struct {
	Name                 string     `json:"name"`
	Kind                 string     `json:"kind"`
	DeliveredCursor      uint64     `json:"delivered_cursor"`
	Lag                  uint64     `json:"lag"`
	OldestPendingSeconds float64    `json:"oldest_pending_seconds"`
	LastSuccess          *time.Time `json:"last_success"`
	LastError            string     `json:"last_error"`
	Dead                 uint64     `json:"dead"`
	// Failing: the latest attempts failed and none succeeded since.
	Failing      bool       `json:"failing"`
	FailingSince *time.Time `json:"failing_since"`
}

// Status reports every sink.
func (m *Manager) Status() ([]SinkStatus, error) {
	out := make([]SinkStatus, 0, len(m.runners))
	for _, r := range m.runners {
		st, err := m.status(r)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func (m *Manager) status(r *runner) (SinkStatus, error) {
	r.mu.Lock()
	st := SinkStatus{Name: r.cfg.Name, Kind: r.cfg.Kind, DeliveredCursor: r.pubDelivered, LastError: r.pubLastErr}
	if !r.pubLastSuccess.IsZero() {
		t := r.pubLastSuccess.UTC()
		st.LastSuccess = &t
	}
	if !r.pubFailingSince.IsZero() {
		t := r.pubFailingSince.UTC()
		st.Failing, st.FailingSince = true, &t
	}
	r.mu.Unlock()
	if st.DeliveredCursor == 0 {
		// Not started yet: report what is on disk.
		c, err := m.opts.Store.ForwardCursor(r.cfg.Name)
		if err != nil {
			return st, err
		}
		st.DeliveredCursor = c
	}
	last, err := m.opts.Store.LastCursor()
	if err != nil {
		return st, err
	}
	if last > st.DeliveredCursor {
		st.Lag = last - st.DeliveredCursor
		evs, err := m.opts.Store.EventsAfter(st.DeliveredCursor, 1)
		if err != nil {
			return st, err
		}
		if len(evs) > 0 {
			st.OldestPendingSeconds = max(0, m.opts.Now().Sub(evs[0].ReceivedAt).Seconds())
		}
	}
	if st.Dead, err = m.opts.Store.ForwardDeadCount(r.cfg.Name); err != nil {
		return st, err
	}
	return st, nil
}

// DeadLetter is one entry of GET /api/forward/{name}/dead.
type DeadLetter struct {
	ID          string    `json:"id"`
	Cursor      uint64    `json:"cursor"`
	MessageUUID string    `json:"message_uuid"`
	Type        string    `json:"type"`
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error"`
	DeadAt      time.Time `json:"dead_at"`
}

// Dead lists up to limit dead letters of sink, newest first, starting just
// before cursor before (0: the newest), and the cursor of the next page (0 at
// the end).
func (m *Manager) Dead(name string, before uint64, limit int) ([]DeadLetter, uint64, error) {
	if _, ok := m.byName[name]; !ok {
		return nil, 0, fmt.Errorf("%w: %q", ErrUnknownSink, name)
	}
	out := []DeadLetter{}
	err := m.opts.Store.ForwardDead(name, before, true, limit+1, func(c uint64, v []byte) error {
		var d DeadLetter
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("dead letter %d: %w", c, err)
		}
		d.Cursor = c
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	var next uint64
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].Cursor
	}
	return out, next, nil
}

// Retry re-queues every dead letter of sink, each with a fresh max_age.
func (m *Manager) Retry(ctx context.Context, name string) error {
	return m.send(ctx, name, control{retry: true})
}

// Replay delivers again every event after cursor since.
func (m *Manager) Replay(ctx context.Context, name string, since uint64) error {
	return m.send(ctx, name, control{replay: true, since: since})
}

func (m *Manager) send(ctx context.Context, name string, c control) error {
	r, ok := m.byName[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownSink, name)
	}
	select {
	case r.ctrl <- c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type control struct {
	retry, replay bool
	since         uint64
}

// item is one event a sink has still to settle. Only cursor-level facts are
// kept; the body is rebuilt from the store for each attempt, so a window of
// thousands of events costs little memory.
type item struct {
	cursor     uint64
	uuid       string
	receivedAt time.Time
	deadline   time.Time
	attempts   int
	notBefore  time.Time
	lastErr    string
	done       bool
	inflight   bool
	launchedAt time.Time
	// fromDead: re-queued from the dead letters by Retry; not in the window.
	fromDead bool
}

type result struct {
	it   *item
	id   string
	typ  string
	err  error
	gone bool // the event is no longer in the store
	dur  time.Duration
}

// runner drives one sink. Everything but the pub* fields belongs to its
// goroutine.
type runner struct {
	cfg  SinkConfig
	opts *Options
	log  *slog.Logger

	wake    chan struct{}
	ctrl    chan control
	results chan result

	window     []*item // cursor order, main lane only
	queues     map[string][]*item
	ready      readyHeap
	inflight   int
	readCursor uint64 // the last cursor read into the window
	delivered  uint64 // everything up to here is settled
	persisted  uint64
	lastSave   time.Time
	deadPut    map[uint64][]byte
	deadDel    []uint64

	// Retry of dead letters: loaded in pages after retryNext.
	retrying  bool
	retryNext uint64
	deadLane  int

	replay      *control
	stopping    bool
	sinkFails   int
	lastFailAt  time.Time
	sinkWait    time.Time
	failingFrom time.Time

	mu              sync.Mutex
	pubDelivered    uint64
	pubLastErr      string
	pubLastSuccess  time.Time
	pubFailingSince time.Time
}

const (
	saveEvery   = 250 * time.Millisecond
	deadLaneMax = 1024
	// errorLimit bounds a recorded error (it may quote a response body).
	errorLimit = 256
)

func (r *runner) run(ctx context.Context) {
	r.publish()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := r.opts.Now()
		if r.replay != nil && r.inflight == 0 {
			r.doReplay(ctx, r.replay.since)
			r.replay = nil
		}
		if r.replay == nil {
			if err := r.fill(now); err != nil {
				if ctx.Err() != nil {
					break
				}
				r.log.Warn("read event log", "err", err)
			}
			r.dispatch(ctx, now)
		}
		r.advance()
		if err := r.save(ctx, now, false); err != nil && ctx.Err() == nil {
			r.log.Warn("save forward cursor", "err", err)
		}
		r.publish()

		wait := time.Hour
		if d, ok := r.nextWake(now); ok {
			wait = max(d, time.Millisecond)
		}
		if r.persisted != r.delivered || len(r.deadPut) > 0 || len(r.deadDel) > 0 {
			wait = min(wait, saveEvery)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-r.wake:
		case res := <-r.results:
			r.settle(res)
		case c := <-r.ctrl:
			r.control(c)
		case <-timer.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	r.stopping = true
	// Let the attempts in flight end (their context is cancelled) and keep
	// what they confirmed.
	for r.inflight > 0 {
		r.settle(<-r.results)
	}
	r.advance()
	if err := r.save(context.Background(), r.opts.Now(), true); err != nil {
		r.log.Warn("save forward cursor at stop", "err", err)
	}
}

func (r *runner) publish() {
	r.mu.Lock()
	r.pubDelivered = r.delivered
	r.pubFailingSince = r.failingFrom
	r.mu.Unlock()
}

func (r *runner) control(c control) {
	// The operator asks for delivery now: do not wait out the sink's backoff.
	r.sinkWait = time.Time{}
	switch {
	case c.retry:
		r.retrying, r.retryNext = true, 0
		r.log.Info("retrying dead letters")
	case c.replay:
		r.replay = &c
		r.log.Info("replay requested", "since", c.since)
	}
}

// doReplay restarts the main lane after since (never beyond what is
// delivered: replay redelivers, it does not skip).
func (r *runner) doReplay(ctx context.Context, since uint64) {
	since = min(since, r.delivered)
	if r.deadLane > 0 {
		// Dead letters being retried are dropped with the window: scan them
		// again from the start.
		r.retrying, r.retryNext = true, 0
	}
	r.window, r.queues, r.ready, r.deadLane = nil, map[string][]*item{}, nil, 0
	r.delivered, r.readCursor = since, since
	if err := r.save(ctx, r.opts.Now(), true); err != nil {
		r.log.Warn("save replay cursor", "err", err)
	}
}

// fill reads the log after readCursor into the window, and dead letters
// being retried into the dead lane.
func (r *runner) fill(now time.Time) error {
	for len(r.window) < r.opts.Window {
		want := min(r.opts.Window-len(r.window), 512)
		evs, err := r.opts.Store.EventsAfter(r.readCursor, want)
		if err != nil {
			return err
		}
		for i := range evs {
			ev := &evs[i]
			r.readCursor = ev.Cursor
			it := &item{cursor: ev.Cursor, uuid: ev.MessageUUID, receivedAt: ev.ReceivedAt, deadline: ev.ReceivedAt.Add(r.cfg.MaxAge)}
			r.window = append(r.window, it)
			if !r.accepts(ev) {
				it.done = true
				continue
			}
			r.enqueue(it)
		}
		if len(evs) < want {
			break
		}
	}
	for r.retrying && r.deadLane < deadLaneMax {
		want := deadLaneMax - r.deadLane
		n := 0
		err := r.opts.Store.ForwardDead(r.cfg.Name, r.retryNext, false, want, func(c uint64, v []byte) error {
			n++
			r.retryNext = c
			var d deadRecord
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("dead letter %d: %w", c, err)
			}
			it := &item{cursor: c, uuid: d.MessageUUID, receivedAt: d.ReceivedAt, deadline: now.Add(r.cfg.MaxAge), fromDead: true}
			r.deadLane++
			r.enqueue(it)
			return nil
		})
		if err != nil {
			return err
		}
		if n < want {
			r.retrying = false
		}
	}
	return nil
}

func (r *runner) accepts(ev *storage.Event) bool {
	if len(r.cfg.Types) > 0 && !slices.Contains(r.cfg.Types, TypeOf(ev)) {
		return false
	}
	if len(r.cfg.Statuses) > 0 && !slices.Contains(r.cfg.Statuses, ev.Status) {
		return false
	}
	return true
}

// enqueue adds it to its message's queue in cursor order (never before an
// attempt in flight) and makes it ready when it is the head.
func (r *runner) enqueue(it *item) {
	q := r.queues[it.uuid]
	i, _ := slices.BinarySearchFunc(q, it.cursor, func(a *item, c uint64) int {
		switch {
		case a.cursor < c:
			return -1
		case a.cursor > c:
			return 1
		}
		return 0
	})
	if i == 0 && len(q) > 0 && q[0].inflight {
		i = 1
	}
	q = slices.Insert(q, i, it)
	r.queues[it.uuid] = q
	if i == 0 {
		heap.Push(&r.ready, readyEntry{it: it, at: it.notBefore})
	}
}

func (r *runner) isHead(it *item) bool {
	q := r.queues[it.uuid]
	return len(q) > 0 && q[0] == it
}

// dispatch starts attempts for ready message heads, up to concurrency, unless
// the whole sink is waiting after every attempt failed. While the sink is
// failing, heads past their max_age are dead-lettered without an attempt, so
// a long outage does not leave the feed stuck retrying old events one by one.
func (r *runner) dispatch(ctx context.Context, now time.Time) {
	if r.sinkFails > 0 {
		r.expire(now)
	}
	if now.Before(r.sinkWait) {
		return
	}
	for r.inflight < r.cfg.Concurrency && r.ready.Len() > 0 {
		e := r.ready[0]
		it := e.it
		if it.done || it.inflight || !r.isHead(it) || !e.at.Equal(it.notBefore) {
			heap.Pop(&r.ready) // stale entry
			continue
		}
		if now.Before(it.notBefore) {
			return
		}
		heap.Pop(&r.ready)
		it.inflight, it.launchedAt = true, now
		r.inflight++
		go r.attempt(ctx, it)
	}
}

// expire dead-letters the heads whose max_age has passed, oldest first,
// looking at the front of the window and the dead lane.
func (r *runner) expire(now time.Time) {
	for _, it := range r.window {
		if it.done {
			continue
		}
		if !now.After(it.deadline) {
			break // receipt times follow cursor order closely
		}
		if it.inflight || !r.isHead(it) {
			continue
		}
		r.kill(it, now)
	}
}

func (r *runner) attempt(ctx context.Context, it *item) {
	res := result{it: it}
	start := time.Now()
	ev, msg, err := messageAt(r.opts.Store, it.uuid, it.cursor)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		res.gone = true
	case err != nil:
		res.err = fmt.Errorf("read event: %w", err)
	default:
		res.id, res.typ = EventID(&ev), TypeOf(&ev)
		body, berr := BuildPayload(&ev, &msg)
		if berr != nil {
			res.err = berr
			break
		}
		res.err = r.cfg.Sink.Deliver(ctx, &Delivery{ID: res.id, Type: res.typ, Event: &ev, Body: body})
	}
	res.dur = time.Since(start)
	r.results <- res
}

// settle records the outcome of one attempt.
func (r *runner) settle(res result) {
	it := res.it
	it.inflight = false
	r.inflight--
	now := r.opts.Now()
	if res.gone {
		r.log.Warn("event gone from the store (retention) before delivery", "cursor", it.cursor)
		r.finish(it)
		return
	}
	if m := r.opts.Metrics; m != nil && !res.gone {
		m.attempt(r.cfg.Name, res.dur)
	}
	if res.err == nil {
		r.sinkFails, r.sinkWait, r.failingFrom = 0, time.Time{}, time.Time{}
		r.mu.Lock()
		r.pubLastSuccess = now
		r.mu.Unlock()
		if m := r.opts.Metrics; m != nil {
			m.result(r.cfg.Name, resultDelivered)
		}
		if it.fromDead {
			r.deadDel = append(r.deadDel, it.cursor)
		}
		r.finish(it)
		return
	}
	if r.stopping {
		// Cancelled by Stop: not the sink's fault; delivered after restart.
		return
	}
	it.attempts++
	it.lastErr = truncate(res.err.Error(), errorLimit)
	r.mu.Lock()
	r.pubLastErr = it.lastErr
	r.mu.Unlock()
	// Failures of attempts started before the previous failure are the same
	// round (the sink is down for all of them): count rounds, not attempts.
	if !it.launchedAt.Before(r.lastFailAt) || r.sinkFails == 0 {
		r.sinkFails++
		r.lastFailAt = now
		if r.failingFrom.IsZero() {
			r.failingFrom = now
		}
		if r.sinkFails >= 2 {
			r.sinkWait = now.Add(r.backoff(r.sinkFails - 1))
		}
	}
	if !now.Before(it.deadline) {
		r.kill(it, now)
		return
	}
	if m := r.opts.Metrics; m != nil {
		m.result(r.cfg.Name, resultRetried)
	}
	r.log.Debug("delivery failed; will retry", "cursor", it.cursor, "attempts", it.attempts, "err", it.lastErr)
	it.notBefore = now.Add(r.backoff(it.attempts))
	if it.notBefore.After(it.deadline) {
		it.notBefore = it.deadline
	}
	r.requeue(it, now)
}

func (r *runner) requeue(it *item, _ time.Time) {
	if r.isHead(it) {
		heap.Push(&r.ready, readyEntry{it: it, at: it.notBefore})
	}
}

// deadRecord is what the store keeps for a dead letter.
type deadRecord struct {
	ID          string    `json:"id"`
	MessageUUID string    `json:"message_uuid"`
	Type        string    `json:"type"`
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error"`
	DeadAt      time.Time `json:"dead_at"`
	ReceivedAt  time.Time `json:"received_at"`
}

// kill dead-letters it: the record is saved with the next cursor step, in
// the same transaction, so the cursor never passes an unrecorded event.
func (r *runner) kill(it *item, now time.Time) {
	rec := deadRecord{MessageUUID: it.uuid, Attempts: it.attempts, LastError: it.lastErr, DeadAt: now.UTC(), ReceivedAt: it.receivedAt}
	if ev, _, err := messageAt(r.opts.Store, it.uuid, it.cursor); err == nil {
		rec.ID, rec.Type = EventID(&ev), TypeOf(&ev)
	}
	if rec.LastError == "" {
		rec.LastError = "max_age passed while the sink was failing"
	}
	b, err := json.Marshal(rec)
	if err == nil {
		if r.deadPut == nil {
			r.deadPut = map[uint64][]byte{}
		}
		r.deadPut[it.cursor] = b
	}
	r.log.Warn("event dead-lettered", "cursor", it.cursor, "message_uuid", it.uuid, "attempts", it.attempts, "err", it.lastErr)
	if m := r.opts.Metrics; m != nil {
		m.result(r.cfg.Name, resultDead)
	}
	r.finish(it)
}

// finish settles it and makes the next event of its message ready.
func (r *runner) finish(it *item) {
	it.done = true
	if it.fromDead {
		r.deadLane--
	}
	q := r.queues[it.uuid]
	if i := slices.Index(q, it); i >= 0 {
		q = slices.Delete(q, i, i+1)
	}
	if len(q) == 0 {
		delete(r.queues, it.uuid)
		return
	}
	r.queues[it.uuid] = q
	if !q[0].inflight {
		heap.Push(&r.ready, readyEntry{it: q[0], at: q[0].notBefore})
	}
}

// advance moves the delivered-through cursor past the settled front of the
// window.
func (r *runner) advance() {
	i := 0
	for i < len(r.window) && r.window[i].done {
		r.delivered = r.window[i].cursor
		i++
	}
	if i > 0 {
		r.window = slices.Delete(r.window, 0, i)
	}
	if len(r.window) == 0 && r.readCursor > r.delivered {
		r.delivered = r.readCursor
	}
}

// save persists the cursor and dead-letter changes, at most every saveEvery
// unless force: a crash in between only redelivers.
func (r *runner) save(ctx context.Context, now time.Time, force bool) error {
	if r.persisted == r.delivered && len(r.deadPut) == 0 && len(r.deadDel) == 0 {
		return nil
	}
	if !force && now.Sub(r.lastSave) < saveEvery {
		return nil
	}
	u := storage.ForwardUpdate{SetCursor: r.persisted != r.delivered, Cursor: r.delivered, Put: r.deadPut, Delete: r.deadDel}
	if err := r.opts.Store.ForwardCommit(ctx, r.cfg.Name, u); err != nil {
		return err
	}
	r.persisted, r.lastSave = r.delivered, now
	r.deadPut, r.deadDel = nil, nil
	return nil
}

// nextWake is how long until a ready head or the sink's wait is due.
func (r *runner) nextWake(now time.Time) (time.Duration, bool) {
	if r.replay != nil || r.ready.Len() == 0 || r.inflight >= r.cfg.Concurrency {
		if r.sinkFails > 0 && len(r.window) > 0 {
			return time.Second, true // expire old heads while failing
		}
		return 0, false
	}
	at := r.ready[0].at
	if r.sinkWait.After(at) {
		at = r.sinkWait
	}
	d := at.Sub(now)
	if r.sinkFails > 0 {
		d = min(d, time.Second)
	}
	return d, true
}

// backoff is the delay before attempt n+1: base·2^(n-1), capped, with
// jitter drawn from its upper half so retries of many messages spread out.
func (r *runner) backoff(n int) time.Duration {
	d := r.opts.BackoffBase
	for i := 1; i < n && d < r.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, r.opts.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

type readyEntry struct {
	it *item
	at time.Time
}

// readyHeap orders message heads by due time, then cursor.
type readyHeap []readyEntry

func (h readyHeap) Len() int { return len(h) }
func (h readyHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].it.cursor < h[j].it.cursor
}
func (h readyHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *readyHeap) Push(x any)   { *h = append(*h, x.(readyEntry)) }
func (h *readyHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
