// Package sandbox is a simulated Plivo: an in-process fake of Plivo's
// message API on a loopback port that accepts messages like Plivo (basic
// auth, validation, UUIDs), advances each through queued, sent and a final
// status with a configurable failure share and network chaos, and posts
// delivery callbacks signed exactly like Plivo's (V2 and V3), retried like
// Plivo's. serve --sandbox and the tests run the whole flow with it and no
// Plivo account.
package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"plivo-dlr/app/protocol"
)

// Options tune the simulated Plivo. Zero values take defaults.
type Options struct {
	// FailureShare is the fraction of messages that end undelivered or
	// failed. It is exact over each block of 100 messages (a shuffled
	// allocation, not an independent draw per message), as long as the
	// same unreachable numbers are not sent to again and again: a number
	// whose first message failed may be unreachable (or the pair opted
	// out), and then every message to it fails with the same code (see
	// codeLocked). Other failures get a transient code. With FailureShare 0
	// every message from a valid source is delivered.
	FailureShare float64
	// Step is the simulated network's time unit: "queued" is posted at once,
	// "sent" about one Step later, the final status one to two Steps after
	// that. Default 1s; tests use milliseconds.
	Step time.Duration
	// Chaos is the probability that a message's callbacks arrive out of
	// order or one of them twice, as on the real network. Default 0.05;
	// negative means never.
	Chaos float64
	// Seed makes the draws repeatable; 0 picks a random seed.
	Seed uint64
	// NoCallbacks accepts messages and advances their state (visible to
	// message lookups) without posting any callback: lost callbacks.
	NoCallbacks bool
	// Logger receives the sandbox's own logs; nil discards them.
	Logger *slog.Logger
	// ReplyShare is the share of delivered messages whose recipient replies
	// (an inbound message to the callback URL; see replies.go). Default
	// 0.04; negative means never.
	ReplyShare float64
}

// allocBlock is the allocation block over which FailureShare is exact.
const allocBlock = 100

// maxMessages bounds the messages the sandbox remembers for lookups.
const maxMessages = 100_000

// Sandbox is an in-process fake of Plivo's message API, served over real
// HTTP on a loopback port, which posts signed delivery callbacks like Plivo.
// It lets the whole flow run with no Plivo account.
type Sandbox struct {
	opts      Options
	log       *slog.Logger
	authID    string
	authToken string
	ln        net.Listener
	srv       *http.Server
	client    *http.Client

	ctx    context.Context
	cancel context.CancelFunc
	// wg counts the goroutines simulating messages; Close waits for them.
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	// seed keys the world's hashes (networks, unreachable numbers).
	seed uint64
	// dstFates and pairFates remember each number's and each source and
	// destination pair's fate: its permanent error code, or "" (live).
	dstFates, pairFates map[string]string

	mu       sync.Mutex
	rng      *mrand.Rand
	msgs     map[string]*message
	order    []string // message UUIDs, oldest first, for eviction
	outcomes []string // current allocation block
	next     int
	replies  replyState
}

// message is the simulated state of one message.
type message struct {
	UUID, From, To, Type  string
	Status, ErrorCode     string
	MessageTime, SentTime time.Time
	UpdatedTime           time.Time
	callbackURL, cbMethod string
	// outcome is the final status: delivered, undelivered or failed;
	// code is its error code ("" when delivered).
	outcome, code          string
	sequence               int
	chaosSwap, chaosRepeat bool
}

