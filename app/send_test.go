package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"plivo-dlr/app/apiclient"
	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

const (
	sendTestToken     = "send-test-token-0123456789"
	sendTestAuthID    = "MAFAKEACCOUNT0000001"
	sendTestAuthToken = "fake-auth-token-0123456789abcdef"
)

// sendEnv is a real Server on 127.0.0.1:0 with a real store.
type sendEnv struct {
	srv   *Server
	store *storage.Store
	url   string
}

// startSendServer opens a store in t.TempDir() and serves cfg on a loopback
// port; server.public_url is set to that port so callback URLs reach it.
func startSendServer(tb testing.TB, cfg Config, opts Options) *sendEnv {
	tb.Helper()
	store, err := storage.Open(filepath.Join(tb.TempDir(), "test.db"), storage.Options{Now: opts.Now})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	cfg.Server.PublicURL = "http://" + ln.Addr().String()
	if len(cfg.Dashboard.APITokens) == 0 {
		cfg.Dashboard.APITokens = []Secret{sendTestToken}
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
	}
	opts.Config, opts.Store = cfg, store
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	srv, err := NewServer(opts)
	if err != nil {
		tb.Fatalf("new server: %v", err)
	}
	stop := testsupport.Serve(tb, srv, ln, cfg.Server.PublicURL+"/healthz")
	tb.Cleanup(func() {
		stop()
		if err := store.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	return &sendEnv{srv: srv, store: store, url: cfg.Server.PublicURL}
}

// api calls the server's API with the test token and returns the status and
// body.
func (e *sendEnv) api(tb testing.TB, method, path string, body any) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatalf("encode: %v", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		tb.Fatalf("request: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+sendTestToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read: %v", err)
	}
	return resp.StatusCode, data
}

// fakePlivo is Plivo's message API over real HTTP on loopback: it records
// every request and answers create requests with reply.
type fakePlivo struct {
	*httptest.Server
	mu    sync.Mutex
	reqs  []fakePlivoRequest
	reply func(w http.ResponseWriter, r *http.Request, n int)
	// get answers GET .../Message/{uuid}/; nil answers 404.
	get func(w http.ResponseWriter, uuid string)
}

type fakePlivoRequest struct {
	Method, Path, User, Pass, ContentType string
	Body                                  map[string]any
}

func newFakePlivo(tb testing.TB) *fakePlivo {
	tb.Helper()
	f := &fakePlivo{}
	f.reply = func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, http.StatusAccepted, map[string]any{
			"api_id": "api-1", "message": "message(s) queued", "message_uuid": []string{"0c7e1a42-2f61-11ef-a3d5-0242ac120003"},
		})
	}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		rec := fakePlivoRequest{Method: r.Method, Path: r.URL.Path, User: user, Pass: pass, ContentType: r.Header.Get("Content-Type")}
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			_ = json.Unmarshal(b, &rec.Body)
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, rec)
		n, reply, get := len(f.reqs), f.reply, f.get
		f.mu.Unlock()
		if r.Method == http.MethodGet {
			parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
			if get == nil || len(parts) != 5 {
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
				return
			}
			get(w, parts[4])
			return
		}
		reply(w, r, n)
	}))
	tb.Cleanup(f.Close)
	return f
}

func (f *fakePlivo) requests() []fakePlivoRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakePlivoRequest(nil), f.reqs...)
}

