package storage

import "bytes"

// inboundFilter is the part of a listing's filter that inbound messages
// added: direction, and the exact number of a conversation. Both are
// checked on the peeked record (status, from, to), without decoding it.
type inboundFilter struct {
	// direction: 0 both, 1 inbound only, 2 outbound only.
	direction int
	// number is the conversation's number without '+' or separators; nil
	// for none.
	number []byte
}

func compileInboundFilter(f ListFilter) inboundFilter {
	var in inboundFilter
	switch f.Direction {
	case DirectionInbound:
		in.direction = 1
	case DirectionOutbound:
		in.direction = 2
	}
	if f.Number != "" {
		in.number = appendPhone(nil, f.Number)
	}
	return in
}

// match reports whether a peeked message passes. An inbound message is one
// whose status is StatusReceived: it has one event and that is its status,
// and no outbound status report says "received".
func (in *inboundFilter) match(p *messagePeek, scratch *[]byte) bool {
	switch in.direction {
	case 1:
		if string(p.status) != StatusReceived {
			return false
		}
	case 2:
		if string(p.status) == StatusReceived {
			return false
		}
	}
	if in.number == nil {
		return true
	}
	*scratch = appendPhone((*scratch)[:0], p.from)
	if bytes.Equal(*scratch, in.number) {
		return true
	}
	*scratch = appendPhone((*scratch)[:0], p.to)
	return bytes.Equal(*scratch, in.number)
}