// Start generates credentials and starts the fake API on 127.0.0.1.
func Start(opts Options) (*Sandbox, error) {
	if opts.Step <= 0 {
		opts.Step = time.Second
	}
	if opts.Chaos == 0 {
		opts.Chaos = 0.05
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	sb := &Sandbox{
		opts:      opts,
		log:       opts.Logger.With("component", "sandbox"),
		authID:    "MA" + randomAlnum(18),
		authToken: randomAlnum(40),
		ln:        ln,
		client:    &http.Client{Timeout: 10 * time.Second},
		rng:       mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		seed:      seed,
		msgs:      map[string]*message{},
	}
	sb.ctx, sb.cancel = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/Account/{auth_id}/Message/{$}", sb.handleCreate)
	mux.HandleFunc("GET /v1/Account/{auth_id}/Message/{uuid}/{$}", sb.handleGet)
	sb.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		// Serve returns when Close closes the listener.
		if err := sb.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			sb.log.Error("sandbox api stopped", "err", err)
		}
	}()
	return sb, nil
}

// URL is the base URL of the fake API, for plivo.api_url.
func (sb *Sandbox) URL() string { return "http://" + sb.ln.Addr().String() + "/" }

// AuthID is the generated Plivo auth id.
func (sb *Sandbox) AuthID() string { return sb.authID }

// AuthToken is the generated Plivo auth token; callbacks are signed with it.
func (sb *Sandbox) AuthToken() string { return sb.authToken }

// SourceNumber is the sender used when none is configured: a fictional US
// number (555-01xx).
const SourceNumber = "+14155550100"

// Close stops the API and every pending callback, and waits for them. It
// may be called more than once.
func (sb *Sandbox) Close() error {
	sb.closeOnce.Do(func() {
		sb.cancel()
		if err := sb.srv.Close(); err != nil {
			sb.closeErr = fmt.Errorf("close sandbox: %w", err)
		}
		sb.wg.Wait()
		// Idle keep-alive connections (some never used: Go's transport
		// dials spares) would hold up the server's graceful shutdown.
		sb.client.CloseIdleConnections()
	})
	return sb.closeErr
}

// plivoAPIError answers like Plivo: {"api_id": ..., "error": reason}.
func plivoAPIError(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"api_id": uuid.NewString(), "error": reason})
}

