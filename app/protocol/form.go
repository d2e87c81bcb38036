package protocol

import (
	"net/url"
	"strings"
)

// formSpan locates one parsed pair in the string parseForm slices from.
type formSpan struct{ k0, k1, v0, v1 int }

// maxFastFormParams bounds the pairs parseForm handles itself; url.ParseQuery
// has its own limit (GODEBUG urlmaxqueryparams) and decides above it.
const maxFastFormParams = 1000

// parseForm is url.ParseQuery for a callback body, with the same result
// and the same errors, in three allocations instead of one per key and per
// escaped value: the map (sized once), one backing array for every key's
// value slice, and one string holding every unescaped key and value.
// Whatever it does not decide the same way itself (a ';', a bad escape,
// many pairs) it hands to url.ParseQuery, so the rules stay Go's.
func parseForm(s string) (url.Values, error) {
	if strings.IndexByte(s, ';') >= 0 || strings.Count(s, "&") >= maxFastFormParams {
		return url.ParseQuery(s)
	}
	escaped := strings.ContainsAny(s, "%+")
	var dec []byte
	if escaped {
		// Unescaping never lengthens, so dec never grows past this.
		dec = make([]byte, 0, len(s))
	}
	var stack [48]formSpan
	spans := stack[:0]
	for rest := s; rest != ""; {
		off := len(s) - len(rest)
		seg, after, _ := strings.Cut(rest, "&")
		rest = after
		if seg == "" {
			continue
		}
		k, v, hasEq := strings.Cut(seg, "=")
		var sp formSpan
		if !escaped {
			sp = formSpan{k0: off, k1: off + len(k), v0: off + len(seg), v1: off + len(seg)}
			if hasEq {
				sp.v0 = off + len(k) + 1
			}
		} else {
			var ok bool
			sp.k0 = len(dec)
			if dec, ok = appendQueryUnescape(dec, k); !ok {
				return url.ParseQuery(s)
			}
			sp.k1, sp.v0 = len(dec), len(dec)
			if dec, ok = appendQueryUnescape(dec, v); !ok {
				return url.ParseQuery(s)
			}
			sp.v1 = len(dec)
		}
		spans = append(spans, sp)
	}
	str := s
	if escaped {
		str = string(dec)
	}
	m := make(url.Values, len(spans))
	vals := make([]string, len(spans))
	for i, sp := range spans {
		k := str[sp.k0:sp.k1]
		vals[i] = str[sp.v0:sp.v1]
		if old, ok := m[k]; ok {
			// old's capacity is its length, so this copies and never
			// writes into the next key's value.
			m[k] = append(old, vals[i])
		} else {
			m[k] = vals[i : i+1 : i+1]
		}
	}
	return m, nil
}

// appendQueryUnescape appends url.QueryUnescape(s) to dst; false where
// QueryUnescape would fail (a '%' not followed by two hex digits).
func appendQueryUnescape(dst []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			dst = append(dst, ' ')
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return dst, false
			}
			dst = append(dst, unHex(s[i+1])<<4|unHex(s[i+2]))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unHex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
