package storage

import (
	"encoding/binary"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"
)

// codecMessage is a message with every field set, and its event index.
func codecMessage() (Message, eventIndex) {
	t := func(s int) *time.Time { v := time.Unix(1_740_000_000+int64(s), 123456789).UTC(); return &v }
	m := Message{
		MessageUUID: "0b1e4c2a-f6d1-11ef-9cd2-0242ac120002", Status: StatusDelivered, ErrorCode: "000",
		FirstSeen: *t(0), LastSeen: *t(9), EventCount: 3, StatusSequence: 3,
		Details: Details{
			From: "14155550199", To: "447700900123", Type: "sms", Units: 2, TotalRate: "0.00500",
			TotalAmount: "0.01000", MCC: "234", MNC: "10", ParentMessageUUID: "0b1e4c2a-f6d1-11ef-9cd2-0242ac120001",
			PartInfo: "2 of 2", MessageTime: t(1), QueuedTime: t(2), SentTime: t(3), DeliveryReportTime: t(8),
		},
		Content: Content{Text: "hello", MediaURLs: []string{"https://example.com/a.png", "https://example.com/b.png"}},
	}
	return m, eventIndex{refs: []eventRef{{cursor: 7, hash: 0xdeadbeefcafe}, {cursor: 9, hash: 1}, {cursor: 12, hash: 1 << 63}}}
}

func codecEvent() (Event, []string) {
	m, _ := codecMessage()
	ev := Event{
		Cursor: 12, MessageUUID: m.MessageUUID, Status: StatusDelivered, ErrorCode: "000", Sequence: 3,
		ReceivedAt: m.LastSeen, Source: SourceCallback,
		Payload: map[string]string{"MessageUUID": m.MessageUUID, "Status": "delivered", "To": m.To, "From": m.From, "Units": "2"},
		Details: m.Details, Content: m.Content,
	}
	return ev, sortedKeys(ev.Payload)
}

func sortedKeys(p map[string]string) []string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestCodecRoundTrip(t *testing.T) {
	m, refs := codecMessage()
	var got Message
	var gotRefs eventIndex
	err := decodeMessage(encodeMessage(nil, &m, &refs), &got, &gotRefs)
	if err != nil || !reflect.DeepEqual(got, m) || !reflect.DeepEqual(gotRefs, refs) {
		t.Errorf("message round trip = %+v %v, %v; want %+v %v", got, gotRefs, err, m, refs)
	}
	ev, keys := codecEvent()
	gotEv, err := decodeEvent(ev.Cursor, encodeEvent(nil, &ev, keys))
	if err != nil || !reflect.DeepEqual(gotEv, ev) {
		t.Errorf("event round trip = %+v, %v; want %+v", gotEv, err, ev)
	}
	p, err := peekMessage(encodeMessage(nil, &m, &refs))
	if err != nil || p.firstSeen != m.FirstSeen.UnixNano() || p.lastSeen != m.LastSeen.UnixNano() ||
		string(p.status) != m.Status || string(p.to) != m.To || string(p.from) != m.From {
		t.Errorf("peek = %+v, %v; want the leading fields of %+v", p, err, m)
	}
	at, err := peekEventTime(encodeEvent(nil, &ev, keys))
	if err != nil || at != ev.ReceivedAt.UnixNano() {
		t.Errorf("peekEventTime = %d, %v; want %d", at, err, ev.ReceivedAt.UnixNano())
	}
}

// Every file written before format 2 holds format-1 records: they decode to
// the same values.
func TestCodecDecodesFormatV1(t *testing.T) {
	m, refs := codecMessage()
	var got Message
	var gotRefs eventIndex
	err := decodeMessage(encodeMessageV1(nil, &m, refs.refs), &got, &gotRefs)
	if err != nil || !reflect.DeepEqual(got, m) || !reflect.DeepEqual(gotRefs, refs) {
		t.Errorf("format-1 message = %+v %v, %v; want %+v %v", got, gotRefs, err, m, refs)
	}
	p, err := peekMessage(encodeMessageV1(nil, &m, refs.refs))
	if err != nil || p.firstSeen != m.FirstSeen.UnixNano() || p.lastSeen != m.LastSeen.UnixNano() ||
		string(p.status) != m.Status || string(p.to) != m.To || string(p.from) != m.From {
		t.Errorf("format-1 peek = %+v, %v; want the leading fields of %+v", p, err, m)
	}
	ev, keys := codecEvent()
	gotEv, err := decodeEvent(ev.Cursor, encodeEventV1(nil, &ev, keys))
	if err != nil || !reflect.DeepEqual(gotEv, ev) {
		t.Errorf("format-1 event = %+v, %v; want %+v", gotEv, err, ev)
	}
	at, err := peekEventTime(encodeEventV1(nil, &ev, keys))
	if err != nil || at != ev.ReceivedAt.UnixNano() {
		t.Errorf("format-1 peekEventTime = %d, %v; want %d", at, err, ev.ReceivedAt.UnixNano())
	}
}