func (f *fakePlivo) setReply(fn func(w http.ResponseWriter, r *http.Request, n int)) {
	f.mu.Lock()
	f.reply = fn
	f.mu.Unlock()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// fakePlivoConfig is a valid config pointing the Plivo client at f.
func fakePlivoConfig(f *fakePlivo) Config {
	cfg := DefaultConfig()
	cfg.Plivo.AuthID = sendTestAuthID
	cfg.Plivo.AuthToken = sendTestAuthToken
	cfg.Plivo.APIURL = f.URL
	cfg.Plivo.SourceNumber = "+14155550100"
	return cfg
}

func TestSendReachesPlivo(t *testing.T) {
	fake := newFakePlivo(t)
	env := startSendServer(t, fakePlivoConfig(fake), Options{})
	wantPath := "/v1/Account/" + sendTestAuthID + "/Message/"
	callbackURL := env.url + "/plivo/callback"

	tests := []struct {
		name      string
		body      map[string]any
		uuids     []string
		wantBody  map[string]any
		wantTo    []string
		wantType  string
		wantMedia []string
	}{
		{
			name:  "sms to one number, default sender",
			body:  map[string]any{"to": "+1 (415) 555-0199", "text": "hello"},
			uuids: []string{"11111111-0000-4000-8000-000000000001"},
			wantBody: map[string]any{"src": "14155550100", "dst": "14155550199", "text": "hello", "type": "sms",
				"url": callbackURL, "method": "POST"},
			wantTo:   []string{"14155550199"},
			wantType: "sms",
		},
		{
			name: "mms to a list, explicit sender",
			body: map[string]any{"to": []string{"+447700900123", "447700900124", "+447700900123"}, "text": "",
				"from": "+447700900001", "media_urls": []string{"https://example.com/a.png", "https://example.com/b.gif"}},
			uuids: []string{"22222222-0000-4000-8000-000000000001", "22222222-0000-4000-8000-000000000002"},
			wantBody: map[string]any{"src": "447700900001", "dst": "447700900123<447700900124", "type": "mms",
				"url": callbackURL, "method": "POST", "media_urls": []any{"https://example.com/a.png", "https://example.com/b.gif"}},
			wantTo:    []string{"447700900123", "447700900124"},
			wantType:  "mms",
			wantMedia: []string{"https://example.com/a.png", "https://example.com/b.gif"},
		},
		{
			name:  "plivo's < separated dst string",
			body:  map[string]any{"to": "+14155550101<+14155550102", "text": "two"},
			uuids: []string{"33333333-0000-4000-8000-000000000001", "33333333-0000-4000-8000-000000000002"},
			wantBody: map[string]any{"src": "14155550100", "dst": "14155550101<14155550102", "text": "two", "type": "sms",
				"url": callbackURL, "method": "POST"},
			wantTo:   []string{"14155550101", "14155550102"},
			wantType: "sms",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(fake.requests())
			fake.setReply(func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, http.StatusAccepted, map[string]any{"api_id": "api-" + tt.name, "message": "message(s) queued", "message_uuid": tt.uuids})
			})
			code, body := env.api(t, http.MethodPost, "/api/messages", tt.body)
			if code != http.StatusAccepted {
				t.Fatalf("POST /api/messages: got %d %s, want 202", code, body)
			}
			var resp sendResponse
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			if strings.Join(resp.MessageUUIDs, ",") != strings.Join(tt.uuids, ",") || resp.APIID != "api-"+tt.name {
				t.Errorf("answer: got %+v, want uuids %v and api_id %q", resp, tt.uuids, "api-"+tt.name)
			}

			reqs := fake.requests()
			if len(reqs) != before+1 {
				t.Fatalf("requests reaching Plivo: got %d, want 1", len(reqs)-before)
			}
			got := reqs[len(reqs)-1]
			if got.Method != http.MethodPost || got.Path != wantPath {
				t.Errorf("request: got %s %s, want POST %s", got.Method, got.Path, wantPath)
			}
			if got.User != sendTestAuthID || got.Pass != sendTestAuthToken {
				t.Errorf("basic auth: got %q/%q, want the configured id and token", got.User, got.Pass)
			}
			for k, want := range tt.wantBody {
				gotJSON, _ := json.Marshal(got.Body[k])
				wantJSON, _ := json.Marshal(want)
				if string(gotJSON) != string(wantJSON) {
					t.Errorf("body %s: got %s, want %s", k, gotJSON, wantJSON)
				}
			}

			for i, uuid := range tt.uuids {
				msg, events, err := env.store.GetMessage(uuid)
				if err != nil {
					t.Fatalf("message %s not recorded: %v", uuid, err)
				}
				if msg.Status != storage.StatusQueued || msg.To != tt.wantTo[i] || msg.Type != tt.wantType || msg.From != got.Body["src"] {
					t.Errorf("message: got status %q to %q type %q from %q, want queued %q %q %v",
						msg.Status, msg.To, msg.Type, msg.From, tt.wantTo[i], tt.wantType, got.Body["src"])
				}
				if text, _ := tt.body["text"].(string); msg.Text != text {
					t.Errorf("text: got %q, want %q", msg.Text, text)
				}
				if strings.Join(msg.MediaURLs, " ") != strings.Join(tt.wantMedia, " ") {
					t.Errorf("media: got %v, want %v", msg.MediaURLs, tt.wantMedia)
				}
				if len(events) != 1 || events[0].Source != storage.SourceSend ||
					events[0].Payload["api_id"] != "api-"+tt.name || events[0].Payload["sent_by"] != "token" {
					t.Errorf("events: got %+v, want one send event with api_id and sent_by=token", events)
				}
			}
		})
	}
	if got := testutil.ToFloat64(env.srv.metrics.messagesSent.WithLabelValues("sms", sendAccepted)); got != 2 {
		t.Errorf("messages_sent_total{sms,accepted}: got %v, want 2", got)
	}
}

