package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"plivo-dlr/storage"
)

// fakePlivoAPI is Plivo's message API over real HTTP on loopback: it
// counts the send requests it received and accepts each with a new UUID.
type fakePlivoAPI struct {
	*httptest.Server
	mu    sync.Mutex
	sends []map[string]any
}

func newFakePlivoAPI(t *testing.T) *fakePlivoAPI {
	f := &fakePlivoAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
		f.mu.Lock()
		f.sends = append(f.sends, body)
		n := len(f.sends)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"api_id":"api-%d","message":"message(s) queued","message_uuid":["5b1c%04x-b0c6-11ef-a7a3-0242ac110003"]}`, n, n)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakePlivoAPI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sends)
}

// writeSendConfig is writeConfig with sending through the fake Plivo API.
func writeSendConfig(t *testing.T, dataDir, apiURL string) string {
	t.Helper()
	cfg := fmt.Sprintf(`[server]
listen = "127.0.0.1:0"
public_url = %q
data_dir = %q

[plivo]
auth_id = "MAXXXXXXXXXXXXXXXXXX"
auth_token = %q
api_url = %q
source_number = "+14155550199"
nonce_ttl = "1h"

[dashboard]
api_tokens = [%q]

[reconcile]
enabled = false
`, testPublicURL, dataDir, testAuthToken, apiURL, testAPIToken)
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// api calls the binary's API with the test token and returns status and body.
func (p *proc) api(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+p.addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAPIToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func inboundFields(uuid, from, text, intent string) url.Values {
	v := url.Values{
		"MessageUUID": {uuid}, "From": {from}, "To": {"14155550199"}, "Text": {text}, "Type": {"sms"},
		"Units": {"1"}, "TotalRate": {"0.00000"}, "TotalAmount": {"0.00000"}, "MessageIntent": {intent}, "PowerpackUUID": {""},
	}
	return v
}

func optOutSet(t *testing.T, p *proc) map[string]storage.OptOut {
	t.Helper()
	var list struct{ OptOuts []storage.OptOut }
	if code := p.getJSON(t, "/api/optouts", testAPIToken, &list); code != 200 {
		t.Fatalf("GET /api/optouts: %d", code)
	}
	got := map[string]storage.OptOut{}
	for _, o := range list.OptOuts {
		got[o.Number] = o
	}
	return got
}

// TestBinaryInboundAndOptOuts drives the real binary: signed inbound SMS
// and MMS answered with Plivo XML and listed as inbound; a STOP refuses the
// next send before Plivo is called, START allows it again; a report with
// error 200 lists its destination; the list survives restart and a backup
// restore.
func TestBinaryInboundAndOptOuts(t *testing.T) {
	fake := newFakePlivoAPI(t)
	dataDir := t.TempDir()
	configPath := writeSendConfig(t, dataDir, fake.URL)
	p := startBinary(t, configPath)
	client := &http.Client{Timeout: 10 * time.Second}
	nonce := 0
	post := func(fields url.Values) (int, string) {
		nonce++
		return p.send(t, client, signedForm(t, fields, fmt.Sprintf("7%019d", nonce)))
	}
	expectXML := func(what string, fields url.Values) {
		t.Helper()
		nonce++
		cb := signedForm(t, fields, fmt.Sprintf("7%019d", nonce))
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.addr+"/plivo/callback", strings.NewReader(cb.body))
		req.Header.Set("Content-Type", cb.ctype)
		for k, v := range cb.headers {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "<Response></Response>" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/xml") {
			t.Fatalf("%s: %d %q (%s), want 200 <Response></Response> application/xml", what, resp.StatusCode, body, resp.Header.Get("Content-Type"))
		}
	}

	const (
		smsUUID   = "1a000001-b0c6-11ef-a7a3-0242ac110003"
		mmsUUID   = "1a000002-b0c6-11ef-a7a3-0242ac110003"
		stopUUID  = "1a000003-b0c6-11ef-a7a3-0242ac110003"
		startUUID = "1a000004-b0c6-11ef-a7a3-0242ac110003"
		person    = "14155550123"
	)
	sms := inboundFields(smsUUID, person, "Is 7pm still ok? ☕", "")
	expectXML("inbound SMS", sms)
	mms := url.Values{
		"MessageUUID": {mmsUUID}, "From": {"447700900555"}, "To": {"14155550199"}, "Body": {"the receipt"}, "Type": {"mms"},
		"MediaCount": {"2"}, "Media1": {"https://media.plivo.com/1.jpg"}, "Media2": {"https://media.plivo.com/2.png"}, "Units": {"1"},
	}
	expectXML("inbound MMS", mms)
	expectXML("retried SMS", sms) // a new nonce, the same body: stored once

	var list struct {
		Messages []map[string]any `json:"messages"`
	}
	if code := p.getJSON(t, "/api/messages?direction=inbound", testAPIToken, &list); code != 200 || len(list.Messages) != 2 {
		t.Fatalf("direction=inbound: %d, %d messages, want 2", code, len(list.Messages))
	}
	byUUID := map[string]map[string]any{}
	for _, m := range list.Messages {
		byUUID[m["message_uuid"].(string)] = m
	}
	if m := byUUID[smsUUID]; m["direction"] != "inbound" || m["status"] != "received" || m["text"] != "Is 7pm still ok? ☕" || m["event_count"] != 1.0 {
		t.Errorf("inbound SMS = %v", m)
	}
	if m := byUUID[mmsUUID]; m["text"] != "the receipt" || fmt.Sprint(m["media_urls"]) != "[https://media.plivo.com/1.jpg https://media.plivo.com/2.png]" {
		t.Errorf("inbound MMS = %v", m)
	}
	if code := p.getJSON(t, "/api/messages?direction=outbound", testAPIToken, &list); code != 200 || len(list.Messages) != 0 {
		t.Errorf("direction=outbound: %d, %d messages, want none", code, len(list.Messages))
	}
	if code, body := p.api(t, "GET", "/api/messages?direction=sideways", ""); code != 400 || !strings.Contains(body, "direction") {
		t.Errorf("bad direction: %d %s, want 400 naming direction", code, body)
	}
	// Neither kind: 400 naming what is missing.
	if code, body := post(url.Values{"MessageUUID": {"1a000009-b0c6-11ef-a7a3-0242ac110003"}, "From": {person}}); code != 400 || !strings.Contains(body, "missing Status (a delivery report) or To and Text, Body or MediaCount") {
		t.Errorf("neither kind: %d %s", code, body)
	}

	// STOP, then a send to that number: 409, and Plivo hears nothing.
	expectXML("STOP", inboundFields(stopUUID, person, "STOP", "optout"))
	code, body := p.api(t, "POST", "/api/messages", `{"to":"+1 415 555 0123","text":"reminder"}`)
	if code != http.StatusConflict || !regexp.MustCompile(`^\{"error":"\+14155550123 opted out \(STOP on \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)"\}$`).MatchString(body) {
		t.Errorf("send after STOP: %d %s, want 409 naming the STOP", code, body)
	}
	if n := fake.count(); n != 0 {
		t.Errorf("fake Plivo received %d sends after the STOP, want 0", n)
	}
	o := optOutSet(t, p)["+14155550123"]
	if o.Source != "optout" || o.To != "+14155550199" || o.MessageUUID != stopUUID {
		t.Errorf("opt-out = %+v, want source optout, to +14155550199, message %s", o, stopUUID)
	}

	// START: sends go out again.
	expectXML("START", inboundFields(startUUID, person, "START", "optin"))
	if code, body := p.api(t, "POST", "/api/messages", `{"to":"+14155550123","text":"welcome back"}`); code != http.StatusAccepted {
		t.Errorf("send after START: %d %s, want 202", code, body)
	}
	if n := fake.count(); n != 1 {
		t.Errorf("fake Plivo received %d sends after START, want 1", n)
	}

	// The conversation: both directions, oldest first.
	var conv struct {
		Number   string           `json:"number"`
		Messages []map[string]any `json:"messages"`
		OptedOut *storage.OptOut  `json:"opted_out"`
	}
	if code := p.getJSON(t, "/api/conversations/%2B14155550123", testAPIToken, &conv); code != 200 {
		t.Fatalf("conversation: %d", code)
	}
	var texts []string
	for _, m := range conv.Messages {
		texts = append(texts, fmt.Sprint(m["direction"], ":", m["text"]))
	}
	if want := "[inbound:Is 7pm still ok? ☕ inbound:STOP inbound:START outbound:welcome back]"; fmt.Sprint(texts) != want || conv.Number != "+14155550123" || conv.OptedOut != nil {
		t.Errorf("conversation %s = %v (opted out %v), want %s", conv.Number, texts, conv.OptedOut, want)
	}

	// A report with error 200 lists its destination.
	dlr := statusFields("1a000010-b0c6-11ef-a7a3-0242ac110003", "undelivered", 2)
	dlr.Set("ErrorCode", "200")
	if code, body := post(dlr); code != 200 || body != "OK" {
		t.Fatalf("error-200 report: %d %q, want 200 OK", code, body)
	}
	set := optOutSet(t, p)
	if len(set) != 1 || set["+447700900123"].Source != "error_200" {
		t.Fatalf("after the error-200 report: %+v, want +447700900123 from error_200", set)
	}
	if code, _ := p.api(t, "POST", "/api/messages", `{"to":"447700900123","text":"x"}`); code != http.StatusConflict || fake.count() != 1 {
		t.Errorf("send to the error-200 number: %d, fake Plivo %d sends; want 409 and still 1", code, fake.count())
	}

	// API: add, remove, remove again.
	if code, body := p.api(t, "POST", "/api/optouts", `{"number":"+447700900999"}`); code != http.StatusAccepted || !strings.Contains(body, `"source":"api"`) {
		t.Errorf("POST /api/optouts: %d %s", code, body)
	}
	if code, _ := p.api(t, "DELETE", "/api/optouts/%2B447700900999", ""); code != http.StatusNoContent {
		t.Errorf("DELETE: %d, want 204", code)
	}
	if code, _ := p.api(t, "DELETE", "/api/optouts/447700900999", ""); code != http.StatusNotFound {
		t.Errorf("DELETE again: %d, want 404", code)
	}

	// Metrics.
	code, metrics := p.api(t, "GET", "/metrics", "")
	for _, want := range []string{
		`plivo_dlr_inbound_messages_total{intent="none",type="sms"} 1`,
		`plivo_dlr_inbound_messages_total{intent="none",type="mms"} 1`,
		`plivo_dlr_inbound_messages_total{intent="optout",type="sms"} 1`,
		`plivo_dlr_inbound_messages_total{intent="optin",type="sms"} 1`,
		`plivo_dlr_inbound_messages_total{intent="help",type="whatsapp"} 0`,
		"plivo_dlr_optouts 1",
		`plivo_dlr_messages_sent_total{result="opted_out",type="sms"} 2`,
		`plivo_dlr_messages_sent_total{result="accepted",type="sms"} 1`,
	} {
		if code != 200 || !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics (%d) lack %q", code, want)
		}
	}

	// Stats count inbound apart; export carries the direction.
	var st struct {
		Counts       map[string]int64 `json:"counts"`
		Total        int64            `json:"total"`
		Inbound      int64            `json:"inbound"`
		DeliveryRate float64          `json:"delivery_rate"`
	}
	if code := p.getJSON(t, "/api/stats?window=1h", testAPIToken, &st); code != 200 || st.Inbound != 4 || st.Counts["received"] != 0 || st.Total != 2 || st.DeliveryRate != 0 {
		t.Errorf("stats = %d %+v, want 4 inbound apart from 2 outbound (queued, undelivered), delivery rate 0", code, st)
	}
	code, export := p.api(t, "GET", "/api/export?format=csv", "")
	if code != 200 || !strings.HasSuffix(strings.SplitN(export, "\n", 2)[0], ",direction,intent") ||
		!strings.Contains(export, ",inbound,optout\n") || !strings.Contains(export, ",outbound,\n") {
		t.Errorf("CSV export (%d) lacks direction and intent:\n%s", code, export)
	}

	// Survives a restart.
	p.stop(t)
	p = startBinary(t, configPath)
	if set := optOutSet(t, p); len(set) != 1 || set["+447700900123"].Source != "error_200" {
		t.Errorf("after restart: %+v", set)
	}

	// Survives backup and restore: a backup with the list, a number added
	// after it, then the README's restore (stop, replace the file, start).
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+"/api/backup", nil)
	req.Header.Set("Authorization", "Bearer "+testAPIToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	backup, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(backup) == 0 {
		t.Fatalf("backup: %d, %d bytes", resp.StatusCode, len(backup))
	}
	if code, _ := p.api(t, "POST", "/api/optouts", `{"number":"+447700900777"}`); code != http.StatusAccepted {
		t.Fatalf("POST /api/optouts: %d", code)
	}
	p.stop(t)
	if err := os.WriteFile(filepath.Join(dataDir, "plivo-dlr.db"), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	p = startBinary(t, configPath)
	if set := optOutSet(t, p); len(set) != 1 || set["+447700900123"].Source != "error_200" {
		t.Errorf("after restore: %+v, want the backup's list (+447700900123 only)", set)
	}
	if code, body := p.api(t, "POST", "/api/messages", `{"to":"+447700900123","text":"x"}`); code != http.StatusConflict || !bytes.Contains([]byte(body), []byte("Plivo error 200")) {
		t.Errorf("send after restore: %d %s, want 409 naming error 200", code, body)
	}
}
