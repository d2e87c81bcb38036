package protocol

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// signatureVector is one case of app/protocol/testdata/plivo/signature-vectors.json.
type signatureVector struct {
	Name              string            `json:"name"`
	Version           string            `json:"version"`
	Method            string            `json:"method"`
	URL               string            `json:"url"`
	Nonce             string            `json:"nonce"`
	AuthToken         string            `json:"auth_token"`
	Params            map[string]string `json:"params"`
	SignedString      string            `json:"signed_string"`
	ExpectedSignature string            `json:"expected_signature"`
	SignatureHeader   string            `json:"signature_header"`
	Note              string            `json:"note"`
}

// callbackFixture is one case of app/protocol/testdata/plivo/callbacks.json.
type callbackFixture struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Body        string `json:"body"`
	Expected    struct {
		MessageUUID string `json:"message_uuid"`
		Status      string `json:"status"`
		ErrorCode   string `json:"error_code"`
	} `json:"expected"`
	Note           string `json:"note"`
	ExampleRequest struct {
		Method        string            `json:"method"`
		URL           string            `json:"url"`
		AuthToken     string            `json:"auth_token"`
		MainAuthToken string            `json:"main_auth_token"`
		Headers       map[string]string `json:"headers"`
	} `json:"example_request"`
}

// plivoTestdata returns the path of a file in the Plivo test data kept in
// the package's testdata/plivo (computed with Plivo's own SDK; see its README).
func plivoTestdata(tb testing.TB, name string) string {
	tb.Helper()
	p := filepath.Join("testdata", "plivo", name)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("Plivo test data %s: %v", name, err)
	}
	return p
}