func TestSendPlivoErrors(t *testing.T) {
	fake := newFakePlivo(t)
	env := startSendServer(t, fakePlivoConfig(fake), Options{})
	tests := []struct {
		name       string
		reply      func(w http.ResponseWriter, r *http.Request, n int)
		wantCode   int
		wantReason string
		wantResult string
	}{
		{"400 with plivo's reason", func(w http.ResponseWriter, _ *http.Request, _ int) {
			writeJSON(w, 400, map[string]string{"api_id": "x", "error": "dst number is invalid"})
		}, 400, "plivo: dst number is invalid", sendRejected},
		{"401 bad credentials", func(w http.ResponseWriter, _ *http.Request, _ int) {
			w.WriteHeader(401)
			io.WriteString(w, "Could not verify your access level for that URL.")
		}, 502, "plivo rejected our credentials", sendError},
		{"401 with empty body", func(w http.ResponseWriter, _ *http.Request, _ int) {
			w.WriteHeader(401)
		}, 502, "plivo rejected our credentials", sendError},
		{"402 payment required", func(w http.ResponseWriter, _ *http.Request, _ int) {
			writeJSON(w, 402, map[string]string{"error": "out of money"})
		}, 402, "plivo: out of money", sendRejected},
		{"400 insufficient credit", func(w http.ResponseWriter, _ *http.Request, _ int) {
			writeJSON(w, 400, map[string]string{"error": "Insufficient credit in your account"})
		}, 402, "Insufficient credit", sendRejected},
		{"429 rate limit", func(w http.ResponseWriter, _ *http.Request, _ int) {
			writeJSON(w, 429, map[string]string{"error": "too many requests"})
		}, 429, "rate limited: too many requests", sendRejected},
		{"500", func(w http.ResponseWriter, _ *http.Request, _ int) {
			writeJSON(w, 500, map[string]string{"error": "internal"})
		}, 502, "plivo unavailable (500)", sendError},
		{"dropped connection", func(w http.ResponseWriter, _ *http.Request, _ int) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, 502, "cannot reach plivo", sendError},
		{"202 without uuids", func(w http.ResponseWriter, _ *http.Request, _ int) {
			writeJSON(w, 202, map[string]any{"api_id": "x", "error": "strange"})
		}, 502, "strange", sendError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.setReply(tt.reply)
			before := testutil.ToFloat64(env.srv.metrics.messagesSent.WithLabelValues("sms", tt.wantResult))
			code, body := env.api(t, http.MethodPost, "/api/messages", map[string]any{"to": "+14155550199", "text": "hi"})
			var e struct{ Error string }
			_ = json.Unmarshal(body, &e)
			if code != tt.wantCode || !strings.Contains(e.Error, tt.wantReason) {
				t.Errorf("got %d %s, want %d with %q", code, body, tt.wantCode, tt.wantReason)
			}
			if got := testutil.ToFloat64(env.srv.metrics.messagesSent.WithLabelValues("sms", tt.wantResult)); got != before+1 {
				t.Errorf("messages_sent_total{sms,%s}: got %v, want %v", tt.wantResult, got, before+1)
			}
		})
	}
	msgs, _, err := env.store.ListMessages(storage.ListFilter{})
	if err != nil || len(msgs) != 0 {
		t.Errorf("stored after refused sends: got %d messages (err %v), want 0", len(msgs), err)
	}
	if n := len(fake.requests()); n != len(tests) {
		t.Errorf("requests reaching Plivo: got %d, want %d", n, len(tests))
	}
}

