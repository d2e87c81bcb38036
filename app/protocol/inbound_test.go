package protocol

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"plivo-dlr/storage"
)

func TestParseInboundBodies(t *testing.T) {
	const uuid = "2d55b4f0-b0c6-11ef-a7a3-0242ac110003"
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	type want struct {
		from, to, typ, text, intent string
		units                       int
		rate, amount                string
		media                       []string
		payload                     map[string]string // a subset of the payload
	}
	for _, tc := range []struct {
		name, method, contentType, body string
		want                            want
	}{
		{
			name: "sms", method: "POST",
			body: form("From", "14155550123", "To", "14155550199", "Text", "Running late, see you at 7?", "Type", "sms",
				"MessageUUID", uuid, "Units", "1", "TotalRate", "0.00000", "TotalAmount", "0.00000", "MessageIntent", "", "PowerpackUUID", ""),
			want: want{from: "14155550123", to: "14155550199", typ: "sms", text: "Running late, see you at 7?", units: 1,
				rate: "0.00000", amount: "0.00000", payload: map[string]string{"PowerpackUUID": "", "MessageIntent": ""}},
		},
		{
			name: "mms with media, numbered past 9", method: "POST",
			body: form("From", "14155550123", "To", "14155550199", "Body", "photos", "Type", "mms", "MessageUUID", uuid,
				"MediaCount", "3", "Media1", "https://media.plivo.com/a.jpg", "Media10", "https://media.plivo.com/c.jpg",
				"Media2", "https://media.plivo.com/b.jpg", "Media02", "https://ignored.example/x", "Units", "2"),
			want: want{from: "14155550123", to: "14155550199", typ: "mms", text: "photos", units: 2,
				media:   []string{"https://media.plivo.com/a.jpg", "https://media.plivo.com/b.jpg", "https://media.plivo.com/c.jpg"},
				payload: map[string]string{"MediaCount": "3", "Media02": "https://ignored.example/x"}},
		},
		{
			name: "mms without text", method: "POST",
			body: form("From", "14155550123", "To", "14155550199", "MediaCount", "1", "Media1", "https://media.plivo.com/a.jpg", "MessageUUID", uuid),
			want: want{from: "14155550123", to: "14155550199", typ: "mms", media: []string{"https://media.plivo.com/a.jpg"}},
		},
		{
			name: "whatsapp text, json", method: "POST", contentType: "application/json; charset=utf-8",
			body: `{"From":"447700900123","To":"14155550199","Body":"hi there","Type":"WhatsApp","MessageUUID":"` + uuid +
				`","ContentType":"text","MimeType":"","Units":1,"TotalRate":"0.0050","TotalAmount":"0.0050"}`,
			want: want{from: "447700900123", to: "14155550199", typ: "whatsapp", text: "hi there", units: 1, rate: "0.0050", amount: "0.0050",
				payload: map[string]string{"ContentType": "text", "MimeType": "", "Type": "WhatsApp"}},
		},
		{
			name: "stop", method: "POST",
			body: form("From", "14155550123", "To", "14155550199", "Text", "STOP", "Type", "sms", "MessageUUID", uuid, "MessageIntent", "optout"),
			want: want{from: "14155550123", to: "14155550199", typ: "sms", text: "STOP", intent: storage.IntentOptOut},
		},
		{
			name: "start, intent in another case", method: "POST",
			body: form("From", "14155550123", "To", "14155550199", "Text", "START", "Type", "sms", "MessageUUID", uuid, "MessageIntent", "OptIn"),
			want: want{from: "14155550123", to: "14155550199", typ: "sms", text: "START", intent: storage.IntentOptIn},
		},
		{
			name: "help, GET query", method: "GET",
			body: form("From", "14155550123", "To", "14155550199", "Text", "HELP", "MessageUUID", uuid, "MessageIntent", "help"),
			want: want{from: "14155550123", to: "14155550199", typ: "sms", text: "HELP", intent: storage.IntentHelp},
		},
		{
			name: "unknown intent and fields", method: "POST",
			body: form("From", " 14155550123 ", "To", "14155550199", "Text", "ok", "MessageUUID", uuid, "MessageIntent", "unsubscribe-all",
				"CarrierName", "T-Mobile", "x-custom", "1"),
			want: want{from: "14155550123", to: "14155550199", typ: "sms", text: "ok",
				payload: map[string]string{"CarrierName": "T-Mobile", "x-custom": "1", "From": " 14155550123 ", "MessageIntent": "unsubscribe-all"}},
		},
		{
			name: "non-ascii text kept as received", method: "POST",
			body: form("From", "819012345678", "To", "14155550199", "Text", "  ありがとう 🙏 café\n", "MessageUUID", uuid),
			want: want{from: "819012345678", to: "14155550199", typ: "sms", text: "  ありがとう 🙏 café\n"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, query := tc.body, ""
			if tc.method == "GET" {
				body, query = "", tc.body
			}
			params, err := CallbackParams(tc.method, tc.contentType, []byte(body), query)
			if err != nil {
				t.Fatalf("CallbackParams: %v", err)
			}
			ev, err := ParsePosted(params)
			if err != nil {
				t.Fatalf("ParsePosted: %v", err)
			}
			got := want{from: ev.From, to: ev.To, typ: ev.Type, text: ev.Text, intent: storage.IntentOf(ev.Payload),
				units: ev.Units, rate: ev.TotalRate, amount: ev.TotalAmount, media: ev.MediaURLs}
			w := tc.want
			if got.from != w.from || got.to != w.to || got.typ != w.typ || got.text != w.text || got.intent != w.intent ||
				got.units != w.units || got.rate != w.rate || got.amount != w.amount || !slices.Equal(got.media, w.media) {
				t.Errorf("parsed %+v, want %+v", got, w)
			}
			if ev.MessageUUID != uuid || ev.Status != storage.StatusReceived || ev.Source != storage.SourceInbound {
				t.Errorf("event = uuid %q status %q source %q, want %s received inbound", ev.MessageUUID, ev.Status, ev.Source, uuid)
			}
			if len(ev.Payload) != len(params) {
				t.Errorf("payload has %d fields, params %d", len(ev.Payload), len(params))
			}
			for k, v := range w.payload {
				if got, ok := ev.Payload[k]; !ok || got != v {
					t.Errorf("payload[%q] = %q (present %v), want %q", k, got, ok, v)
				}
			}
		})
	}
}