func loadPlivoJSON(tb testing.TB, name string, v any) {
	tb.Helper()
	b, err := os.ReadFile(plivoTestdata(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatalf("decode %s: %v", name, err)
	}
}

func loadSignatureVectors(tb testing.TB) []signatureVector {
	tb.Helper()
	var vs []signatureVector
	loadPlivoJSON(tb, "signature-vectors.json", &vs)
	if len(vs) == 0 {
		tb.Fatal("signature-vectors.json holds no vectors")
	}
	return vs
}

func loadCallbackFixtures(tb testing.TB) []callbackFixture {
	tb.Helper()
	var cs []callbackFixture
	loadPlivoJSON(tb, "callbacks.json", &cs)
	if len(cs) == 0 {
		tb.Fatal("callbacks.json holds no callbacks")
	}
	return cs
}

func vectorValues(m map[string]string) url.Values {
	v := url.Values{}
	for k, s := range m {
		v.Set(k, s)
	}
	return v
}

// vectorRequest builds the request a vector describes, the signature in the
// header the scheme uses.
func vectorRequest(v signatureVector) SignedRequest {
	sig := v.ExpectedSignature
	if v.SignatureHeader != "" {
		sig = v.SignatureHeader
	}
	r := SignedRequest{Method: v.Method, URL: v.URL, Params: vectorValues(v.Params)}
	if v.Version == "v2" {
		r.Params = nil
		r.Headers = SignatureHeaders{V2: sig, V2Nonce: v.Nonce}
	} else {
		r.Headers = SignatureHeaders{V3: sig, V3Nonce: v.Nonce}
	}
	return r
}

// withQueryParams moves GET parameters into the URL's query, as the server
// builds SignedRequest for GET.
func withQueryParams(t *testing.T, rawURL string, params map[string]string) string {
	t.Helper()
	if len(params) == 0 {
		return rawURL
	}
	extra := vectorValues(params).Encode()
	if strings.Contains(rawURL, "?") {
		return rawURL + "&" + extra
	}
	return rawURL + "?" + extra
}

// tamperSignature changes one character of a base64 signature.
func tamperSignature(sig string) string {
	b := []byte(sig)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestSignatureVectors(t *testing.T) {
	for _, v := range loadSignatureVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			u, err := url.Parse(v.URL)
			if err != nil {
				t.Fatal(err)
			}
			var signed, sig string
			if v.Version == "v2" {
				signed = signedStringV2(u, v.Nonce)
				sig, err = ComputeSignatureV2(v.AuthToken, v.URL, v.Nonce)
			} else {
				signed = signedStringV3(u, v.Method, vectorValues(v.Params), v.Nonce, v3Form{})
				sig, err = ComputeSignatureV3(v.AuthToken, v.Method, v.URL, v.Nonce, vectorValues(v.Params))
			}
			if err != nil {
				t.Fatal(err)
			}
			if signed != v.SignedString {
				t.Errorf("signed string\n got %q\nwant %q", signed, v.SignedString)
			}
			if sig != v.ExpectedSignature {
				t.Errorf("signature: got %s, want %s", sig, v.ExpectedSignature)
			}

			verifier := NewSignatureVerifier("some-other-token", v.AuthToken)
			r := vectorRequest(v)
			got, err := verifier.Verify(r)
			if v.Nonce == "" {
				if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "empty nonce") {
					t.Fatalf("empty nonce: got %v, want ErrBadSignature about an empty nonce", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("verify: got %v, want nil", err)
			}
			if got.Scheme != v.Version || len(got.Nonces) != 1 || got.Nonces[0] != v.Nonce {
				t.Errorf("verification: got %+v, want scheme %s nonces [%s]", got, v.Version, v.Nonce)
			}

			// The Ma- header is checked the same way, with any token.
			ma := r
			if v.Version == "v2" {
				ma.Headers.V2, ma.Headers.MaV2 = "", r.Headers.V2
			} else {
				ma.Headers.V3, ma.Headers.MaV3 = "", r.Headers.V3
			}
			if _, err := verifier.Verify(ma); err != nil {
				t.Errorf("verify via Ma header: got %v, want nil", err)
			}

			if v.Method == "GET" {
				get := r
				get.URL, get.Params = withQueryParams(t, v.URL, v.Params), nil
				if _, err := verifier.Verify(get); err != nil {
					t.Errorf("verify GET with params in the URL %s: got %v, want nil", get.URL, err)
				}
			}

			changedURL := *u
			changedURL.Path += "/changed"
			bad := map[string]struct {
				r        SignedRequest
				verifier *SignatureVerifier
			}{
				"tampered signature": {r: withSignature(r, v.Version, tamperSignature(v.ExpectedSignature)), verifier: verifier},
				"wrong token":        {r: r, verifier: NewSignatureVerifier("MzY2ZjQxZTg5NjFiY2I2NWE1OTJkNWFlNzBiZjE5")},
				"changed URL":        {r: withURL(r, changedURL.String()), verifier: verifier},
				"changed nonce":      {r: withNonce(r, v.Version, v.Nonce+"1"), verifier: verifier},
			}
			if v.Version == "v3" && len(v.Params) > 0 {
				p := vectorValues(v.Params)
				for k := range p {
					p.Set(k, p.Get(k)+"x")
					break
				}
				changed := r
				changed.Params = p
				if v.Method == "GET" {
					changed.URL, changed.Params = withQueryParams(t, v.URL, firstValues(p)), nil
				}
				bad["changed param"] = struct {
					r        SignedRequest
					verifier *SignatureVerifier
				}{changed, verifier}
			}
			for name, c := range bad {
				if _, err := c.verifier.Verify(c.r); !errors.Is(err, ErrBadSignature) {
					t.Errorf("%s: got %v, want ErrBadSignature", name, err)
				}
			}
		})
	}
}

func withSignature(r SignedRequest, version, sig string) SignedRequest {
	if version == "v2" {
		r.Headers.V2 = sig
	} else {
		r.Headers.V3 = sig
	}
	return r
}

func withNonce(r SignedRequest, version, nonce string) SignedRequest {
	if version == "v2" {
		r.Headers.V2Nonce = nonce
	} else {
		r.Headers.V3Nonce = nonce
	}
	return r
}

func withURL(r SignedRequest, u string) SignedRequest {
	r.URL = u
	return r
}

