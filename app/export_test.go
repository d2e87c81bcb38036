package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"plivo-dlr/storage"
)

// exportFixture stores messages with every kind of field an export must
// carry: texts with commas, quotes and newlines, media URLs, unknown times.
func exportFixture(t *testing.T, store *storage.Store) []storage.Message {
	t.Helper()
	base := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	var uuids []string
	for i := range 30 {
		uuid := fmt.Sprintf("e%07d-0000-4000-8000-000000000000", i)
		q := base.Add(time.Duration(i) * time.Minute)
		ev := storage.Event{
			MessageUUID: uuid,
			Status:      []string{"delivered", "undelivered", "queued"}[i%3],
			Sequence:    2,
			Source:      storage.SourceCallback,
			ReceivedAt:  q.Add(time.Second),
			Payload:     map[string]string{"MessageUUID": uuid},
			Details: storage.Details{
				From:       "14155550100",
				To:         fmt.Sprintf("4477009%05d", i),
				Type:       "sms",
				Units:      1 + i%2,
				TotalRate:  "0.0045",
				MCC:        "234",
				QueuedTime: &q,
			},
		}
		if i%3 == 1 {
			ev.ErrorCode = "30"
		}
		if i%3 == 0 {
			d := q.Add(3 * time.Second)
			ev.DeliveryReportTime = &d
		}
		if i%4 == 0 {
			ev.Source = storage.SourceSend
			ev.Text = fmt.Sprintf("hello, \"world\" %d\nsecond line, ünïcode", i)
			ev.MediaURLs = []string{"https://example.com/a.png", "https://example.com/b.jpg?x=1,2"}
		}
		if _, err := store.Apply(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		uuids = append(uuids, uuid)
	}
	var msgs []storage.Message
	for _, u := range uuids {
		m, _, err := store.GetMessage(u)
		if err != nil {
			t.Fatal(err)
		}
		m.StatusSequence = 0 // not part of the JSON shape
		msgs = append(msgs, m)
	}
	return msgs
}

// parseCSVMessage reads one CSV row back into a message.
func parseCSVMessage(t *testing.T, header, row []string) storage.Message {
	t.Helper()
	f := map[string]string{}
	for i, h := range header {
		f[h] = row[i]
	}
	tm := func(k string) *time.Time {
		if f[k] == "" {
			return nil
		}
		v, err := time.Parse(time.RFC3339Nano, f[k])
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return &v
	}
	num := func(k string) int {
		n, err := strconv.Atoi(f[k])
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return n
	}
	m := storage.Message{
		MessageUUID: f["message_uuid"],
		Status:      f["status"],
		ErrorCode:   f["error_code"],
		FirstSeen:   *tm("first_seen"),
		LastSeen:    *tm("last_seen"),
		EventCount:  num("event_count"),
		Details: storage.Details{
			From:               f["from"],
			To:                 f["to"],
			Type:               f["type"],
			Units:              num("units"),
			TotalRate:          f["total_rate"],
			TotalAmount:        f["total_amount"],
			MCC:                f["mcc"],
			MNC:                f["mnc"],
			ParentMessageUUID:  f["parent_message_uuid"],
			PartInfo:           f["part_info"],
			MessageTime:        tm("message_time"),
			QueuedTime:         tm("queued_time"),
			SentTime:           tm("sent_time"),
			DeliveryReportTime: tm("delivery_report_time"),
		},
		Content: storage.Content{Text: f["text"]},
		Inbound: storage.Inbound{Direction: storage.Direction(f["direction"]), Intent: f["intent"]},
	}
	if f["media_urls"] != "" {
		m.MediaURLs = strings.Split(f["media_urls"], " ")
	}
	return m
}

func TestExportParsesBack(t *testing.T) {
	d := startDashServer(t, nil)
	want := exportFixture(t, d.store)

	filter := func(keep func(storage.Message) bool) []storage.Message {
		var out []storage.Message
		for _, m := range want {
			if keep(m) {
				out = append(out, m)
			}
		}
		return out
	}
	tests := []struct {
		name  string
		query string
		want  []storage.Message
	}{
		{name: "all", query: "", want: want},
		{name: "status", query: "&status=undelivered", want: filter(func(m storage.Message) bool { return m.Status == "undelivered" })},
		{name: "pending", query: "&status=pending", want: filter(func(m storage.Message) bool { return !storage.IsTerminal(m.Status) })},
		{name: "window", query: "&since=" + url.QueryEscape(want[5].FirstSeen.Format(time.RFC3339Nano)) +
			"&until=" + url.QueryEscape(want[12].FirstSeen.Format(time.RFC3339Nano)), want: want[5:12]},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/ndjson", func(t *testing.T) {
			code, body := getBody(t, d.url("/api/export?format=ndjson"+tc.query))
			if code != http.StatusOK {
				t.Fatalf("GET = %d %s, want 200", code, body)
			}
			var got []storage.Message
			sc := bufio.NewScanner(bytes.NewReader(body))
			for sc.Scan() {
				var m storage.Message
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				got = append(got, m)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("NDJSON export parsed back:\n got %+v\nwant %+v", got, tc.want)
			}
		})
		t.Run(tc.name+"/csv", func(t *testing.T) {
			code, body := getBody(t, d.url("/api/export?format=csv"+tc.query))
			if code != http.StatusOK {
				t.Fatalf("GET = %d %s, want 200", code, body)
			}
			rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
			if err != nil {
				t.Fatalf("parse CSV: %v", err)
			}
			if !reflect.DeepEqual(rows[0], csvHeader) {
				t.Fatalf("header = %v, want %v", rows[0], csvHeader)
			}
			var got []storage.Message
			for _, row := range rows[1:] {
				got = append(got, parseCSVMessage(t, rows[0], row))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("CSV export parsed back:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	for _, tc := range []struct{ query, want string }{
		{query: "format=xml", want: `{"error":"format: must be csv or ndjson"}`},
		{query: "since=yesterday", want: `{"error":"since: must be an RFC 3339 time, unix seconds or a duration like 24h"}`},
	} {
		code, body := getBody(t, d.url("/api/export?"+tc.query))
		if code != http.StatusBadRequest || string(body) != tc.want {
			t.Errorf("GET /api/export?%s = %d %s, want 400 %s", tc.query, code, body, tc.want)
		}
	}
	resp, err := http.Get(d.url("/api/export"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("export without a token = %d, want 401", resp.StatusCode)
	}
}

// TestExportViaAPI streams through the client the export command uses.
func TestExportViaAPI(t *testing.T) {
	d := startDashServer(t, nil)
	fillMessages(t, d.store, "x", 2500)
	var buf bytes.Buffer
	if _, err := newAPIClient(t, d.url(""), dashAPIToken).Export(context.Background(), url.Values{"format": {"csv"}}, &buf); err != nil {
		t.Fatalf("Export: %v", err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2501 {
		t.Errorf("got %d CSV rows, want a header and 2500 messages", len(rows))
	}
	if _, err := newAPIClient(t, d.url(""), "nope").Export(context.Background(), url.Values{}, &buf); err == nil ||
		!strings.Contains(err.Error(), "401") {
		t.Errorf("Export with a bad token: got %v, want the 401", err)
	}
}