func TestParsePostedNeitherKind(t *testing.T) {
	for _, tc := range []struct {
		body, want string
	}{
		{"MessageUUID=u", "missing Status (a delivery report) or From and To and Text, Body or MediaCount (an inbound message)"},
		{"MessageUUID=u&From=1&To=2", "missing Status (a delivery report) or Text, Body or MediaCount (an inbound message)"},
		{"MessageUUID=u&From=1&Text=hi", "missing Status (a delivery report) or To (an inbound message)"},
		{"From=1&To=2&Text=hi", "missing MessageUUID"},
		{"MessageUUID=u&From=&To=2&Text=hi", "inbound message without From"},
		// A body with Status is a report, even if it looks inbound too.
		{"MessageUUID=u&Status=&From=1&To=2&Text=hi", "missing Status"},
	} {
		params, err := url.ParseQuery(tc.body)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParsePosted(params)
		if !errors.Is(err, ErrMalformed) || !strings.HasSuffix(err.Error(), ": "+tc.want) {
			t.Errorf("ParsePosted(%s) = %v, want ErrMalformed ending %q", tc.body, err, tc.want)
		}
	}
	// A report is still parsed as one.
	params, _ := url.ParseQuery("MessageUUID=2a0c7d8e-8f8e-11ef-9b1d-0242ac120002&Status=delivered&From=1&To=2")
	if ev, err := ParsePosted(params); err != nil || ev.Source != storage.SourceCallback || ev.Status != "delivered" {
		t.Errorf("ParsePosted(report) = %+v, %v", ev, err)
	}
}
