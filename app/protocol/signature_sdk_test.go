package protocol

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"sort"
	"strings"
	"testing"
)

// nodeSignedStringV3 is the string Plivo's Node SDK (lib/utils/v3Security.js,
// validateV3Signature) signs, written from that code and independent of
// ours; plivo-python's signature_v3.py builds the same string:
//
//   - base: protocol://host[:port] + the path exactly as written in the URI
//     (uri-parser keeps percent-escapes; Python's urlparse too);
//   - the URI's query parsed (escapes decoded) and, for GET, merged with
//     params; every key sorted, every value of a key sorted, written
//     key=value joined by '&';
//   - GET: base + ('?' + query, if any);
//   - POST: base + ('?' + query, when there is a query or params) + ('.',
//     when both) + every key sorted, every value sorted, written key+value
//     with no separator;
//   - then '.' + nonce, HMAC-SHA256 with the auth token, base64.
func nodeSignedStringV3(t *testing.T, method, uri, nonce string, params url.Values) string {
	t.Helper()
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		t.Fatalf("uri %q has no scheme", uri)
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	hostEnd := strings.IndexByte(rest, '/')
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	base := scheme + "://" + rest[:hostEnd] + rest[hostEnd:]
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		t.Fatalf("query of %q: %v", uri, err)
	}
	sortedItems := func(m url.Values, kv, sep string) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var items []string
		for _, k := range keys {
			vals := append([]string(nil), m[k]...)
			sort.Strings(vals)
			for _, v := range vals {
				items = append(items, k+kv+v)
			}
		}
		return strings.Join(items, sep)
	}
	constructGet := func(params url.Values, emptyPost bool) string {
		merged := url.Values{}
		for k, vs := range query {
			merged[k] = append(merged[k], vs...)
		}
		for k, vs := range params {
			merged[k] = append(merged[k], vs...)
		}
		qs := sortedItems(merged, "=", "&")
		s := base
		if len(qs) > 0 || !emptyPost {
			s += "?" + qs
		}
		if len(qs) > 0 && !emptyPost {
			s += "."
		}
		return s
	}
	var s string
	if method == "GET" {
		s = constructGet(params, true)
	} else {
		s = constructGet(nil, len(params) == 0) + sortedItems(params, "", "")
	}
	return s + "." + nonce
}