// TestSignatureV3TrailingDot pins both SDKs' strings for POST with a query
// string where they differ, and that either signature verifies.
func TestSignatureV3TrailingDot(t *testing.T) {
	const token, nonce = "MzY2ZjQxZTg5NjFiY2I2NWE1OTJkNWFlNzBiZjE4", "12121212121212121212"
	tests := []struct {
		name, url string
		params    map[string]string
		goStr     string
		pyStr     string
	}{
		{
			name:   "last param value ends in a dot",
			url:    "https://hooks.example.com/cb?tenant=acme",
			params: map[string]string{"MessageUUID": "u1", "Status": "sent", "Text": "Hi."},
			goStr:  "https://hooks.example.com/cb?tenant=acme.MessageUUIDu1StatussentTextHi." + nonce,
			pyStr:  "https://hooks.example.com/cb?tenant=acme.MessageUUIDu1StatussentTextHi.." + nonce,
		},
		{
			name:  "no params, query value ends in a dot",
			url:   "https://hooks.example.com/cb?v=1.",
			goStr: "https://hooks.example.com/cb?v=1." + nonce,
			pyStr: "https://hooks.example.com/cb?v=1.." + nonce,
		},
		{
			name:   "agreeing case",
			url:    "https://hooks.example.com/cb?tenant=acme",
			params: map[string]string{"Status": "sent"},
			goStr:  "https://hooks.example.com/cb?tenant=acme.Statussent." + nonce,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, _ := url.Parse(tt.url)
			got := signedStringsV3(u, "POST", vectorValues(tt.params), nonce)
			want := []string{tt.goStr}
			if tt.pyStr != "" {
				want = append(want, tt.pyStr)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("signed strings\n got %q\nwant %q", got, want)
			}
			goSig, _ := ComputeSignatureV3(token, "POST", tt.url, nonce, vectorValues(tt.params))
			if want := hmacBase64([]byte(token), tt.goStr); goSig != want {
				t.Errorf("ComputeSignatureV3: got %s, want %s (plivo-go's string)", goSig, want)
			}
			for _, s := range want {
				r := SignedRequest{Method: "POST", URL: tt.url, Params: vectorValues(tt.params),
					Headers: SignatureHeaders{V3: hmacBase64([]byte(token), s), V3Nonce: nonce}}
				if _, err := NewSignatureVerifier(token).Verify(r); err != nil {
					t.Errorf("verify signature of %q: got %v, want nil", s, err)
				}
			}
		})
	}
}

func exampleHeaders(c callbackFixture) SignatureHeaders {
	h := c.ExampleRequest.Headers
	return SignatureHeaders{
		V2: h[HeaderSignatureV2], MaV2: h[HeaderSignatureMaV2], V2Nonce: h[HeaderSignatureV2Nonce],
		V3: h[HeaderSignatureV3], MaV3: h[HeaderSignatureMaV3], V3Nonce: h[HeaderSignatureV3Nonce],
	}
}

// exampleRequest returns the fixture's signed request, its body parsed the
// way the server parses it.
func exampleRequest(t *testing.T, c callbackFixture) SignedRequest {
	t.Helper()
	u, err := url.Parse(c.ExampleRequest.URL)
	if err != nil {
		t.Fatal(err)
	}
	params, err := CallbackParams(c.ExampleRequest.Method, c.ContentType, []byte(c.Body), u.RawQuery)
	if err != nil {
		t.Fatalf("CallbackParams: %v", err)
	}
	return SignedRequest{Method: c.ExampleRequest.Method, URL: c.ExampleRequest.URL, Params: params, Headers: exampleHeaders(c)}
}

func TestSignatureCallbackExamples(t *testing.T) {
	for _, c := range loadCallbackFixtures(t) {
		t.Run(c.Name, func(t *testing.T) {
			sub, main := c.ExampleRequest.AuthToken, c.ExampleRequest.MainAuthToken
			both := NewSignatureVerifier(sub, main)
			r := exampleRequest(t, c)
			h := r.Headers

			got, err := both.Verify(r)
			if err != nil {
				t.Fatalf("all headers: got %v, want nil", err)
			}
			if want := []string{h.V3Nonce, h.V2Nonce}; got.Scheme != SchemeV3 || strings.Join(got.Nonces, ",") != strings.Join(want, ",") {
				t.Errorf("all headers: got %+v, want scheme v3 nonces %v", got, want)
			}

			tests := []struct {
				name     string
				verifier *SignatureVerifier
				headers  SignatureHeaders
				scheme   string // "" means rejected
				missing  bool   // rejected with ErrMissingSignature
			}{
				{name: "v3 only", verifier: both, headers: SignatureHeaders{V3: h.V3, V3Nonce: h.V3Nonce}, scheme: SchemeV3},
				{name: "ma-v3 only", verifier: both, headers: SignatureHeaders{MaV3: h.MaV3, V3Nonce: h.V3Nonce}, scheme: SchemeV3},
				{name: "v2 only", verifier: both, headers: SignatureHeaders{V2: h.V2, V2Nonce: h.V2Nonce}, scheme: SchemeV2},
				{name: "ma-v2 only", verifier: both, headers: SignatureHeaders{MaV2: h.MaV2, V2Nonce: h.V2Nonce}, scheme: SchemeV2},
				{name: "v3 by subaccount token alone", verifier: NewSignatureVerifier(sub), headers: h, scheme: SchemeV3},
				{name: "ma-v3 by main token alone", verifier: NewSignatureVerifier("", main), headers: h, scheme: SchemeV3},
				{name: "ma-v3 needs the main token", verifier: NewSignatureVerifier(sub), headers: SignatureHeaders{MaV3: h.MaV3, V3Nonce: h.V3Nonce}},
				{name: "v2 needs the subaccount token", verifier: NewSignatureVerifier(main), headers: SignatureHeaders{V2: h.V2, V2Nonce: h.V2Nonce}},
				{name: "several signatures, one valid", verifier: both, headers: SignatureHeaders{V3: tamperSignature(h.V3) + ", " + h.V3 + " ,", V3Nonce: h.V3Nonce}, scheme: SchemeV3},
				{name: "several signatures, none valid", verifier: both, headers: SignatureHeaders{V3: tamperSignature(h.V3) + "," + tamperSignature(h.MaV3), V3Nonce: h.V3Nonce}},
				{name: "v3 wrong, v2 right", verifier: both, headers: SignatureHeaders{V3: tamperSignature(h.V3), V3Nonce: h.V3Nonce, V2: h.V2, MaV2: h.MaV2, V2Nonce: h.V2Nonce}},
				{name: "v3 nonce alone, v2 right", verifier: both, headers: SignatureHeaders{V3Nonce: h.V3Nonce, V2: h.V2, V2Nonce: h.V2Nonce}},
				{name: "v3 with v2 nonce", verifier: both, headers: SignatureHeaders{V3: h.V3, V3Nonce: h.V2Nonce}},
				{name: "v3 empty nonce", verifier: both, headers: SignatureHeaders{V3: h.V3, MaV3: h.MaV3}},
				{name: "v2 empty nonce", verifier: both, headers: SignatureHeaders{V2: h.V2, MaV2: h.MaV2}},
				{name: "no tokens", verifier: NewSignatureVerifier("", ""), headers: h},
				{name: "no headers", verifier: both, headers: SignatureHeaders{}, missing: true},
				{name: "nonces only", verifier: both, headers: SignatureHeaders{V2Nonce: h.V2Nonce, V3Nonce: h.V3Nonce}, missing: true},
				{name: "blank headers", verifier: both, headers: SignatureHeaders{V2: " ", V3: " ", V3Nonce: h.V3Nonce}, missing: true},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					req := r
					req.Headers = tt.headers
					got, err := tt.verifier.Verify(req)
					switch {
					case tt.missing:
						if !errors.Is(err, ErrMissingSignature) {
							t.Fatalf("got %v, want ErrMissingSignature", err)
						}
					case tt.scheme == "":
						if !errors.Is(err, ErrBadSignature) {
							t.Fatalf("got %+v, %v, want ErrBadSignature", got, err)
						}
						for _, tok := range []string{sub, main} {
							if strings.Contains(err.Error(), tok) {
								t.Fatalf("error %q contains a token", err)
							}
						}
					default:
						if err != nil {
							t.Fatalf("got %v, want nil", err)
						}
						if got.Scheme != tt.scheme {
							t.Errorf("scheme: got %s, want %s", got.Scheme, tt.scheme)
						}
					}
				})
			}
		})
	}
}