// A record written before Content was added (the encoder then stopped after
// StatusSequence, or after Details for an event) decodes with Content zero.
func TestCodecOlderRecordLeavesNewFieldsZero(t *testing.T) {
	m, _ := codecMessage()
	w := beginRecord(nil, formatV2)
	w.time(m.FirstSeen)
	w.time(m.LastSeen)
	w.string(m.Status)
	w.details(&m.Details)
	w.string(m.MessageUUID)
	w.string(m.ErrorCode)
	w.int(int64(m.EventCount))
	w.int(m.StatusSequence)
	var got Message
	refs := eventIndex{refs: []eventRef{{1, 2}}, spilled: true}
	err := decodeMessage(w.end(), &got, &refs)
	want := m
	want.Content = Content{}
	if err != nil || !reflect.DeepEqual(got, want) || len(refs.refs) != 0 || refs.spilled {
		t.Errorf("older message = %+v %v, %v; want %+v and no refs", got, refs, err, want)
	}

	ev, keys := codecEvent()
	full := encodeEvent(nil, &ev, keys)
	// Cut after Details: drop Content's two fields from the count and bytes.
	contentLen := len(appendString(nil, ev.Text)) + len(binary.AppendUvarint(nil, uint64(len(ev.MediaURLs))))
	for _, u := range ev.MediaURLs {
		contentLen += len(appendString(nil, u))
	}
	old := slices.Clone(full[:len(full)-contentLen])
	old[1] -= 2
	gotEv, err := decodeEvent(ev.Cursor, old)
	wantEv := ev
	wantEv.Content = Content{}
	if err != nil || !reflect.DeepEqual(gotEv, wantEv) {
		t.Errorf("older event = %+v, %v; want %+v", gotEv, err, wantEv)
	}
	// Only the payload's predecessors: the payload still decodes as {}.
	w = beginRecord(nil, formatV2)
	w.string(ev.MessageUUID)
	w.string(ev.Status)
	gotEv, err = decodeEvent(1, w.end())
	if err != nil || gotEv.Status != ev.Status || gotEv.Payload == nil || len(gotEv.Payload) != 0 || gotEv.To != "" {
		t.Errorf("two-field event = %+v, %v; want status set, empty payload, the rest zero", gotEv, err)
	}
}

// A record from a newer binary, with fields this one does not know,
// decodes to the fields it knows.
func TestCodecIgnoresUnknownTrailingFields(t *testing.T) {
	m, refs := codecMessage()
	rec := encodeMessage(nil, &m, &refs)
	rec[1] += 2
	rec = appendString(rec, "a future field")
	rec = binary.AppendVarint(rec, -42)
	var got Message
	var gotRefs eventIndex
	err := decodeMessage(rec, &got, &gotRefs)
	if err != nil || !reflect.DeepEqual(got, m) || !reflect.DeepEqual(gotRefs, refs) {
		t.Errorf("newer message = %+v %v, %v; want %+v %v", got, gotRefs, err, m, refs)
	}
	ev, keys := codecEvent()
	erec := encodeEvent(nil, &ev, keys)
	erec[1]++
	erec = appendString(erec, "inbound")
	gotEv, err := decodeEvent(ev.Cursor, erec)
	if err != nil || !reflect.DeepEqual(gotEv, ev) {
		t.Errorf("newer event = %+v, %v; want %+v", gotEv, err, ev)
	}
}

