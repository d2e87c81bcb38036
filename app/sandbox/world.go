package sandbox

import (
	"hash/fnv"
	"slices"
	"strings"
)

// network is one real mobile network: its MCC (country) and MNC (operator)
// as the ITU lists them, which Plivo reports in a callback's MCC and MNC.
type network struct{ mcc, mnc string }

// country is what the simulated world knows of a destination country.
type country struct {
	name string
	// rate is the per-part price in USD the sandbox charges (TotalRate):
	// the order of magnitude of Plivo's outbound SMS price there.
	rate     string
	networks []network
}

// countries maps E.164 country calling codes to a few of their real
// networks. A number is on one network, chosen by its hash, so every
// message to it reports the same MCC/MNC. +1 is read as the United States
// (Canada shares the code; its networks would need the area code).
var countries = map[string]country{
	"1":  {"United States", "0.00500", []network{{"310", "260"}, {"310", "410"}, {"311", "480"}}},
	"44": {"United Kingdom", "0.04000", []network{{"234", "10"}, {"234", "15"}, {"234", "20"}, {"234", "30"}}},
	"49": {"Germany", "0.07500", []network{{"262", "01"}, {"262", "02"}, {"262", "03"}}},
	"33": {"France", "0.06500", []network{{"208", "01"}, {"208", "10"}, {"208", "15"}, {"208", "20"}}},
	"34": {"Spain", "0.06000", []network{{"214", "01"}, {"214", "03"}, {"214", "07"}}},
	"39": {"Italy", "0.07000", []network{{"222", "01"}, {"222", "10"}, {"222", "88"}}},
	"31": {"Netherlands", "0.09000", []network{{"204", "04"}, {"204", "08"}, {"204", "16"}}},
	"91": {"India", "0.00300", []network{{"404", "10"}, {"404", "20"}, {"404", "45"}}},
	"61": {"Australia", "0.04500", []network{{"505", "01"}, {"505", "02"}, {"505", "03"}}},
	"55": {"Brazil", "0.02500", []network{{"724", "02"}, {"724", "05"}, {"724", "06"}}},
	"52": {"Mexico", "0.02000", []network{{"334", "020"}, {"334", "050"}}},
	"65": {"Singapore", "0.03500", []network{{"525", "01"}, {"525", "03"}, {"525", "05"}}},
	"81": {"Japan", "0.07000", []network{{"440", "10"}, {"440", "20"}, {"440", "50"}}},
}

// defaultRate is charged for a destination outside countries.
const defaultRate = "0.05000"

