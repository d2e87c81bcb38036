package protocol

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Plivo signature header names.
const (
	HeaderSignatureV2      = "X-Plivo-Signature-V2"
	HeaderSignatureMaV2    = "X-Plivo-Signature-Ma-V2"
	HeaderSignatureV2Nonce = "X-Plivo-Signature-V2-Nonce"
	HeaderSignatureV3      = "X-Plivo-Signature-V3"
	HeaderSignatureMaV3    = "X-Plivo-Signature-Ma-V3"
	HeaderSignatureV3Nonce = "X-Plivo-Signature-V3-Nonce"
)

// Signature schemes reported in Verification.Scheme.
const (
	SchemeV2 = "v2"
	SchemeV3 = "v3"
)

// Signature errors callers branch on.
var (
	// ErrMissingSignature means the request carried no Plivo signature header.
	ErrMissingSignature = errors.New("missing signature headers")
	// ErrBadSignature means a signature was present but did not verify. It is
	// wrapped with the header set that failed and, when there is one, a reason.
	ErrBadSignature = errors.New("signature mismatch")
)

// SignatureHeaders are the Plivo signature headers of one request, as received.
type SignatureHeaders struct{ V2, MaV2, V2Nonce, V3, MaV3, V3Nonce string }

// SignedRequest is what the signature covers.
type SignedRequest struct {
	// Method is "GET" or "POST".
	Method string
	// URL is server.public_url + request path + ("?" + raw query, if any).
	// It is never derived from the Host header by the caller.
	URL string
	// Params are the POST body parameters (form fields, or JSON top-level
	// fields stringified). Nil or empty for GET: GET parameters are in URL's
	// query.
	Params  url.Values
	Headers SignatureHeaders
}

// Verification says how a request was verified.
type Verification struct {
	// Scheme is SchemeV3 or SchemeV2.
	Scheme string
	// Nonces must be remembered for plivo.nonce_ttl and refused when seen
	// again: the verified scheme's nonce, plus the V2 nonce when V3 verified
	// and a V2 nonce came too, so the V2 headers cannot be replayed alone.
	Nonces []string
}

// SignatureVerifier checks requests against the main auth token and extra
// tokens (subaccounts, rotation). It is safe for concurrent use.
type SignatureVerifier struct {
	tokens [][]byte
	// macs holds, per token, HMAC-SHA256 states keyed with it: keying
	// (hashing the token into the inner and outer pads) is done once per
	// pooled state instead of on every callback.
	macs []*sync.Pool
	// lastURL caches the parse of the signed URL, which is the same public
	// URL on every callback. The *url.URL is shared: read-only.
	lastURL atomic.Pointer[parsedURL]
	// bufs are scratch buffers for matchAny.
	bufs sync.Pool
}

type parsedURL struct {
	raw string
	u   *url.URL
}

// matchBuf is the scratch space of one matchAny.
type matchBuf struct{ msg, sum, b64 []byte }

// NewSignatureVerifier returns a verifier accepting signatures made with any
// of tokens. Empty strings are ignored; with no token nothing verifies.
func NewSignatureVerifier(tokens ...string) *SignatureVerifier {
	v := &SignatureVerifier{}
	seen := map[string]bool{}
	for _, t := range tokens {
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		tok := []byte(t)
		v.tokens = append(v.tokens, tok)
		v.macs = append(v.macs, &sync.Pool{New: func() any { return hmac.New(sha256.New, tok) }})
	}
	v.bufs.New = func() any { return new(matchBuf) }
	return v
}