func sdkSign(token, s string) string {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// TestSignatureNodePythonForms (issue 11): Plivo's Node and Python SDKs sign
// the raw (percent-escaped) path and every value of a repeated key, where
// plivo-go signs the decoded path and the first value. Both verify, and
// the Node/Python string still covers every parameter.
func TestSignatureNodePythonForms(t *testing.T) {
	const token, nonce = "MzY2ZjQxZTg5NjFiY2I2NWE1OTJkNWFlNzBiZjE4", "48151623424815162342"
	const uuid = "5b40a428-bfc7-4daf-9d06-726c558bf3b8"
	tests := []struct {
		name, method, url string
		params            url.Values
		wantString        string // the Node/Python string, pinned
	}{
		{
			name: "escaped path", method: "POST", url: "https://hooks.example.com/plivo/st%C3%A4tus%20cb",
			params:     url.Values{"MessageUUID": {uuid}, "Status": {"sent"}},
			wantString: "https://hooks.example.com/plivo/st%C3%A4tus%20cb?MessageUUID" + uuid + "Statussent." + nonce,
		},
		{
			name: "needlessly escaped path", method: "POST", url: "https://hooks.example.com/plivo/%63allback",
			params:     url.Values{"Status": {"sent"}},
			wantString: "https://hooks.example.com/plivo/%63allback?Statussent." + nonce,
		},
		{
			name: "repeated key", method: "POST", url: "https://hooks.example.com/plivo/callback",
			params:     url.Values{"MessageUUID": {uuid}, "Status": {"sent"}, "Tag": {"b", "a"}},
			wantString: "https://hooks.example.com/plivo/callback?MessageUUID" + uuid + "StatussentTagaTagb." + nonce,
		},
		{
			name: "repeated key, query with a repeated key", method: "POST", url: "https://hooks.example.com/cb?t=2&t=1&tenant=acme",
			params:     url.Values{"Status": {"sent"}, "Tag": {"z", "y."}},
			wantString: "https://hooks.example.com/cb?t=1&t=2&tenant=acme.StatussentTagy.Tagz." + nonce,
		},
		{
			name: "escaped path, repeated key, trailing dot", method: "POST", url: "https://hooks.example.com:8443/h%2Fooks/cb?tenant=acme",
			params:     url.Values{"Status": {"sent"}, "Text": {"Hi.", "Bye."}},
			wantString: "https://hooks.example.com:8443/h%2Fooks/cb?tenant=acme.StatussentTextBye.TextHi.." + nonce,
		},
		{
			name: "GET with a repeated key", method: "GET", url: "https://hooks.example.com/cb?MessageUUID=" + uuid + "&Status=sent&x=2&x=1",
			wantString: "https://hooks.example.com/cb?MessageUUID=" + uuid + "&Status=sent&x=1&x=2." + nonce,
		},
		{
			name: "GET with an escaped path", method: "GET", url: "https://hooks.example.com/c%62?Status=sent",
			wantString: "https://hooks.example.com/c%62?Status=sent." + nonce,
		},
	}
	verifier := NewSignatureVerifier(token)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nodeSignedStringV3(t, tt.method, tt.url, nonce, tt.params)
			if got != tt.wantString {
				t.Fatalf("Node/Python string\n got %q\nwant %q", got, tt.wantString)
			}
			goSig, err := ComputeSignatureV3(token, tt.method, tt.url, nonce, tt.params)
			if err != nil {
				t.Fatal(err)
			}
			nodeSig := sdkSign(token, got)
			if nodeSig == goSig {
				t.Fatalf("the Node/Python and plivo-go signatures agree; the case tests nothing")
			}
			for name, sig := range map[string]string{"node/python": nodeSig, "plivo-go": goSig} {
				r := SignedRequest{Method: tt.method, URL: tt.url, Params: tt.params, Headers: SignatureHeaders{V3: sig, V3Nonce: nonce}}
				if _, err := verifier.Verify(r); err != nil {
					t.Errorf("%s signature: got %v, want verified", name, err)
				}
			}
			// Every value is covered: changing, dropping or adding one breaks it.
			for _, tamper := range []func(url.Values) url.Values{
				func(v url.Values) url.Values { w := cloneValues(v); w.Add("Tag", "extra"); return w },
				func(v url.Values) url.Values {
					w := cloneValues(v)
					for k, vs := range w {
						if len(vs) > 1 {
							w[k] = vs[:1]
						}
					}
					w.Set("Status", "delivered")
					return w
				},
			} {
				r := SignedRequest{Method: tt.method, URL: tt.url, Params: tamper(tt.params), Headers: SignatureHeaders{V3: nodeSig, V3Nonce: nonce}}
				if tt.method == "GET" {
					r.URL += "&Status=delivered"
				}
				if _, err := verifier.Verify(r); err == nil {
					t.Errorf("tampered request %v %s verified with the Node/Python signature", r.Params, r.URL)
				}
			}
		})
	}
}

// TestSignatureV2RawPath: Node and Python sign V2 over the path as written
// (Python: urlparse netloc + path, escapes kept); plivo-go decodes it.
func TestSignatureV2RawPath(t *testing.T) {
	const token, nonce = "MzY2ZjQxZTg5NjFiY2I2NWE1OTJkNWFlNzBiZjE4", "27182818284590452353"
	const raw = "https://hooks.example.com/plivo/st%C3%A4tus"
	pySig := sdkSign(token, raw+nonce)
	goSig, err := ComputeSignatureV2(token, raw, nonce)
	if err != nil || goSig == pySig {
		t.Fatalf("plivo-go signature %q (%v) must differ from the raw-path one", goSig, err)
	}
	for name, sig := range map[string]string{"python": pySig, "plivo-go": goSig} {
		r := SignedRequest{Method: "POST", URL: raw, Headers: SignatureHeaders{V2: sig, V2Nonce: nonce}}
		if _, err := NewSignatureVerifier(token).Verify(r); err != nil {
			t.Errorf("%s V2 signature: got %v, want verified", name, err)
		}
	}
	r := SignedRequest{Method: "POST", URL: "https://hooks.example.com/plivo/st%C3%A4tu", Headers: SignatureHeaders{V2: pySig, V2Nonce: nonce}}
	if _, err := NewSignatureVerifier(token).Verify(r); err == nil {
		t.Error("raw-path V2 signature verified for another path")
	}
}

func cloneValues(v url.Values) url.Values {
	w := url.Values{}
	for k, vs := range v {
		w[k] = append([]string(nil), vs...)
	}
	return w
}