func TestSignatureErrors(t *testing.T) {
	c := loadCallbackFixtures(t)[0]
	verifier := NewSignatureVerifier(c.ExampleRequest.AuthToken, c.ExampleRequest.MainAuthToken)
	r := exampleRequest(t, c)
	tests := []struct {
		name    string
		headers SignatureHeaders
		want    string
	}{
		{"v3 mismatch", SignatureHeaders{V3: tamperSignature(r.Headers.V3), V3Nonce: r.Headers.V3Nonce}, "v3 signature mismatch"},
		{"v2 mismatch", SignatureHeaders{V2: tamperSignature(r.Headers.V2), V2Nonce: r.Headers.V2Nonce}, "v2 signature mismatch"},
		{"v3 empty nonce", SignatureHeaders{V3: r.Headers.V3}, "v3 signature mismatch: empty nonce"},
		{"v2 empty nonce", SignatureHeaders{V2: r.Headers.V2}, "v2 signature mismatch: empty nonce"},
		{"v3 nonce alone", SignatureHeaders{V3Nonce: "1", V2: r.Headers.V2, V2Nonce: r.Headers.V2Nonce}, "v3 signature mismatch: nonce without signature"},
		{"none", SignatureHeaders{}, "missing signature headers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := r
			req.Headers = tt.headers
			_, err := verifier.Verify(req)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v, want %s", err, tt.want)
			}
		})
	}

	t.Run("same nonce in both header sets", func(t *testing.T) {
		const tok, nonce = "tok", "42"
		sig3, _ := ComputeSignatureV3(tok, "POST", r.URL, nonce, r.Params)
		req := r
		req.Headers = SignatureHeaders{V3: sig3, V3Nonce: nonce, V2: "x", V2Nonce: nonce}
		got, err := NewSignatureVerifier(tok).Verify(req)
		if err != nil || len(got.Nonces) != 1 || got.Nonces[0] != nonce {
			t.Errorf("got %+v, %v, want nonces [%s]", got, err, nonce)
		}
	})
	t.Run("unparseable URL", func(t *testing.T) {
		req := r
		req.URL = "https://hooks.example.com/%zz"
		_, err := verifier.Verify(req)
		if err == nil || errors.Is(err, ErrBadSignature) {
			t.Errorf("got %v, want a URL error that is not ErrBadSignature", err)
		}
	})
}