// digits returns the digits of a phone number written with '+', spaces,
// dashes or brackets.
func digits(number string) string {
	var b strings.Builder
	for i := 0; i < len(number); i++ {
		if c := number[i]; '0' <= c && c <= '9' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// countryOf finds the country of an E.164 number by its calling code
// (1 to 3 digits, longest match first).
func countryOf(number string) (country, bool) {
	d := digits(number)
	for n := min(3, len(d)); n >= 1; n-- {
		if c, ok := countries[d[:n]]; ok {
			return c, true
		}
	}
	return country{}, false
}

// networkOf returns the MCC/MNC a message to number reports; empty outside
// the known countries, as Plivo leaves them when it has no network.
func (sb *Sandbox) networkOf(number string) network {
	c, ok := countryOf(number)
	if !ok {
		return network{}
	}
	return c.networks[sb.hash(digits(number))%uint64(len(c.networks))]
}

// rateOf is the per-part rate charged for a message to number.
func rateOf(number string) string {
	if c, ok := countryOf(number); ok {
		return c.rate
	}
	return defaultRate
}

// Error codes, each with the status Plivo reports it with. Transient ones
// strike single messages (a network hiccup, a phone switched off, a queue
// expiry); permanent ones belong to a number (or a source and destination
// pair) and strike every message to it, so the same number never fails
// "invalid destination" once and delivers the next time.
var (
	transientCodes = []string{"20", "80", "420", "1000"}
	// deadNumberCodes are the fates of a destination that cannot be reached.
	deadNumberCodes = []string{"50", "70", "90", "100"}
	codeStatus      = map[string]string{
		"20": "undelivered", "80": "undelivered", "420": "failed", "1000": "undelivered",
		"50": "failed", "70": "undelivered", "90": "undelivered", "100": "undelivered",
		"40": "failed", "200": "failed",
	}
)

// Of the failures that strike a number (or a source and destination pair)
// for the first time, these shares are permanent: the number is
// unreachable (a third), or the pair opted out with STOP (a tenth of the
// rest). The others are transient.
const (
	deadNumberShare = 1.0 / 3
	optedOutShare   = 1.0 / 10
)

// maxFates bounds the numbers and pairs whose fate the sandbox remembers;
// past it the memory starts afresh.
const maxFates = 100_000

// codeLocked takes the message's allocation slot and returns its error
// code ("" when it is delivered). A number's fate is decided by the first
// message to it: if that one drew a failure, a seeded hash of the number
// says whether the failure is the number's own (unreachable, code 50, 70,
// 90 or 100) or the pair's (opted out, 200) or transient. An unreachable
// number or opted-out pair fails every later message with the same code,
// taking a failure slot in place of a delivered one; a number that was
// once live is never unreachable later. A source that is not a phone
// number, short code or sender ID fails everything with 40. So the first
// message to each number never bends FailureShare; only repeated sends to
// doomed numbers can, once a block has no failure left.
func (sb *Sandbox) codeLocked(src, dst string) string {
	if !plausibleSource(src) {
		sb.nextOutcomeLocked(true)
		return "40"
	}
	if len(sb.dstFates) > maxFates || len(sb.pairFates) > maxFates {
		sb.dstFates, sb.pairFates = nil, nil
	}
	if sb.dstFates == nil {
		sb.dstFates, sb.pairFates = map[string]string{}, map[string]string{}
	}
	d := digits(dst)
	pair := src + "\x00" + d
	dFate, dKnown := sb.dstFates[d]
	pFate, pKnown := sb.pairFates[pair]
	switch {
	case dFate != "":
		sb.nextOutcomeLocked(true)
		return dFate
	case pFate != "":
		sb.nextOutcomeLocked(true)
		return pFate
	}
	code := ""
	if sb.nextOutcomeLocked(false) == outcomeFail {
		h := sb.hash("dst\x00" + d)
		switch {
		case !dKnown && unit(h) < deadNumberShare:
			code = deadNumberCodes[(h>>32)%uint64(len(deadNumberCodes))]
		case !pKnown && unit(sb.hash("pair\x00"+pair)) < optedOutShare:
			code = "200"
		default:
			code = transientCodes[sb.rng.IntN(len(transientCodes))]
		}
	}
	if !dKnown {
		sb.dstFates[d] = ""
		if slices.Contains(deadNumberCodes, code) {
			sb.dstFates[d] = code
		}
	}
	if !pKnown {
		sb.pairFates[pair] = ""
		if code == "200" {
			sb.pairFates[pair] = code
		}
	}
	return code
}

// plausibleSource reports whether src could be a Plivo sender: a long
// number or short code (5 to 15 digits, '+' allowed) or an alphanumeric
// sender ID (up to 11 letters, digits and spaces, at least one letter).
func plausibleSource(src string) bool {
	s := strings.TrimPrefix(src, "+")
	if s == "" {
		return false
	}
	allDigits, letters := true, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
			allDigits = false
			letters++
		case c == ' ':
			allDigits = false
		default:
			return false
		}
	}
	if allDigits {
		return len(s) >= 5 && len(s) <= 15
	}
	return letters > 0 && len(s) <= 11 && !strings.HasPrefix(src, "+")
}

// hash is a seeded, mixed FNV-1a of s: the same number gets the same network and
// fate for the life of the sandbox (and across runs with the same Seed).
func (sb *Sandbox) hash(s string) uint64 {
	h := fnv.New64a()
	var seed [8]byte
	for i := range seed {
		seed[i] = byte(sb.seed >> (8 * i))
	}
	h.Write(seed[:])
	h.Write([]byte(s))
	// FNV's high bits barely move between numbers that differ in their
	// last digits; murmur3's finaliser spreads them over all 64.
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }
