package protocol

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"plivo-dlr/storage"
)

// maxInboundMedia bounds the media URLs kept from one inbound message
// (Plivo delivers at most 10 per MMS); more are left in the payload only.
const maxInboundMedia = 20

// ParsePosted turns the parameters posted to the callback path into an
// event: a body with Status is a delivery-status callback (ParseCallback), a
// body with no Status but From, To and one of Text, Body or MediaCount is an
// inbound message (ParseInbound). Anything else is malformed, the error
// naming what is missing.
func ParsePosted(params url.Values) (storage.Event, error) {
	ev, _, err := ParsePostedNotes(params)
	return ev, err
}

// ParsePostedNotes is ParsePosted that also says what was read leniently
// (see ParseCallbackNotes); an inbound message has no such notes.
func ParsePostedNotes(params url.Values) (storage.Event, ParseNotes, error) {
	// Status first: it is the hot path, and a body with Status is a report
	// whatever else it carries.
	if _, ok := params["Status"]; ok {
		return ParseCallbackNotes(params)
	}
	if missing := inboundMissing(params); missing != "" {
		return storage.Event{}, ParseNotes{}, fmt.Errorf("%w: missing Status (a delivery report) or %s (an inbound message)", ErrMalformed, missing)
	}
	ev, err := ParseInbound(params)
	return ev, ParseNotes{}, err
}

// inboundMissing names the fields an inbound message lacks, "" for none.
func inboundMissing(params url.Values) string {
	var missing []string
	for _, k := range []string{"From", "To"} {
		if _, ok := params[k]; !ok {
			missing = append(missing, k)
		}
	}
	_, text := params["Text"]
	_, body := params["Body"]
	_, media := params["MediaCount"]
	if !text && !body && !media {
		missing = append(missing, "Text, Body or MediaCount")
	}
	return strings.Join(missing, " and ")
}

// ParseInbound builds the event of an inbound message (SMS, MMS or
// WhatsApp) from Plivo's parameters: status received, source inbound, the
// documented fields normalised (trimmed) and every field, unknown ones and
// WhatsApp's ContentType/MimeType included, kept in Payload as received.
// The message's text is Text (SMS) or else Body (MMS, WhatsApp), as
// received; its media are the Media<N> fields in the order of N. The intent
// (MessageIntent) stays in the payload, read by storage.IntentOf. Units
// and MediaCount are shown only, so a bad value reads as 0.
func ParseInbound(params url.Values) (storage.Event, error) {
	get := func(k string) string { return strings.TrimSpace(params.Get(k)) }
	ev := storage.Event{
		Source:      storage.SourceInbound,
		Status:      storage.StatusReceived,
		MessageUUID: get("MessageUUID"),
		Payload:     make(map[string]string, len(params)),
		Details: storage.Details{
			From:        get("From"),
			To:          get("To"),
			Type:        strings.ToLower(get("Type")),
			TotalRate:   get("TotalRate"),
			TotalAmount: get("TotalAmount"),
		},
	}
	for k, vs := range params {
		if len(vs) > 0 {
			ev.Payload[k] = vs[0]
		} else {
			ev.Payload[k] = ""
		}
	}
	switch {
	case ev.MessageUUID == "":
		return storage.Event{}, fmt.Errorf("%w: missing MessageUUID", ErrMalformed)
	case ev.From == "":
		return storage.Event{}, fmt.Errorf("%w: inbound message without From", ErrMalformed)
	case ev.To == "":
		return storage.Event{}, fmt.Errorf("%w: inbound message without To", ErrMalformed)
	}
	// The same bounds as a delivery report's (FieldLimits), for the fields
	// the two share; Text and Body are bounded by the body limit only.
	for _, name := range fieldOrder {
		if v := get(name); len(v) > FieldLimits[name] {
			return storage.Event{}, fmt.Errorf("%w: %s longer than %d bytes", ErrMalformed, name, FieldLimits[name])
		}
	}
	if !IsMessageUUID(ev.MessageUUID) {
		return storage.Event{}, fmt.Errorf("%w: MessageUUID %s is not a UUID", ErrMalformed, quoteShort(ev.MessageUUID))
	}
	if n, err := strconv.Atoi(get("Units")); err == nil && n >= 0 {
		ev.Units = n
	}
	ev.Text = params.Get("Text")
	if ev.Text == "" {
		ev.Text = params.Get("Body")
	}
	ev.MediaURLs = inboundMedia(params)
	if ev.Type == "" {
		// Plivo names the type; a body without one is told by its media.
		ev.Type = "sms"
		if len(ev.MediaURLs) > 0 {
			ev.Type = "mms"
		}
	}
	if err := ev.Validate(); err != nil {
		return storage.Event{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return ev, nil
}

// inboundMedia returns the non-empty Media<N> values (N decimal digits) in
// the order of N, at most maxInboundMedia.
func inboundMedia(params url.Values) []string {
	type item struct {
		n   int
		url string
	}
	var items []item
	for k, vs := range params {
		rest, ok := strings.CutPrefix(k, "Media")
		if !ok || rest == "" || len(rest) > 4 || len(vs) == 0 {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 || strconv.Itoa(n) != rest {
			continue // MediaCount, Media01, Media-1
		}
		if u := strings.TrimSpace(vs[0]); u != "" {
			items = append(items, item{n, u})
		}
	}
	slices.SortFunc(items, func(a, b item) int { return a.n - b.n })
	if len(items) > maxInboundMedia {
		items = items[:maxInboundMedia]
	}
	var urls []string
	for _, it := range items {
		urls = append(urls, it.url)
	}
	return urls
}
