package protocol

import (
	"crypto/hmac"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Header layouts the signature fuzzer puts its signature and nonce in.
const (
	fuzzV2 = iota
	fuzzMaV2
	fuzzV3
	fuzzMaV3
	fuzzV3AndV2
	fuzzLayouts
)

func fuzzHeaders(layout uint8, sig, nonce string) SignatureHeaders {
	switch layout % fuzzLayouts {
	case fuzzV2:
		return SignatureHeaders{V2: sig, V2Nonce: nonce}
	case fuzzMaV2:
		return SignatureHeaders{MaV2: sig, V2Nonce: nonce}
	case fuzzV3:
		return SignatureHeaders{V3: sig, V3Nonce: nonce}
	case fuzzMaV3:
		return SignatureHeaders{MaV3: sig, V3Nonce: nonce}
	default:
		return SignatureHeaders{V3: sig, V3Nonce: nonce, V2: sig, V2Nonce: nonce + "2"}
	}
}

// FuzzVerifySignature checks that Verify never panics and accepts a request
// only when a signature it carries equals one computed by our own compute
// functions with a configured token: plivo-go's string, or the trailing-dot
// variant for V3.
func FuzzVerifySignature(f *testing.F) {
	vectors := loadSignatureVectors(f)
	seen := map[string]bool{}
	var tokens []string
	for _, v := range vectors {
		if !seen[v.AuthToken] {
			seen[v.AuthToken] = true
			tokens = append(tokens, v.AuthToken)
		}
		layout := uint8(fuzzV2)
		if v.Version == "v3" {
			layout = fuzzV3
		}
		body := vectorValues(v.Params).Encode()
		f.Add(v.Method, v.URL, v.Nonce, v.ExpectedSignature, body, layout)
		f.Add(v.Method, v.URL, v.Nonce, v.ExpectedSignature+","+tamperSignature(v.ExpectedSignature), body, layout+1)
		f.Add(v.Method, v.URL+"x", v.Nonce, v.ExpectedSignature, body, uint8(fuzzV3AndV2))
	}
	verifier := NewSignatureVerifier(tokens...)

	f.Fuzz(func(t *testing.T, method, rawURL, nonce, sig, body string, layout uint8) {
		params, _ := url.ParseQuery(body)
		r := SignedRequest{Method: method, URL: rawURL, Params: params, Headers: fuzzHeaders(layout, sig, nonce)}
		got, err := verifier.Verify(r)
		if err != nil {
			if errors.Is(err, ErrBadSignature) || errors.Is(err, ErrMissingSignature) {
				return
			}
			if _, perr := url.Parse(rawURL); perr == nil {
				t.Fatalf("error %v is neither a signature error nor a URL error", err)
			}
			return
		}
		h := trimHeaders(r.Headers)
		hasV3 := h.V3 != "" || h.MaV3 != "" || h.V3Nonce != ""
		if hasV3 != (got.Scheme == SchemeV3) {
			t.Fatalf("scheme %s accepted with V3 headers present=%v", got.Scheme, hasV3)
		}
		var provided []string
		var usedNonce string
		if got.Scheme == SchemeV3 {
			provided, usedNonce = splitSignatures(h.V3, h.MaV3), h.V3Nonce
		} else {
			provided, usedNonce = splitSignatures(h.V2, h.MaV2), h.V2Nonce
		}
		if usedNonce == "" || len(got.Nonces) == 0 || got.Nonces[0] != usedNonce {
			t.Fatalf("accepted with nonce %q, verification %+v", usedNonce, got)
		}
		u, _ := url.Parse(rawURL)
		for _, tok := range tokens {
			var computed []string
			if got.Scheme == SchemeV3 {
				s, err := ComputeSignatureV3(tok, method, rawURL, usedNonce, params)
				if err != nil {
					t.Fatal(err)
				}
				computed = append(computed, s)
				for _, f := range allV3Forms {
					computed = append(computed, hmacBase64([]byte(tok), signedStringV3(u, method, params, usedNonce, f)))
				}
			} else {
				s, err := ComputeSignatureV2(tok, rawURL, usedNonce)
				if err != nil {
					t.Fatal(err)
				}
				computed = append(computed, s, hmacBase64([]byte(tok), u.Scheme+"://"+u.Host+u.EscapedPath()+usedNonce))
			}
			for _, c := range computed {
				for _, p := range provided {
					if hmac.Equal([]byte(c), []byte(p)) {
						return
					}
				}
			}
		}
		t.Fatalf("accepted %+v although no provided signature %q equals a computed one", r, provided)
	})
}

// FuzzParseCallback checks that payload parsing (reports and inbound
// messages, as the callback path parses them) never panics, fails only
// with ErrMalformed or ErrBodyTooLarge, and yields valid events.
func FuzzParseCallback(f *testing.F) {
	for _, c := range loadCallbackFixtures(f) {
		f.Add("POST", c.ContentType, c.Body, "tenant=acme")
		f.Add("GET", "", "", c.Body)
	}
	f.Add("POST", "application/json", `{"MessageUUID":"u1","Status":"delivered","Sequence":3,"Units":1.5,"X":null}`, "")
	f.Add("POST", "application/json; charset=utf-8", `{"MessageUUID":"u1","Status":{"a":1}}`, "")
	f.Add("POST", "text/plain", "MessageUUID=u&Status=sent", "")
	f.Add("POST", "", "MessageUUID=u&Status=sent&Sequence=-1&SentTime=2024-05-01+10:00:00", "")
	// Inbound messages share the callback path (ParsePosted).
	f.Add("POST", "", "MessageUUID=u&From=14155550123&To=14155550199&Text=STOP&MessageIntent=optout&Type=sms", "")
	f.Add("POST", "", "MessageUUID=u&From=1&To=2&Body=x&MediaCount=2&Media1=https%3A%2F%2Fm%2Fa&Media10=b&Media01=c", "")
	f.Add("POST", "application/json", `{"MessageUUID":"u","From":"1","To":"2","Body":"hi","Type":"whatsapp","ContentType":"text"}`, "")
	f.Add("GET", "", "", "MessageUUID=u&From=1&To=2")

	f.Fuzz(func(t *testing.T, method, contentType, body, rawQuery string) {
		params, err := CallbackParams(method, contentType, []byte(body), rawQuery)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBodyTooLarge) {
				t.Fatalf("CallbackParams error %v wraps neither ErrMalformed nor ErrBodyTooLarge", err)
			}
			return
		}
		ev, err := ParsePosted(params)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParsePosted error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if err := ev.Validate(); err != nil {
			t.Fatalf("accepted event fails Validate: %v (%+v)", err, ev)
		}
		_, hasStatus := params["Status"]
		wantSource := "callback"
		if !hasStatus {
			wantSource = "inbound"
			if ev.Status != "received" || ev.From == "" || ev.To == "" || len(ev.MediaURLs) > maxInboundMedia {
				t.Fatalf("accepted inbound event %+v does not match params %v", ev, params)
			}
		}
		if ev.MessageUUID != strings.TrimSpace(params.Get("MessageUUID")) || ev.Source != wantSource || ev.Sequence < 0 {
			t.Fatalf("accepted event %+v does not match params %v", ev, params)
		}
		for k := range params {
			if ev.Payload[k] != params.Get(k) {
				t.Fatalf("payload[%q] = %q, want %q", k, ev.Payload[k], params.Get(k))
			}
		}
	})
}