// A record cut anywhere is refused: its field count promises more.
func TestCodecRejectsTruncated(t *testing.T) {
	m, refs := codecMessage()
	ev, keys := codecEvent()
	for _, rec := range [][]byte{encodeMessage(nil, &m, &refs), encodeMessageV1(nil, &m, refs.refs)} {
		for n := range len(rec) {
			var got Message
			if err := decodeMessage(rec[:n], &got, &eventIndex{}); err == nil {
				t.Fatalf("message cut to %d of %d bytes (format %d) decoded without error", n, len(rec), rec[0])
			}
		}
	}
	for _, rec := range [][]byte{encodeEvent(nil, &ev, keys), encodeEventV1(nil, &ev, keys)} {
		for n := range len(rec) {
			if _, err := decodeEvent(1, rec[:n]); err == nil {
				t.Fatalf("event cut to %d of %d bytes (format %d) decoded without error", n, len(rec), rec[0])
			}
		}
	}
	for _, rec := range [][]byte{{0}, {3, 0}, {0xff}} {
		if _, err := decodeEvent(1, rec); err == nil {
			t.Errorf("event with unknown format %x decoded", rec)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	ev, keys := codecEvent()
	f.Add(encodeEvent(nil, &ev, keys))
	f.Add(encodeEventV1(nil, &ev, keys))
	f.Add(encodeEvent(nil, &Event{}, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeEvent(5, b)
		if _, perr := peekEventTime(b); err == nil && perr != nil {
			t.Fatalf("decodeEvent accepted %x but peekEventTime refused it: %v", b, perr)
		}
		if err != nil {
			return
		}
		// What decodes re-encodes to a record that decodes the same.
		again, err := decodeEvent(5, encodeEvent(nil, &got, sortedKeys(got.Payload)))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("re-encoded event = %+v, %v; want %+v", again, err, got)
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	m, refs := codecMessage()
	f.Add(encodeMessage(nil, &m, &refs))
	f.Add(encodeMessage(nil, &m, &eventIndex{spilled: true}))
	f.Add(encodeMessageV1(nil, &m, refs.refs))
	f.Add(encodeMessage(nil, &Message{}, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var (
			got     Message
			gotRefs eventIndex
		)
		err := decodeMessage(b, &got, &gotRefs)
		if _, perr := peekMessage(b); err == nil && perr != nil {
			t.Fatalf("decodeMessage accepted %x but peekMessage refused it: %v", b, perr)
		}
		var noIdx Message
		if nerr := decodeMessage(b, &noIdx, nil); (nerr == nil) != (err == nil) || err == nil && !reflect.DeepEqual(noIdx, got) {
			t.Fatalf("decodeMessage without the index = %+v, %v; with it %+v, %v", noIdx, nerr, got, err)
		}
		if err != nil {
			return
		}
		if gotRefs.spilled {
			gotRefs.refs = nil // a spilled record holds no entries (nil or empty alike)
		}
		var (
			again     Message
			againRefs eventIndex
		)
		err = decodeMessage(encodeMessage(nil, &got, &gotRefs), &again, &againRefs)
		if againRefs.spilled && len(againRefs.refs) == 0 {
			againRefs.refs = nil
		}
		if err != nil || !reflect.DeepEqual(again, got) || !reflect.DeepEqual(againRefs, gotRefs) {
			t.Fatalf("re-encoded message = %+v %v, %v; want %+v %v", again, againRefs, err, got, gotRefs)
		}
	})
}

// jsonEvent is the same record for encoding/json: Event hides Details and
// Content from its JSON, so they are named here.
type jsonEvent struct {
	Event   Event   `json:"event"`
	Details Details `json:"details"`
	Content Content `json:"content"`
}

// BenchmarkCodec is why records are not JSON: encode + decode of one Plivo
// callback event and of one message state, binary vs encoding/json, in one
// run (compare ns/op of the codec=binary and codec=json rows).
func BenchmarkCodec(b *testing.B) {
	ev, keys := codecEvent()
	m, refs := codecMessage()
	b.Run("record=event/codec=binary", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = encodeEvent(buf[:0], &ev, keys)
			if _, err := decodeEvent(1, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("record=event/codec=json", func(b *testing.B) {
		b.ReportAllocs()
		in := jsonEvent{Event: ev, Details: ev.Details, Content: ev.Content}
		for b.Loop() {
			buf, err := json.Marshal(&in)
			if err != nil {
				b.Fatal(err)
			}
			var out jsonEvent
			if err := json.Unmarshal(buf, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("record=message/codec=binary", func(b *testing.B) {
		b.ReportAllocs()
		var (
			buf []byte
			out Message
			r   eventIndex
		)
		for b.Loop() {
			buf = encodeMessage(buf[:0], &m, &refs)
			if err := decodeMessage(buf, &out, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("record=message/codec=json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, err := json.Marshal(&m)
			if err != nil {
				b.Fatal(err)
			}
			var out Message
			if err := json.Unmarshal(buf, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