func TestSignatureDiagnose(t *testing.T) {
	var c callbackFixture
	for _, f := range loadCallbackFixtures(t) {
		if f.Name == "sms-delivered" {
			c = f
		}
	}
	if c.Name == "" {
		t.Fatal("callbacks.json has no sms-delivered case")
	}
	sub, main := c.ExampleRequest.AuthToken, c.ExampleRequest.MainAuthToken
	verifier := NewSignatureVerifier(sub, main)
	signed := exampleRequest(t, c) // URL https://hooks.example.com/plivo/status?tenant=acme
	const wantURL = `"https://hooks.example.com/plivo/status?tenant=acme"`
	v2Only := signed.Headers
	v2Only.V3, v2Only.MaV3, v2Only.V3Nonce = "", "", ""

	const rawNonce = "31313131313131313131"
	rawPathSig := hmacBase64([]byte(sub), "https://hooks.example.com/st%C3%A4tus"+rawNonce)
	noQuerySig, _ := ComputeSignatureV3(sub, "POST", "https://hooks.example.com/plivo/status", signed.Headers.V3Nonce, signed.Params)

	tests := []struct {
		name        string
		url         string
		host        string
		headers     SignatureHeaders
		params      url.Values
		verifier    *SignatureVerifier
		contains    []string // "" in want means an empty hint
		wantNothing bool
		finding     Finding
		wantURL     string // Diagnosis.URL, for FoundURLMismatch
	}{
		{name: "wrong scheme", url: "http://hooks.example.com/plivo/status?tenant=acme", contains: []string{"v3 signature would verify with URL " + wantURL, "server.public_url"}, finding: FoundURLMismatch, wantURL: "https://hooks.example.com/plivo/status?tenant=acme"},
		{name: "port", url: "https://hooks.example.com:8443/plivo/status?tenant=acme", contains: []string{"v3 signature", wantURL}, finding: FoundURLMismatch, wantURL: "https://hooks.example.com/plivo/status?tenant=acme"},
		{name: "explicit default port", url: "https://hooks.example.com:443/plivo/status?tenant=acme", contains: []string{wantURL}, finding: FoundURLMismatch, wantURL: "https://hooks.example.com/plivo/status?tenant=acme"},
		{name: "trailing slash", url: "https://hooks.example.com/plivo/status/?tenant=acme", contains: []string{wantURL}, finding: FoundURLMismatch, wantURL: "https://hooks.example.com/plivo/status?tenant=acme"},
		{name: "host", url: "https://10.0.0.5:8080/plivo/status?tenant=acme", host: "hooks.example.com", contains: []string{wantURL, "Host header"}, finding: FoundURLMismatch, wantURL: "https://hooks.example.com/plivo/status?tenant=acme"},
		{name: "v2 port", url: "https://hooks.example.com:8443/plivo/status", headers: v2Only, contains: []string{`v2 signature would verify with URL "https://hooks.example.com/plivo/status"`}, finding: FoundURLMismatch, wantURL: "https://hooks.example.com/plivo/status"},
		{name: "v2 host and scheme", url: "http://127.0.0.1:8080/plivo/status", host: "hooks.example.com", headers: v2Only, contains: []string{`"https://hooks.example.com/plivo/status"`}, finding: FoundURLMismatch, wantURL: "https://hooks.example.com/plivo/status"},
		{name: "query left out", url: signed.URL, headers: SignatureHeaders{V3: noQuerySig, V3Nonce: signed.Headers.V3Nonce}, contains: []string{`"https://hooks.example.com/plivo/status"`, "query left out"}, finding: FoundURLMismatch, wantURL: "https://hooks.example.com/plivo/status"},
		// The raw (escaped) path now verifies as signed; with another fault
		// it is still found.
		{name: "raw path and port", url: "https://hooks.example.com:8443/st%C3%A4tus", headers: SignatureHeaders{V2: rawPathSig, V2Nonce: rawNonce}, contains: []string{`v2 signature would verify with URL "https://hooks.example.com/st%C3%A4tus"`}, finding: FoundURLMismatch, wantURL: "https://hooks.example.com/st%C3%A4tus"},
		// Issue 11: public_url with the callback path doubles it.
		{name: "public_url with the path", url: "https://hooks.example.com/plivo/status/plivo/status?tenant=acme", contains: []string{wantURL, "shorter path", "scheme, host and port only"}, finding: FoundURLMismatch, wantURL: "https://hooks.example.com/plivo/status?tenant=acme"},
		{name: "public_url with the path, v2", url: "https://hooks.example.com/plivo/status/plivo/status", headers: v2Only, contains: []string{`"https://hooks.example.com/plivo/status"`, "shorter path"}, finding: FoundURLMismatch, wantURL: "https://hooks.example.com/plivo/status"},
		{name: "public_url with a prefix and the path", url: "https://hooks.example.com/a/b/plivo/status?tenant=acme", contains: []string{wantURL, "shorter path"}, finding: FoundURLMismatch, wantURL: "https://hooks.example.com/plivo/status?tenant=acme"},
		{name: "params changed", url: signed.URL, params: url.Values{"MessageUUID": {"other"}}, contains: []string{"v2 signature verifies but v3 does not"}, finding: FoundParamsDiffer},
		{name: "empty nonce", url: signed.URL, headers: SignatureHeaders{V3: signed.Headers.V3}, contains: []string{"empty nonce"}, finding: FoundBadHeaders},
		{name: "no headers", url: signed.URL, headers: SignatureHeaders{}, contains: []string{"no X-Plivo-Signature"}, finding: FoundUnsigned},
		{name: "wrong token", url: signed.URL, verifier: NewSignatureVerifier("MzY2ZjQxZTg5NjFiY2I2NWE1OTJkNWFlNzBiZjE5"), wantNothing: true, finding: FoundNothing},
		{name: "wrong token and port", url: "https://hooks.example.com:8443/plivo/status?tenant=acme", host: "evil.example", verifier: NewSignatureVerifier("nope"), wantNothing: true, finding: FoundNothing},
		{name: "odd host header ignored", url: "https://10.0.0.5/plivo/status?tenant=acme", host: "hooks.example.com/x?", wantNothing: true, finding: FoundNothing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := signed
			r.URL = tt.url
			if tt.headers != (SignatureHeaders{}) || tt.name == "no headers" {
				r.Headers = tt.headers
			}
			if tt.params != nil {
				r.Params = tt.params
			}
			v := verifier
			if tt.verifier != nil {
				v = tt.verifier
			}
			if _, err := v.Verify(r); err == nil {
				t.Fatal("Verify succeeded; the case must fail first")
			}
			d := v.Diagnose(r, tt.host)
			if d.Finding != tt.finding || d.URL != tt.wantURL {
				t.Errorf("got finding %d, URL %q, want %d, %q (hint %q)", d.Finding, d.URL, tt.finding, tt.wantURL, d.Hint)
			}
			hint := d.Hint
			if tt.wantNothing {
				if hint != "" {
					t.Fatalf("got %q, want \"\"", hint)
				}
				return
			}
			for _, want := range tt.contains {
				if !strings.Contains(hint, want) {
					t.Errorf("got %q, want it to contain %q", hint, want)
				}
			}
			for _, tok := range []string{sub, main} {
				if strings.Contains(hint, tok) {
					t.Errorf("hint %q contains a token", hint)
				}
			}
		})
	}
}