// allV3Forms is every combination of the SDKs' V3 spellings.
var allV3Forms = func() []v3Form {
	var out []v3Form
	for _, raw := range []bool{false, true} {
		for _, all := range []bool{false, true} {
			for _, dot := range []bool{false, true} {
				out = append(out, v3Form{rawPath: raw, allValues: all, keepDots: dot})
			}
		}
	}
	return out
}()

// FuzzParseTime checks that the fast path for Plivo's documented spelling
// changes no result: parseTimeValue gives what the layouts alone give, the
// same time or an error for the same inputs.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"2024-05-01 10:00:00", "2024-05-01 10:00:00.123456", "2024-05-01 10:00:00.1",
		"2024-05-01 10:00:00.123456789", "2024-05-01 10:00:00.1234567891", "2024-05-01 10:00:00.",
		"2024-02-29 23:59:59", "2023-02-29 00:00:00", "2024-04-31 00:00:00", "2024-13-01 00:00:00",
		"2024-05-01 24:00:00", "2024-05-01 10:60:00", "2024-05-01 10:00:60", "0000-01-01 00:00:00",
		"1677-09-21 00:12:43.145224192", "1677-09-21 00:12:43.145224191", "2262-04-11 23:47:16.854775807",
		"2262-04-11 23:47:16.854775808", "9999-12-31 23:59:59", "2024-05-01 10:00:00,5",
		"2024-05-01T10:00:00Z", "2024-05-01 10:00:00+05:30", "2024-05-01 10:00:00 UTC", "+024-05-01 10:00:00",
		"2024-5-01 10:00:00.12", "2024-05-01 10:00:00.12a", "2024-05-01 1:00:00.1234",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, gotErr := parseTimeValue(s)
		if s == "" {
			return
		}
		want, wantErr := parseTimeLayouts(s)
		if (gotErr == nil) != (wantErr == nil) || !got.Equal(want) || got.Location() != want.Location() {
			t.Fatalf("parseTimeValue(%q) = %v, %v; the layouts give %v, %v", s, got, gotErr, want, wantErr)
		}
		if fast, ok := parseDocumentedTime(s); ok {
			if ref, err := time.ParseInLocation(timeLayouts[0], s, time.UTC); err != nil || !fast.Equal(ref) {
				t.Fatalf("parseDocumentedTime(%q) = %v; time.ParseInLocation gives %v, %v", s, fast, ref, err)
			}
		}
	})
}
