package storage

import (
	"context"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketOptOuts: number (digits, no '+') → encoded OptOut. Retention never
// touches it: an opt-out outlives the messages that caused it.
var bucketOptOuts = []byte("optouts")

// Sources of an opt-out.
const (
	// OptOutSourceInbound: the person sent STOP (MessageIntent optout).
	OptOutSourceInbound = "optout"
	// OptOutSourceError200: a delivery report said Plivo error 200,
	// destination opted out.
	OptOutSourceError200 = "error_200"
	// OptOutSourceAPI: added through the API.
	OptOutSourceAPI = "api"
)

// ErrorCodeOptedOut is Plivo's error code for "destination opted out".
const ErrorCodeOptedOut = "200"

// OptOut is one number that must not be sent to.
type OptOut struct {
	// Number is E.164 with a leading '+'.
	Number string `json:"number"`
	// Since is when the opt-out was recorded.
	Since  time.Time `json:"since"`
	Source string    `json:"source"`
	// To is our number the STOP was sent to (or that sent the refused
	// message, for error_200); "" for the API.
	To          string `json:"to"`
	MessageUUID string `json:"message_uuid"`
}

// optOutKey is the bucket key of number: its digits, without '+' and the
// separators people type; nil when nothing is left.
func optOutKey(number string) []byte {
	k := appendPhone(nil, number)
	if len(k) == 0 || len(k) > 64 {
		return nil
	}
	return k
}

func encodeOptOut(o *OptOut) []byte {
	w := beginRecord(nil, formatV2)
	w.time(o.Since)
	w.string(o.Source)
	w.string(o.To)
	w.string(o.MessageUUID)
	return w.end()
}

func decodeOptOut(key, b []byte) (OptOut, error) {
	o := OptOut{Number: "+" + string(key)}
	r := reader{b: b}
	if r.begin() != formatV2 {
		return o, errCorrupt
	}
	o.Since = r.fTime()
	o.Source = r.fString()
	o.To = r.fString()
	o.MessageUUID = r.fString()
	return o, r.err
}

// plusNumber is a stored number as the opt-out list shows it.
func plusNumber(n string) string {
	if k := optOutKey(n); k != nil {
		return "+" + string(k)
	}
	return n
}

// applyOptOut updates the opt-out list for a newly stored event, in its
// transaction, so a STOP that was answered 200 is never lost: an inbound
// optout lists From, an optin removes it, and a failed delivery report
// with error 200 lists To. An existing entry is kept (its first reason is
// the one to show). It reports whether the list changed.
func applyOptOut(b *bolt.Bucket, ev *Event, m *Message) (bool, error) {
	var o OptOut
	var number string
	switch {
	case ev.Source == SourceInbound:
		number = ev.From
		switch IntentOf(ev.Payload) {
		case IntentOptOut:
			o = OptOut{Source: OptOutSourceInbound, To: plusNumber(ev.To)}
		case IntentOptIn:
			k := optOutKey(number)
			if k == nil || b.Get(k) == nil {
				return false, nil
			}
			if err := b.Delete(k); err != nil {
				return false, fmt.Errorf("delete opt-out: %w", err)
			}
			return true, nil
		default:
			return false, nil
		}
	case ev.ErrorCode == ErrorCodeOptedOut && (ev.Status == StatusUndelivered || ev.Status == StatusFailed):
		number = m.To
		o = OptOut{Source: OptOutSourceError200, To: plusNumber(m.From)}
	default:
		return false, nil
	}
	k := optOutKey(number)
	if k == nil || b.Get(k) != nil {
		return false, nil
	}
	o.Since, o.MessageUUID = ev.ReceivedAt, ev.MessageUUID
	if err := b.Put(k, encodeOptOut(&o)); err != nil {
		return false, fmt.Errorf("put opt-out: %w", err)
	}
	return true, nil
}

// OptOuts lists the opt-out list, newest first.
func (s *Store) OptOuts() ([]OptOut, error) {
	var list []OptOut
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOptOuts).ForEach(func(k, v []byte) error {
			o, err := decodeOptOut(k, v)
			if err != nil {
				return fmt.Errorf("opt-out %q: %w", k, err)
			}
			list = append(list, o)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list opt-outs: %w", err)
	}
	slices.SortFunc(list, func(a, b OptOut) int {
		if c := b.Since.Compare(a.Since); c != 0 {
			return c
		}
		return cmpString(a.Number, b.Number)
	})
	return list, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// OptOutCount is the length of the opt-out list.
func (s *Store) OptOutCount() (int, error) {
	var n int
	err := s.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketOptOuts).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count opt-outs: %w", err)
	}
	return n, nil
}

// OptedOut returns the opt-out of number, or ErrNotFound. A send checks it
// before calling Plivo.
func (s *Store) OptedOut(number string) (OptOut, error) {
	k := optOutKey(number)
	if k == nil {
		return OptOut{}, ErrNotFound
	}
	var o OptOut
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketOptOuts).Get(k)
		if v == nil {
			return ErrNotFound
		}
		var err error
		o, err = decodeOptOut(k, v)
		return err
	})
	if err != nil {
		return OptOut{}, fmt.Errorf("opt-out %s: %w", plusNumber(number), err)
	}
	return o, nil
}

// AddOptOut lists o.Number (Since defaults to now, Source to api). It
// reports false, changing nothing, when the number was already listed.
func (s *Store) AddOptOut(ctx context.Context, o OptOut) (bool, error) {
	k := optOutKey(o.Number)
	if k == nil {
		return false, fmt.Errorf("add opt-out: %q is not a number", o.Number)
	}
	if o.Since.IsZero() {
		o.Since = s.now()
	}
	o.Since = o.Since.UTC().Round(0)
	if o.Source == "" {
		o.Source = OptOutSourceAPI
	}
	added := false
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOptOuts)
		if added = b.Get(k) == nil; !added {
			return nil
		}
		return b.Put(k, encodeOptOut(&o))
	})
	if err != nil {
		return false, fmt.Errorf("add opt-out: %w", err)
	}
	return added, nil
}

// RemoveOptOut takes number off the list; ErrNotFound when it was not on it.
func (s *Store) RemoveOptOut(ctx context.Context, number string) error {
	k := optOutKey(number)
	if k == nil {
		return fmt.Errorf("remove opt-out %s: %w", number, ErrNotFound)
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOptOuts)
		if b.Get(k) == nil {
			return ErrNotFound
		}
		return b.Delete(k)
	})
	if err != nil {
		return fmt.Errorf("remove opt-out %s: %w", plusNumber(number), err)
	}
	return nil
}
