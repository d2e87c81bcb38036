package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"

	"plivo-dlr/storage"
)

// MaxCallbackBody is the largest callback body accepted (413 above). Plivo's
// are under 2 KiB.
const MaxCallbackBody = 64 << 10

// Payload errors callers branch on.
var (
	// ErrMalformed means a callback could not be turned into an event (400).
	ErrMalformed = errors.New("malformed callback")
	// ErrBodyTooLarge means a callback body exceeds MaxCallbackBody (413).
	ErrBodyTooLarge = errors.New("callback body too large")
)

// FieldLimits are the longest values, in bytes after trimming, accepted for
// the documented callback fields; a longer one makes the callback malformed
// (400 naming the field). They are generous next to what Plivo sends and
// keep a signed but hostile callback from planting kilobytes in the message
// state, the indexes and the hourly stats:
//
//   - MessageUUID, ParentMessageUUID: 36, a UUID's canonical form.
//   - Status: 32 ("undelivered", the longest Plivo status, has 11).
//   - ErrorCode: 8 (Plivo's codes have 2 to 4 digits).
//   - From, To: 32 (E.164 has at most 15 digits; sender IDs 11 characters;
//     a number written with spaces and punctuation still fits).
//   - Type: 16 ("sms", "mms", "whatsapp").
//   - Units, TotalRate, TotalAmount, PartInfo: 32 ("0.00450", "2 of 3").
//   - MCC, MNC: 8 (three digits each).
//   - Sequence: 20 (an int64; the parse refuses more anyway).
//
// The four timestamps are not capped: an unparseable one is kept as
// received in Payload and left empty, never refused (see ParseCallback).
var FieldLimits = map[string]int{
	"MessageUUID": 36, "ParentMessageUUID": 36,
	"Status":    32,
	"ErrorCode": 8,
	"From":      32, "To": 32,
	"Type":  16,
	"Units": 32, "TotalRate": 32, "TotalAmount": 32, "PartInfo": 32,
	"MCC": 8, "MNC": 8,
	"Sequence": 20,
}

// fieldOrder is FieldLimits' keys in a fixed order, so the field an error
// names does not depend on map iteration.
var fieldOrder = []string{"MessageUUID", "Status", "ErrorCode", "Sequence", "From", "To", "Type", "Units",
	"TotalRate", "TotalAmount", "MCC", "MNC", "ParentMessageUUID", "PartInfo"}

// IsMessageUUID reports whether s is a UUID in canonical form
// (8-4-4-4-12 hex digits, either case): the only form Plivo gives a
// MessageUUID. Anything else ("../x", spaces, "%", markup, control
// characters) did not come from Plivo, and would not survive a URL path.
func IsMessageUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// CallbackParams turns a request into parameters: for GET the query; for
// POST a form-urlencoded body (also assumed when there is no content type)
// or a JSON object whose string, number and boolean values are stringified
// (null becomes ""; nested values are refused). contentType may carry
// parameters such as ";charset=utf-8". For POST, rawQuery is ignored: a query
// in the callback URL is the operator's (?tenant=acme), not event fields.
// Errors wrap ErrMalformed (or ErrBodyTooLarge) with a plain reason.
func CallbackParams(method, contentType string, body []byte, rawQuery string) (url.Values, error) {
	switch method {
	case "GET":
		params, err := url.ParseQuery(rawQuery)
		if err != nil {
			return nil, fmt.Errorf("%w: query is not valid URL encoding", ErrMalformed)
		}
		return params, nil
	case "POST":
	default:
		return nil, fmt.Errorf("%w: unsupported method %s", ErrMalformed, strconv.Quote(method))
	}
	if len(body) > MaxCallbackBody {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBodyTooLarge, len(body), MaxCallbackBody)
	}
	mediaType := "application/x-www-form-urlencoded"
	// Plivo's exact content type skips the parameter parser (and its map).
	if contentType != mediaType && strings.TrimSpace(contentType) != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, fmt.Errorf("%w: invalid content type", ErrMalformed)
		}
		mediaType = mt
	}
	switch mediaType {
	case "application/x-www-form-urlencoded":
		// Go refuses ';' as a separator and bad escapes; Plivo encodes both,
		// so such a body did not come from Plivo intact.
		params, err := parseForm(string(body))
		if err != nil {
			return nil, fmt.Errorf("%w: body is not valid form encoding", ErrMalformed)
		}
		return params, nil
	case "application/json":
		return jsonParams(body)
	}
	return nil, fmt.Errorf("%w: unsupported content type %s", ErrMalformed, mediaType)
}

// jsonParams flattens a JSON object of scalars into parameters.
func jsonParams(body []byte) (url.Values, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		if err == nil || errors.As(err, new(*json.UnmarshalTypeError)) {
			return nil, fmt.Errorf("%w: body is not a JSON object", ErrMalformed)
		}
		return nil, fmt.Errorf("%w: body is not valid JSON", ErrMalformed)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: body is not valid JSON", ErrMalformed)
	}
	params := make(url.Values, len(obj))
	for k, v := range obj {
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case json.Number:
			s = v.String()
		case bool:
			s = strconv.FormatBool(v)
		case nil:
		default:
			return nil, fmt.Errorf("%w: field %s is not a string, number or boolean", ErrMalformed, quoteShort(k))
		}
		params.Set(k, s)
	}
	return params, nil
}