// parseURL parses the signed URL, reusing the last parse when it is the
// same string (the configured public URL plus the callback path).
func (v *SignatureVerifier) parseURL(raw string) (*url.URL, error) {
	if p := v.lastURL.Load(); p != nil && p.raw == raw {
		return p.u, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	v.lastURL.Store(&parsedURL{raw: raw, u: u})
	return u, nil
}

// HasTokens reports whether any token is configured: without one nothing
// verifies.
func (v *SignatureVerifier) HasTokens() bool { return len(v.tokens) > 0 }

// Verify checks r's signature headers. Any configured token may have made any
// of the signatures: X-Plivo-Signature-Ma-V2/-Ma-V3 use the main account's
// token, the others the (sub)account's, and we hold both. When any V3 header
// is present V3 must verify, because V3 covers the parameters and V2 does
// not; V2 alone is accepted only when no V3 header came. Errors wrap
// ErrMissingSignature or ErrBadSignature and never contain a token.
func (v *SignatureVerifier) Verify(r SignedRequest) (Verification, error) {
	h := trimHeaders(r.Headers)
	if h.V2 == "" && h.MaV2 == "" && h.V3 == "" && h.MaV3 == "" {
		return Verification{}, ErrMissingSignature
	}
	u, err := v.parseURL(r.URL)
	if err != nil {
		// The URL comes from our own configuration, so this is not the
		// sender's fault; say so rather than report a mismatch.
		return Verification{}, fmt.Errorf("parse signed URL: %w", err)
	}
	if h.V3 != "" || h.MaV3 != "" || h.V3Nonce != "" {
		if err := v.verifyV3(u, r.Method, r.Params, h); err != nil {
			return Verification{}, err
		}
		ver := Verification{Scheme: SchemeV3, Nonces: append(make([]string, 0, 2), h.V3Nonce)}
		if h.V2Nonce != "" && h.V2Nonce != h.V3Nonce {
			ver.Nonces = append(ver.Nonces, h.V2Nonce)
		}
		return ver, nil
	}
	if err := v.verifyV2(u, h); err != nil {
		return Verification{}, err
	}
	return Verification{Scheme: SchemeV2, Nonces: []string{h.V2Nonce}}, nil
}

func (v *SignatureVerifier) verifyV3(u *url.URL, method string, params url.Values, h SignatureHeaders) error {
	var sigBuf [4]string
	sigs := appendSplitSignatures(sigBuf[:0], h.V3, h.MaV3)
	switch {
	case len(sigs) == 0:
		return fmt.Errorf("v3 %w: nonce without signature", ErrBadSignature)
	case h.V3Nonce == "":
		return fmt.Errorf("v3 %w: empty nonce", ErrBadSignature)
	}
	var signedBuf [8]string
	if !v.matchAny(appendSignedStringsV3(signedBuf[:0], u, method, params, h.V3Nonce), sigs) {
		return fmt.Errorf("v3 %w", ErrBadSignature)
	}
	return nil
}

func (v *SignatureVerifier) verifyV2(u *url.URL, h SignatureHeaders) error {
	var sigBuf [4]string
	sigs := appendSplitSignatures(sigBuf[:0], h.V2, h.MaV2)
	if h.V2Nonce == "" {
		return fmt.Errorf("v2 %w: empty nonce", ErrBadSignature)
	}
	var buf [2]string // on the stack: one callback, no allocation for the list
	if !v.matchAny(appendSignedStringsV2(buf[:0], u, h.V2Nonce), sigs) {
		return fmt.Errorf("v2 %w", ErrBadSignature)
	}
	return nil
}

// matchAny reports whether some token's HMAC of some signed string equals
// some provided signature. Every comparison is constant-time and every
// token and string is tried. The HMAC states are pooled per token and the
// digests built in pooled buffers, so a check allocates nothing.
func (v *SignatureVerifier) matchAny(signed []string, sigs []string) bool {
	buf := v.bufs.Get().(*matchBuf)
	defer v.bufs.Put(buf)
	ok := false
	for _, pool := range v.macs {
		mac := pool.Get().(hash.Hash)
		for _, s := range signed {
			mac.Reset()
			buf.msg = append(buf.msg[:0], s...)
			mac.Write(buf.msg)
			buf.sum = mac.Sum(buf.sum[:0])
			buf.b64 = base64.StdEncoding.AppendEncode(buf.b64[:0], buf.sum)
			for _, got := range sigs {
				if constantTimeEqual(buf.b64, got) {
					ok = true
				}
			}
		}
		pool.Put(mac)
	}
	return ok
}

// constantTimeEqual is hmac.Equal for a string, without converting it.
func constantTimeEqual(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var d byte
	for i := range a {
		d |= a[i] ^ b[i]
	}
	return d == 0
}

// ComputeSignatureV2 returns Plivo's V2 signature of rawURL and nonce keyed by
// token: base64(HMAC-SHA256(token, scheme://host + path + nonce)), the query
// and fragment left out, the path percent-decoded (as plivo-go does).
func ComputeSignatureV2(token, rawURL, nonce string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parse signed URL: %w", err)
	}
	return hmacBase64([]byte(token), signedStringV2(u, nonce)), nil
}