// authorized checks basic auth and the account in the path like Plivo.
func (sb *Sandbox) authorized(w http.ResponseWriter, r *http.Request) bool {
	id, token, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(id), []byte(sb.authID)) != 1 ||
		subtle.ConstantTimeCompare([]byte(token), []byte(sb.authToken)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="plivo-dlr sandbox"`)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, "Could not verify your access level for that URL.\nYou have to login with proper credentials")
		return false
	}
	if r.PathValue("auth_id") != sb.authID {
		plivoAPIError(w, http.StatusNotFound, "account not found")
		return false
	}
	return true
}

// createBody is Plivo's message create body (plivo-go sends JSON).
type createBody struct {
	Src       string   `json:"src"`
	Dst       string   `json:"dst"`
	Text      string   `json:"text"`
	Type      string   `json:"type"`
	URL       string   `json:"url"`
	Method    string   `json:"method"`
	MediaURLs []string `json:"media_urls"`
}

func (sb *Sandbox) handleCreate(w http.ResponseWriter, r *http.Request) {
	if !sb.authorized(w, r) {
		return
	}
	var req createBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		plivoAPIError(w, http.StatusBadRequest, "invalid JSON body")
		return
	}
	if req.Type == "" {
		req.Type = "sms"
	}
	switch {
	case req.Src == "":
		plivoAPIError(w, http.StatusBadRequest, "src parameter not present")
		return
	case req.Dst == "":
		plivoAPIError(w, http.StatusBadRequest, "dst parameter not present")
		return
	case req.Type != "sms" && req.Type != "mms":
		plivoAPIError(w, http.StatusBadRequest, "invalid type: "+req.Type)
		return
	case req.Type == "sms" && req.Text == "":
		plivoAPIError(w, http.StatusBadRequest, "text parameter not present")
		return
	case req.Type == "mms" && len(req.MediaURLs) == 0:
		plivoAPIError(w, http.StatusBadRequest, "media_urls required for mms")
		return
	}
	if req.Method == "" {
		req.Method = http.MethodPost
	}
	dsts := strings.Split(req.Dst, "<")
	now := time.Now().UTC()
	uuids := make([]string, 0, len(dsts))
	sb.mu.Lock()
	for _, dst := range dsts {
		m := &message{
			UUID: newMessageUUID(), From: strings.TrimPrefix(req.Src, "+"), To: strings.TrimPrefix(dst, "+"), Type: req.Type,
			Status: "queued", MessageTime: now, UpdatedTime: now,
			callbackURL: req.URL, cbMethod: strings.ToUpper(req.Method),
		}
		m.code = sb.codeLocked(req.Src, dst)
		m.outcome = "delivered"
		if m.code != "" {
			m.outcome = codeStatus[m.code]
		}
		if sb.rng.Float64() < sb.opts.Chaos {
			if sb.rng.IntN(2) == 0 {
				m.chaosSwap = true
			} else {
				m.chaosRepeat = true
			}
		}
		sb.rememberLocked(m)
		uuids = append(uuids, m.UUID)
		sb.wg.Add(1)
		go sb.simulate(m)
	}
	sb.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"api_id": uuid.NewString(), "message": "message(s) queued", "message_uuid": uuids,
	})
}

// Allocation slots: a message is delivered or fails.
const (
	outcomeDelivered = "delivered"
	outcomeFail      = "fail"
)

// nextOutcomeLocked takes the next slot from the shuffled block, refilling
// it every allocBlock messages. A message that must fail (its numbers
// doomed it) takes a failure slot from later in the block in place of a
// delivered one, so the block's share holds; when none is left it fails
// all the same.
func (sb *Sandbox) nextOutcomeLocked(mustFail bool) string {
	if sb.next >= len(sb.outcomes) {
		fail := int(sb.opts.FailureShare*allocBlock + 0.5)
		sb.outcomes = make([]string, allocBlock)
		for i := range sb.outcomes {
			sb.outcomes[i] = outcomeDelivered
			if i < fail {
				sb.outcomes[i] = outcomeFail
			}
		}
		sb.rng.Shuffle(len(sb.outcomes), func(i, j int) {
			sb.outcomes[i], sb.outcomes[j] = sb.outcomes[j], sb.outcomes[i]
		})
		sb.next = 0
	}
	if mustFail && sb.outcomes[sb.next] != outcomeFail {
		for j := sb.next + 1; j < len(sb.outcomes); j++ {
			if sb.outcomes[j] == outcomeFail {
				sb.outcomes[sb.next], sb.outcomes[j] = sb.outcomes[j], sb.outcomes[sb.next]
				break
			}
		}
	}
	o := sb.outcomes[sb.next]
	sb.next++
	return o
}

func (sb *Sandbox) rememberLocked(m *message) {
	if len(sb.order) >= maxMessages {
		delete(sb.msgs, sb.order[0])
		sb.order = sb.order[1:]
	}
	sb.msgs[m.UUID] = m
	sb.order = append(sb.order, m.UUID)
}

// simulate moves one message through its statuses, posting a callback at
// each step. It exits when the message is final or the sandbox closes.
func (sb *Sandbox) simulate(m *message) {
	defer sb.wg.Done()
	step := sb.opts.Step
	sb.mu.Lock()
	jitter := time.Duration(sb.rng.Int64N(int64(step)))
	code := m.code
	sb.mu.Unlock()

	type stage struct {
		wait   time.Duration
		status string
	}
	// "queued" waits a moment so the create answer, which Plivo also sends
	// first, usually reaches the sender before the callback does.
	stages := []stage{{step / 20, "queued"}}
	if m.outcome == "failed" {
		// Plivo never sends a message it failed to dispatch.
		stages = append(stages, stage{step, "failed"})
	} else {
		stages = append(stages, stage{step, "sent"}, stage{step + jitter, m.outcome})
	}
	var pending []url.Values
	for _, st := range stages {
		if !sb.sleep(st.wait) {
			return
		}
		params := sb.advance(m, st.status, code)
		pending = append(pending, params)
		if m.chaosSwap && st.status == "sent" {
			continue // posted after the final status: out of order
		}
		sb.post(m, params)
		if m.chaosRepeat && len(pending) == 2 {
			sb.post(m, params) // a duplicate, as after a lost acknowledgement
		}
	}
	if m.chaosSwap && len(pending) == 3 {
		sb.post(m, pending[1])
	}
	if m.outcome == "delivered" {
		sb.maybeReply(m)
	}
}

// advance sets m's status and returns the callback parameters for it.
func (sb *Sandbox) advance(m *message, status, code string) url.Values {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	now := time.Now().UTC()
	m.Status, m.UpdatedTime = status, now
	m.sequence++
	if status == "sent" {
		m.SentTime = now
	}
	if status == "failed" || status == "undelivered" {
		m.ErrorCode = code
	}
	p := url.Values{}
	set := func(k, v string) { p.Set(k, v) }
	set("MessageUUID", m.UUID)
	set("ParentMessageUUID", m.UUID)
	set("From", m.From)
	set("To", m.To)
	set("Type", m.Type)
	set("Status", status)
	set("ErrorCode", m.ErrorCode)
	set("Units", "1")
	rate, net := m.charge(), sb.networkOf(m.To)
	if !m.reachedNetwork() {
		net = network{}
	}
	set("TotalRate", rate)
	set("TotalAmount", rate)
	set("MCC", net.mcc)
	set("MNC", net.mnc)
	set("PartInfo", "1 of 1")
	set("Sequence", strconv.Itoa(m.sequence))
	set("PowerpackUUID", "")
	set("MessageTime", plivoTime(m.MessageTime))
	set("QueuedTime", plivoTime(m.MessageTime))
	set("SentTime", plivoTime(m.SentTime))
	dr := time.Time{}
	if status == "delivered" || status == "undelivered" || status == "failed" {
		dr = now
	}
	set("DeliveryReportTime", plivoTime(dr))
	return p
}

// reachedNetwork reports whether the message got as far as a mobile
// network: not with an invalid source (40) or destination (50).
func (m *message) reachedNetwork() bool { return m.code != "40" && m.code != "50" }

// charge is the rate billed for the message: nothing when it never
// reached a network.
func (m *message) charge() string {
	if !m.reachedNetwork() {
		return "0.00000"
	}
	return rateOf(m.To)
}

// plivoTime formats t like Plivo's callbacks; zero is "".
func plivoTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05.000000")
}

// post delivers one callback, signed like Plivo (V2, Ma-V2, V3, Ma-V3, each
// with a fresh nonce), retrying like Plivo when it gets no 2xx.
func (sb *Sandbox) post(m *message, params url.Values) {
	if sb.opts.NoCallbacks || m.callbackURL == "" {
		return
	}
	// Plivo retries after 60 s, 120 s and 240 s; scaled by Step here.
	retries := []time.Duration{0, 2 * sb.opts.Step, 4 * sb.opts.Step, 8 * sb.opts.Step}
	for i, wait := range retries {
		if !sb.sleep(wait) {
			return
		}
		err := sb.send(m, params)
		if err == nil {
			return
		}
		sb.log.Warn("sandbox callback failed", "message_uuid", m.UUID, "status", params.Get("Status"),
			"attempt", i+1, "err", err)
	}
}

func (sb *Sandbox) send(m *message, params url.Values) error {
	target, body := m.callbackURL, params.Encode()
	method := http.MethodPost
	var v3Params url.Values
	if m.cbMethod == http.MethodGet {
		method = http.MethodGet
		sep := "?"
		if strings.Contains(target, "?") {
			sep = "&"
		}
		target, body = target+sep+body, ""
	} else {
		v3Params = params
	}
	nonceV2, nonceV3 := randomDigits(20), randomDigits(20)
	v2, err := protocol.ComputeSignatureV2(sb.authToken, target, nonceV2)
	if err != nil {
		return err
	}
	v3, err := protocol.ComputeSignatureV3(sb.authToken, method, target, nonceV3, v3Params)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(sb.ctx, method, target, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("build callback: %w", err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("User-Agent", "PlivoSandbox")
	req.Header.Set(protocol.HeaderSignatureV2, v2)
	req.Header.Set(protocol.HeaderSignatureMaV2, v2)
	req.Header.Set(protocol.HeaderSignatureV2Nonce, nonceV2)
	req.Header.Set(protocol.HeaderSignatureV3, v3)
	req.Header.Set(protocol.HeaderSignatureMaV3, v3)
	req.Header.Set(protocol.HeaderSignatureV3Nonce, nonceV3)
	resp, err := sb.client.Do(req)
	if err != nil {
		return fmt.Errorf("post callback: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post callback: answered %s", resp.Status)
	}
	return nil
}

// messageJSON is Plivo's message resource (GET .../Message/{uuid}/).
type messageJSON struct {
	APIID              string `json:"api_id"`
	ErrorCode          string `json:"error_code"`
	ErrorMessage       string `json:"error_message"`
	FromNumber         string `json:"from_number"`
	MessageDirection   string `json:"message_direction"`
	MessageState       string `json:"message_state"`
	MessageTime        string `json:"message_time"`
	MessageType        string `json:"message_type"`
	MessageUUID        string `json:"message_uuid"`
	ResourceURI        string `json:"resource_uri"`
	ToNumber           string `json:"to_number"`
	TotalAmount        string `json:"total_amount"`
	TotalRate          string `json:"total_rate"`
	Units              int    `json:"units"`
	MessageSentTime    string `json:"message_sent_time"`
	MessageUpdatedTime string `json:"message_updated_time"`
}

func (sb *Sandbox) handleGet(w http.ResponseWriter, r *http.Request) {
	if !sb.authorized(w, r) {
		return
	}
	id := r.PathValue("uuid")
	sb.mu.Lock()
	m, ok := sb.msgs[id]
	var out messageJSON
	if ok {
		// Plivo's message resource writes times with a zone offset.
		ts := func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05.000000-07:00")
		}
		out = messageJSON{
			APIID: uuid.NewString(), ErrorCode: m.ErrorCode, FromNumber: m.From, MessageDirection: "outbound",
			MessageState: m.Status, MessageTime: ts(m.MessageTime), MessageType: m.Type, MessageUUID: m.UUID,
			ResourceURI: "/v1/Account/" + sb.authID + "/Message/" + m.UUID + "/",
			ToNumber:    m.To, TotalAmount: m.charge(), TotalRate: m.charge(), Units: 1,
			MessageSentTime: ts(m.SentTime), MessageUpdatedTime: ts(m.UpdatedTime),
		}
	}
	sb.mu.Unlock()
	if !ok {
		plivoAPIError(w, http.StatusNotFound, "Message not found")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// newMessageUUID returns a time-based (version 1) UUID, the kind Plivo gives
// messages ("0c7e1a42-2f61-11ef-a3d5-0242ac120003"); the store keeps such
// keys time-ordered, so the sandbox exercises the same write pattern.
func newMessageUUID() string {
	if id, err := uuid.NewUUID(); err == nil {
		return id.String()
	}
	// No usable clock sequence or node: a random UUID is still unique.
	return uuid.NewString()
}

// randomAlnum returns n random uppercase letters and digits (crypto/rand).
func randomAlnum(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	return randomFrom(alphabet, n)
}

func randomDigits(n int) string { return randomFrom("0123456789", n) }

func randomFrom(alphabet string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		// 256 is not a multiple of 36; the slight bias is irrelevant for ids.
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// sleep waits d, or until Close, and reports whether the sandbox is still
// running.
func (sb *Sandbox) sleep(d time.Duration) bool {
	select {
	case <-time.After(d):
		return sb.ctx.Err() == nil
	case <-sb.ctx.Done():
		return false
	}
}