// ParseCallback builds a callback event from Plivo's parameters. Payload keeps
// every field as received (first value), unknown ones included; the
// documented fields are also normalised into the event, trimmed. Status keeps
// its received spelling unless it is a known status in another case, which is
// lowercased. Sequence drives state folding, so a bad one makes the callback
// malformed, as does a field over its FieldLimits or a MessageUUID that is
// not a UUID. A timestamp that does not parse is left empty (nil) with its
// raw value in Payload, never refused: Plivo retries a 400 three times and
// then drops the whole report; ParseCallbackNotes says which ones. A
// timestamp outside MinTime .. MaxTime is refused. Units is only shown, so
// a bad value is kept in Payload and read as 0 (unknown). ReceivedAt is left
// for the caller to stamp.
func ParseCallback(params url.Values) (storage.Event, error) {
	ev, _, err := ParseCallbackNotes(params)
	return ev, err
}

// TimeFields are the callback's timestamp fields, in the order Plivo fills them.
var TimeFields = []string{"MessageTime", "QueuedTime", "SentTime", "DeliveryReportTime"}

// ParseNotes is what ParseCallbackNotes noticed without refusing the callback.
type ParseNotes struct {
	// UnparsedTimes names the timestamp fields (MessageTime, QueuedTime,
	// SentTime, DeliveryReportTime) whose value is not a spelling ParseTime
	// reads; the event has them empty, Payload as received.
	UnparsedTimes []string
}

// ParseCallbackNotes is ParseCallback that also reports what it left out.
func ParseCallbackNotes(params url.Values) (storage.Event, ParseNotes, error) {
	get := func(k string) string { return strings.TrimSpace(params.Get(k)) }
	ev := storage.Event{
		Source:      storage.SourceCallback,
		MessageUUID: get("MessageUUID"),
		Status:      NormaliseStatus(get("Status")),
		ErrorCode:   get("ErrorCode"),
		Payload:     make(map[string]string, len(params)),
		Details: storage.Details{
			From:              get("From"),
			To:                get("To"),
			Type:              get("Type"),
			TotalRate:         get("TotalRate"),
			TotalAmount:       get("TotalAmount"),
			MCC:               get("MCC"),
			MNC:               get("MNC"),
			ParentMessageUUID: get("ParentMessageUUID"),
			PartInfo:          get("PartInfo"),
		},
	}
	for k, vs := range params {
		if len(vs) > 0 {
			ev.Payload[k] = vs[0]
		} else {
			ev.Payload[k] = ""
		}
	}
	if ev.MessageUUID == "" {
		return storage.Event{}, ParseNotes{}, fmt.Errorf("%w: missing MessageUUID", ErrMalformed)
	}
	if ev.Status == "" {
		return storage.Event{}, ParseNotes{}, fmt.Errorf("%w: missing Status", ErrMalformed)
	}
	for _, name := range fieldOrder {
		if v := get(name); len(v) > FieldLimits[name] {
			return storage.Event{}, ParseNotes{}, fmt.Errorf("%w: %s longer than %d bytes", ErrMalformed, name, FieldLimits[name])
		}
	}
	if !IsMessageUUID(ev.MessageUUID) {
		return storage.Event{}, ParseNotes{}, fmt.Errorf("%w: MessageUUID %s is not a UUID", ErrMalformed, quoteShort(ev.MessageUUID))
	}
	if s := get("Sequence"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return storage.Event{}, ParseNotes{}, fmt.Errorf("%w: Sequence %s is not a non-negative integer", ErrMalformed, quoteShort(s))
		}
		ev.Sequence = n
	}
	if n, err := strconv.Atoi(get("Units")); err == nil && n >= 0 {
		ev.Units = n
	}
	var notes ParseNotes
	// The four times share one allocation instead of one each.
	var times *[4]time.Time
	for i, f := range [...]struct {
		name string
		dst  **time.Time
	}{
		{"MessageTime", &ev.MessageTime},
		{"QueuedTime", &ev.QueuedTime},
		{"SentTime", &ev.SentTime},
		{"DeliveryReportTime", &ev.DeliveryReportTime},
	} {
		t, err := parseTimeValue(get(f.name))
		if errors.Is(err, ErrTimeOutOfRange) {
			return storage.Event{}, ParseNotes{}, fmt.Errorf("%w: %s %s is outside 1677-09-21 .. 2262-04-11", ErrMalformed, f.name, quoteShort(get(f.name)))
		}
		if err != nil {
			notes.UnparsedTimes = append(notes.UnparsedTimes, f.name)
			continue
		}
		if t.IsZero() {
			continue
		}
		if times == nil {
			times = new([4]time.Time)
		}
		times[i] = t
		*f.dst = &times[i]
	}
	if err := ev.Validate(); err != nil {
		return storage.Event{}, ParseNotes{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return ev, notes, nil
}

// NormaliseStatus lowercases a known status received in another case and
// keeps anything else as received.
func NormaliseStatus(s string) string {
	if l := strings.ToLower(s); l != s && storage.StatusRank(l) > 0 {
		return l
	}
	return s
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const limit = 40
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}