// ComputeSignatureV3 returns Plivo's V3 signature of a request keyed by token,
// exactly as plivo-go v7 ComputeSignatureV3 computes it. params are the POST
// body parameters (first value of each key); for GET they are merged into the
// URL's query.
func ComputeSignatureV3(token, method, rawURL, nonce string, params url.Values) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parse signed URL: %w", err)
	}
	return hmacBase64([]byte(token), signedStringV3(u, method, params, nonce, v3Form{})), nil
}

func hmacBase64(token []byte, s string) string {
	mac := hmac.New(sha256.New, token)
	mac.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func signedStringV2(u *url.URL, nonce string) string {
	return u.Scheme + "://" + u.Host + u.Path + nonce
}

// appendSignedStringsV2 appends the strings a V2 signature of u may cover:
// plivo-go signs the percent-decoded path, Plivo's Node and Python SDKs the
// path as written (uri-parser and urlparse keep its escapes). They differ
// only when the path has escapes.
func appendSignedStringsV2(dst []string, u *url.URL, nonce string) []string {
	dst = append(dst, signedStringV2(u, nonce))
	if raw := u.EscapedPath(); raw != u.Path {
		dst = append(dst, u.Scheme+"://"+u.Host+raw+nonce)
	}
	return dst
}

// v3Form is one way of writing the string a V3 signature covers. The SDKs
// disagree in three places, and the URL is ours and the parameters are
// signed in every form, so each is accepted:
//
//   - rawPath: plivo-go signs the percent-decoded path; Plivo's Node
//     (uri-parser) and Python (urlparse) SDKs the path as written, escapes
//     kept (Go's EscapedPath, which is the received spelling whenever that
//     is a valid escaping).
//   - allValues: plivo-go signs the first value of a repeated key; Node and
//     Python every value, sorted, each as key+value (key=value& in a
//     query).
//   - keepDots: for POST with a query string in the URL, plivo-go builds
//     base?query.params and trims every trailing '.'; Python and Node keep
//     them (and add the '.' only when both query and params are non-empty).
//     The strings differ only when the last sorted value (or the query,
//     when there are no params) ends in '.', or the query parses to nothing.
type v3Form struct{ rawPath, allValues, keepDots bool }

// signedStringsV3 returns the strings a V3 signature of this request may
// cover, plivo-go's first. A form is tried only where it can differ (an
// escaped path, a repeated key, POST with a query), so a plain callback
// costs one string.
func signedStringsV3(u *url.URL, method string, params url.Values, nonce string) []string {
	return appendSignedStringsV3(nil, u, method, params, nonce)
}

// appendSignedStringsV3 is signedStringsV3 appending to out.
func appendSignedStringsV3(out []string, u *url.URL, method string, params url.Values, nonce string) []string {
	raws, alls, dots := []bool{false}, []bool{false}, []bool{false}
	if u.EscapedPath() != u.Path {
		raws = append(raws, true)
	}
	if hasRepeats(params) || u.RawQuery != "" && hasRepeats(u.Query()) {
		alls = append(alls, true)
	}
	if method != "GET" && u.RawQuery != "" {
		dots = append(dots, true)
	}
	for _, raw := range raws {
		for _, all := range alls {
			for _, dot := range dots {
				s := signedStringV3(u, method, params, nonce, v3Form{rawPath: raw, allValues: all, keepDots: dot})
				if !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// signedStringV3 follows plivo-go GenerateUrl + "." + nonce with the zero
// form, and the Python/Node SDKs' construct_get_url / construct_post_url
// with the form's choices (see v3Form).
func signedStringV3(u *url.URL, method string, params url.Values, nonce string, f v3Form) string {
	pairs := func(v url.Values, kv, sep string) string {
		if f.allValues {
			return sortedAllPairs(v, kv, sep)
		}
		return sortedPairs(firstValues(v), kv, sep)
	}
	var b strings.Builder
	size := 256
	if method != "GET" && u.RawQuery == "" && !f.allValues {
		// Every callback's form (the default case below): its exact
		// length, so the string is built in one allocation.
		size = len(u.Scheme) + len("://") + len(u.Host) + len(u.EscapedPath()) + len("?.") + len(nonce)
		for k, vs := range params {
			size += len(k)
			if len(vs) > 0 {
				size += len(vs[0])
			}
		}
	}
	b.Grow(size)
	b.WriteString(u.Scheme)
	b.WriteString("://")
	b.WriteString(u.Host)
	if f.rawPath {
		b.WriteString(u.EscapedPath())
	} else {
		b.WriteString(u.Path)
	}
	switch {
	case method == "GET":
		q := u.Query()
		for k, vs := range params {
			if f.allValues {
				// Node concatenates the values of both; callers pass no
				// params for GET, so Python's override never differs.
				q[k] = append(q[k], vs...)
			} else if len(vs) > 0 {
				q[k] = []string{vs[0]}
			} else {
				q[k] = []string{""}
			}
		}
		if len(params) > 0 || u.RawQuery != "" {
			b.WriteByte('?')
		}
		b.WriteString(pairs(q, "=", "&"))
	case u.RawQuery != "" && f.keepDots:
		q := pairs(u.Query(), "=", "&")
		ps := pairs(params, "", "")
		if q != "" || len(params) > 0 {
			b.WriteByte('?')
		}
		b.WriteString(q)
		if q != "" && len(params) > 0 {
			b.WriteByte('.')
		}
		b.WriteString(ps)
	case u.RawQuery != "":
		s := "?" + pairs(u.Query(), "=", "&") + "." + pairs(params, "", "")
		b.WriteString(strings.TrimRight(s, "."))
	case f.allValues:
		if len(params) > 0 {
			b.WriteByte('?')
		}
		b.WriteString(pairs(params, "", ""))
	default:
		// Every callback's case (POST, no query in the URL, first values):
		// sortedPairs(firstValues(params)) written straight from params,
		// without the intermediate map and string.
		if len(params) > 0 {
			b.WriteByte('?')
		}
		var stack [32]string
		keys := stack[:0]
		for k := range params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b.WriteString(k)
			if vs := params[k]; len(vs) > 0 {
				b.WriteString(vs[0])
			}
		}
	}
	b.WriteByte('.')
	b.WriteString(nonce)
	return b.String()
}

// hasRepeats reports whether some key of v has more than one value.
func hasRepeats(v url.Values) bool {
	for _, vs := range v {
		if len(vs) > 1 {
			return true
		}
	}
	return false
}

// sortedAllPairs is sortedPairs over every value: keys sorted, each key's
// values sorted, one key+kv+value item per value (the Python and Node
// SDKs' get_sorted_params_string / get_sorted_query_string).
func sortedAllPairs(v url.Values, kv, sep string) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	first := true
	for _, k := range keys {
		vals := slices.Clone(v[k])
		if len(vals) == 0 {
			vals = []string{""}
		}
		sort.Strings(vals)
		for _, val := range vals {
			if !first {
				b.WriteString(sep)
			}
			first = false
			b.WriteString(k)
			b.WriteString(kv)
			b.WriteString(val)
		}
	}
	return b.String()
}

// sortedPairs joins key+kv+value items, byte-wise sorted by key, with sep:
// plivo-go GetSortedQueryParamString, values unescaped.
func sortedPairs(m map[string]string, kv, sep string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(k)
		b.WriteString(kv)
		b.WriteString(m[k])
	}
	return b.String()
}

// firstValues flattens v to its first value per key, as plivo-go does.
func firstValues(v url.Values) map[string]string {
	m := make(map[string]string, len(v))
	for k, vs := range v {
		if len(vs) > 0 {
			m[k] = vs[0]
		} else {
			m[k] = ""
		}
	}
	return m
}

func trimHeaders(h SignatureHeaders) SignatureHeaders {
	return SignatureHeaders{
		V2: strings.TrimSpace(h.V2), MaV2: strings.TrimSpace(h.MaV2), V2Nonce: strings.TrimSpace(h.V2Nonce),
		V3: strings.TrimSpace(h.V3), MaV3: strings.TrimSpace(h.MaV3), V3Nonce: strings.TrimSpace(h.V3Nonce),
	}
}

// splitSignatures returns the non-empty comma-separated signatures of the
// given header values, spaces trimmed.
func splitSignatures(headers ...string) []string {
	return appendSplitSignatures(nil, headers...)
}

// appendSplitSignatures is splitSignatures appending to sigs, so that the
// verifier can split into an array on its stack.
func appendSplitSignatures(sigs []string, headers ...string) []string {
	for _, h := range headers {
		for s := range strings.SplitSeq(h, ",") {
			if s = strings.TrimSpace(s); s != "" {
				sigs = append(sigs, s)
			}
		}
	}
	return sigs
}

// Finding classifies what Diagnose found, for callers that branch on it
// (metrics labels, the health banner) rather than on the hint's wording.
type Finding int

// Findings of Diagnose.
const (
	// FoundNothing: no variant of the URL verifies with any token; the
	// auth token is likely wrong, or the request is forged. Hint is "".
	FoundNothing Finding = iota
	// FoundUnsigned: no signature header came at all.
	FoundUnsigned
	// FoundNoToken: no auth token is configured, so nothing can verify.
	FoundNoToken
	// FoundBadURL: the configured (signed) URL does not parse.
	FoundBadURL
	// FoundBadHeaders: a nonce without its signature, or an empty nonce.
	FoundBadHeaders
	// FoundURLMismatch: the signature verifies with another URL, given in
	// Diagnosis.URL; server.public_url (or the path) is likely wrong.
	FoundURLMismatch
	// FoundVerifiesAsIs: the signature verifies with the configured URL, so
	// the failure came from elsewhere (such as a V3 nonce check).
	FoundVerifiesAsIs
	// FoundParamsDiffer: V2 verifies but V3 does not: the parameters differ
	// from what Plivo signed.
	FoundParamsDiffer
)

// Diagnosis is what Diagnose found about a failed Verify.
type Diagnosis struct {
	Finding Finding
	// Scheme is the header set checked: SchemeV3 or SchemeV2; "" when the
	// request was not signed or could not be checked.
	Scheme string
	// URL is the URL that would verify, for FoundURLMismatch: scheme, host,
	// path (percent-encoded as Plivo would sign it) and query.
	URL string
	// Hint is a short explanation for the operator naming the header set and
	// what to check, such as
	//
	//	v3 signature would verify with URL "https://hooks.example.com:8443/plivo/callback": check server.public_url
	//
	// "" for FoundNothing. It never contains a token.
	Hint string
}

// Diagnose explains a failed Verify for the operator. It retries the check
// with plausible variants of the URL — http/https, the port left out or made
// explicit, requestHost (the Host header) instead of public_url's host, the
// trailing slash toggled, the query dropped (V3), leading path segments left
// out (public_url carrying a path Plivo was not given) — and says which one
// would verify. It costs up to a few hundred HMACs, so callers should not run
// it for every failure of a flood.
func (v *SignatureVerifier) Diagnose(r SignedRequest, requestHost string) Diagnosis {
	h := trimHeaders(r.Headers)
	if h.V2 == "" && h.MaV2 == "" && h.V3 == "" && h.MaV3 == "" {
		return Diagnosis{Finding: FoundUnsigned, Hint: "no X-Plivo-Signature-V2 or -V3 header: the request was not signed by Plivo"}
	}
	if len(v.tokens) == 0 {
		return Diagnosis{Finding: FoundNoToken, Hint: "no auth token configured: set plivo.auth_token"}
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return Diagnosis{Finding: FoundBadURL, Hint: "the signed URL does not parse: check server.public_url"}
	}
	scheme, sigs, nonce := SchemeV2, splitSignatures(h.V2, h.MaV2), h.V2Nonce
	if h.V3 != "" || h.MaV3 != "" || h.V3Nonce != "" {
		scheme, sigs, nonce = SchemeV3, splitSignatures(h.V3, h.MaV3), h.V3Nonce
	}
	switch {
	case len(sigs) == 0:
		return Diagnosis{Finding: FoundBadHeaders, Scheme: scheme, Hint: scheme + " nonce header came without a " + scheme + " signature header"}
	case nonce == "":
		return Diagnosis{Finding: FoundBadHeaders, Scheme: scheme, Hint: scheme + " signature came with an empty nonce header"}
	}
	verifies := func(c *url.URL) bool {
		if scheme == SchemeV3 {
			return v.matchAny(signedStringsV3(c, r.Method, r.Params, nonce), sigs)
		}
		return v.matchAny(appendSignedStringsV2(nil, c, nonce), sigs)
	}
	for _, c := range urlVariants(u, requestHost, scheme == SchemeV3) {
		if !verifies(c.u) {
			continue
		}
		if c.changes == 0 {
			return Diagnosis{Finding: FoundVerifiesAsIs, Scheme: scheme, Hint: scheme + " signature verifies with the configured URL: the failure was elsewhere"}
		}
		return Diagnosis{Finding: FoundURLMismatch, Scheme: scheme, URL: c.display,
			Hint: fmt.Sprintf("%s signature would verify with URL %q%s", scheme, c.display, c.advice)}
	}
	if scheme == SchemeV3 && h.V2Nonce != "" && v.verifyV2(u, h) == nil {
		return Diagnosis{Finding: FoundParamsDiffer, Scheme: scheme, Hint: "v2 signature verifies but v3 does not: the parameters differ from what Plivo signed (check the body and its content type)"}
	}
	return Diagnosis{Finding: FoundNothing, Scheme: scheme}
}

type urlVariant struct {
	u       *url.URL
	display string
	advice  string
	changes int
}

// urlVariants returns u itself first, then variants ordered by how many
// parts differ from u.
func urlVariants(u *url.URL, requestHost string, withQuery bool) []urlVariant {
	schemes := []string{u.Scheme}
	switch u.Scheme {
	case "https":
		schemes = append(schemes, "http")
	case "http":
		schemes = append(schemes, "https")
	}
	type hostChoice struct {
		host     string
		fromHost bool
	}
	baseHosts := []hostChoice{{u.Host, false}}
	if requestHost != "" && requestHost != u.Host && validHost(requestHost) {
		baseHosts = append(baseHosts, hostChoice{requestHost, true})
	}
	// The path as is, its trailing slash toggled, and the path without its
	// leading segments: with public_url "https://dlr.example.com/plivo/callback"
	// the signed URL is .../plivo/callback/plivo/callback, while Plivo, told
	// the URL by hand, signed .../plivo/callback. (The percent-encoded
	// spelling of each is part of every check, see v3Form.)
	type pathChoice struct {
		path     string
		dropped  bool // leading segments left out
		shortcut int  // changes counted for it
	}
	paths := []pathChoice{{u.Path, false, 0}, {toggleSlash(u.Path), false, 1}}
	for i, rest := 0, u.Path; i < maxDroppedSegments; i++ {
		j := strings.IndexByte(strings.TrimPrefix(rest, "/"), '/')
		if j < 0 {
			break
		}
		rest = rest[j+1:]
		paths = append(paths, pathChoice{rest, true, 1})
	}
	queries := []string{u.RawQuery}
	if withQuery && u.RawQuery != "" {
		queries = append(queries, "")
	}

	var out []urlVariant
	seen := map[string]bool{}
	for si, scheme := range schemes {
		for _, bh := range baseHosts {
			for _, host := range hostVariants(bh.host, scheme) {
				for _, p := range paths {
					for qi, q := range queries {
						c := &url.URL{Scheme: scheme, Host: host, Path: p.path, RawQuery: q}
						key := c.Scheme + "\x00" + c.Host + "\x00" + c.Path + "\x00" + c.RawQuery
						if seen[key] {
							continue
						}
						seen[key] = true
						n := p.shortcut
						advice := ": check server.public_url"
						if si > 0 {
							n++
						}
						if host != bh.host {
							n++
						}
						if bh.fromHost {
							n++
							advice = " (the Host header's host): check server.public_url"
						}
						if p.dropped {
							advice = " (a shorter path): server.public_url is the scheme, host and port only (plus a prefix a proxy strips), plivo-dlr appends plivo.callback_path"
						}
						if qi > 0 {
							n++
							advice = " (query left out): check server.public_url and the callback URL set at Plivo"
						}
						display := scheme + "://" + host + (&url.URL{Path: p.path}).EscapedPath()
						if q != "" {
							display += "?" + q
						}
						out = append(out, urlVariant{u: c, display: display, advice: advice, changes: n})
					}
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].changes < out[j].changes })
	return out
}

// maxDroppedSegments bounds the leading path segments Diagnose leaves out.
const maxDroppedSegments = 4

// hostVariants returns host as is, without its port, and with the scheme's
// default port made explicit.
func hostVariants(host, scheme string) []string {
	out := []string{host}
	name, port := splitHostPort(host)
	if port != "" {
		out = append(out, name)
	}
	def := map[string]string{"http": "80", "https": "443"}[scheme]
	if def != "" && port != def {
		out = append(out, name+":"+def)
	}
	return out
}

// splitHostPort splits host into name and port; IPv6 brackets stay on name.
func splitHostPort(host string) (name, port string) {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.LastIndexByte(host, ']') > i {
		return host, ""
	}
	return host[:i], host[i+1:]
}

func toggleSlash(p string) string {
	if strings.HasSuffix(p, "/") {
		return strings.TrimSuffix(p, "/")
	}
	return p + "/"
}

// validHost reports whether h looks like a host[:port] worth trying; it came
// from a Host header, so anything odd is ignored.
func validHost(h string) bool {
	if len(h) > 255 {
		return false
	}
	u, err := url.Parse("http://" + h)
	return err == nil && u.Host == h && u.Path == "" && u.RawQuery == "" && u.User == nil
}