func TestSendValidation(t *testing.T) {
	fake := newFakePlivo(t)
	cfg := fakePlivoConfig(fake)
	cfg.Plivo.SourceNumber = ""
	env := startSendServer(t, cfg, Options{})
	long := strings.Repeat("é", maxSMSText+1)
	media := make([]string, maxMedia+1)
	for i := range media {
		media[i] = "https://example.com/x.png"
	}
	tests := []struct {
		name string
		body any
		want string
	}{
		{"not json", "to=1", "body must be a JSON object"},
		{"to missing", map[string]any{"text": "x", "from": "+14155550100"}, "to: required"},
		{"to wrong type", map[string]any{"to": 14155550100, "text": "x"}, "to: must be a phone number"},
		{"too short number", map[string]any{"to": "+1234567", "text": "x", "from": "+14155550100"}, "to: \"+1234567\" is not a phone number"},
		{"too long number", map[string]any{"to": "+1234567890123456", "text": "x", "from": "+14155550100"}, "is not a phone number"},
		{"letters in number", map[string]any{"to": "+1415CALLNOW", "text": "x", "from": "+14155550100"}, "is not a phone number"},
		{"leading zero", map[string]any{"to": "04155550100", "text": "x", "from": "+14155550100"}, "is not a phone number"},
		{"no sender anywhere", map[string]any{"to": "+14155550199", "text": "x"}, "from: required"},
		{"bad sender", map[string]any{"to": "+14155550199", "text": "x", "from": "not-a-sender!"}, "from: "},
		{"empty sms text", map[string]any{"to": "+14155550199", "text": "  ", "from": "+14155550100"}, "text: required for SMS"},
		{"text too long", map[string]any{"to": "+14155550199", "text": long, "from": "+14155550100"}, "text: at most 1600 characters (got 1601)"},
		{"too many media", map[string]any{"to": "+14155550199", "media_urls": media, "from": "+14155550100"}, "media_urls: at most 10"},
		{"media not http", map[string]any{"to": "+14155550199", "media_urls": []string{"ftp://x/y"}, "from": "+14155550100"}, "media_urls: \"ftp://x/y\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			var body []byte
			if s, ok := tt.body.(string); ok {
				req, _ := http.NewRequest(http.MethodPost, env.url+"/api/messages", strings.NewReader(s))
				req.Header.Set("Authorization", "Bearer "+sendTestToken)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			} else {
				code, body = env.api(t, http.MethodPost, "/api/messages", tt.body)
			}
			var e struct{ Error string }
			_ = json.Unmarshal(body, &e)
			if code != http.StatusBadRequest || !strings.Contains(e.Error, tt.want) {
				t.Errorf("got %d %s, want 400 containing %q", code, body, tt.want)
			}
		})
	}
	if n := len(fake.requests()); n != 0 {
		t.Errorf("requests reaching Plivo: got %d, want 0", n)
	}
	t.Run("alphanumeric sender accepted", func(t *testing.T) {
		code, body := env.api(t, http.MethodPost, "/api/messages", map[string]any{"to": "+447700900123", "text": "x", "from": "ACME Ltd"})
		if code != http.StatusAccepted {
			t.Fatalf("got %d %s, want 202", code, body)
		}
		if reqs := fake.requests(); len(reqs) != 1 || reqs[0].Body["src"] != "ACME Ltd" {
			t.Errorf("src: got %+v, want ACME Ltd", reqs)
		}
	})
}

func TestSendWithoutCredentials(t *testing.T) {
	env := startSendServer(t, DefaultConfig(), Options{})
	code, body := env.api(t, http.MethodPost, "/api/messages", map[string]any{"to": "+14155550199", "text": "x", "from": "+14155550100"})
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "plivo.auth_id") {
		t.Errorf("got %d %s, want 503 naming plivo.auth_id", code, body)
	}
	code, body = env.api(t, http.MethodGet, "/api/config", nil)
	var c sendConfig
	if err := json.Unmarshal(body, &c); code != 200 || err != nil || c.SendingEnabled || c.CallbackURL != env.url+"/plivo/callback" {
		t.Errorf("GET /api/config: got %d %s, want sending_enabled false and callback_url %s/plivo/callback", code, body, env.url)
	}
}

func TestSendRequiresAuth(t *testing.T) {
	fake := newFakePlivo(t)
	env := startSendServer(t, fakePlivoConfig(fake), Options{})
	resp, err := http.Post(env.url+"/api/messages", "application/json", strings.NewReader(`{"to":"+14155550199","text":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without a token: got %d, want 401", resp.StatusCode)
	}
	if n := len(fake.requests()); n != 0 {
		t.Errorf("requests reaching Plivo: got %d, want 0", n)
	}
}

func TestSendViaAPI(t *testing.T) {
	fake := newFakePlivo(t)
	env := startSendServer(t, fakePlivoConfig(fake), Options{})
	ctx := context.Background()
	got, err := newAPIClient(t, env.url, sendTestToken).Send(ctx, apiclient.SendRequest{To: []string{"+14155550199"}, Text: "cli"})
	if err != nil || len(got.MessageUUIDs) != 1 || got.MessageUUIDs[0] != "0c7e1a42-2f61-11ef-a3d5-0242ac120003" {
		t.Errorf("Send: got %+v, %v, want 0c7e1a42-2f61-11ef-a3d5-0242ac120003", got, err)
	}
	_, err = newAPIClient(t, env.url, sendTestToken).Send(ctx, apiclient.SendRequest{To: []string{"12"}, Text: "cli"})
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "to: \"12\" is not a phone number") {
		t.Errorf("bad number: got %v, want the server's 400 reason", err)
	}
	_, err = newAPIClient(t, env.url, "wrong-token-0123456789").Send(ctx, apiclient.SendRequest{To: []string{"+14155550199"}, Text: "cli"})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("bad token: got %v, want 401", err)
	}
}
