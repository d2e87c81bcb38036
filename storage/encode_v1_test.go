package storage

import "encoding/binary"

// The format-1 encoders, as released (schema versions ≤ 2), kept frozen so
// tests can write records the way older binaries did: files written by them
// must still open.

func encodeMessageV1(b []byte, m *Message, refs []eventRef) []byte {
	b = append(b, formatV1)
	b = appendTime(b, m.FirstSeen)
	b = appendTime(b, m.LastSeen)
	b = appendString(b, m.Status)
	b = appendString(b, m.To)
	b = appendString(b, m.From)
	b = appendString(b, m.MessageUUID)
	b = appendString(b, m.ErrorCode)
	b = appendString(b, m.Type)
	b = binary.AppendVarint(b, int64(m.Units))
	b = appendString(b, m.TotalRate)
	b = appendString(b, m.TotalAmount)
	b = appendString(b, m.MCC)
	b = appendString(b, m.MNC)
	b = appendString(b, m.ParentMessageUUID)
	b = appendString(b, m.PartInfo)
	b = appendTimePtr(b, m.MessageTime)
	b = appendTimePtr(b, m.QueuedTime)
	b = appendTimePtr(b, m.SentTime)
	b = appendTimePtr(b, m.DeliveryReportTime)
	b = binary.AppendVarint(b, int64(m.EventCount))
	b = appendString(b, m.Text)
	b = binary.AppendUvarint(b, uint64(len(m.MediaURLs)))
	for _, u := range m.MediaURLs {
		b = appendString(b, u)
	}
	b = binary.AppendVarint(b, m.StatusSequence)
	// The per-message event index lives inside the message record: a message
	// has a handful of events, and keeping their (cursor, hash) pairs here
	// means duplicate detection and history lookup cost no second
	// random-key bucket (each random key dirties a 4 KiB page per commit).
	b = binary.AppendUvarint(b, uint64(len(refs)))
	for _, r := range refs {
		b = binary.BigEndian.AppendUint64(b, r.cursor)
		b = binary.BigEndian.AppendUint64(b, r.hash)
	}
	return b
}

func encodeEventV1(b []byte, ev *Event, keys []string) []byte {
	b = append(b, formatV1)
	b = appendString(b, ev.MessageUUID)
	b = appendString(b, ev.Status)
	b = appendString(b, ev.ErrorCode)
	b = binary.AppendVarint(b, ev.Sequence)
	b = appendTime(b, ev.ReceivedAt)
	b = appendString(b, ev.Source)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, ev.Payload[k])
	}
	b = appendString(b, ev.From)
	b = appendString(b, ev.To)
	b = appendString(b, ev.Type)
	b = binary.AppendVarint(b, int64(ev.Units))
	b = appendString(b, ev.TotalRate)
	b = appendString(b, ev.TotalAmount)
	b = appendString(b, ev.MCC)
	b = appendString(b, ev.MNC)
	b = appendString(b, ev.ParentMessageUUID)
	b = appendString(b, ev.PartInfo)
	b = appendTimePtr(b, ev.MessageTime)
	b = appendTimePtr(b, ev.QueuedTime)
	b = appendTimePtr(b, ev.SentTime)
	b = appendTimePtr(b, ev.DeliveryReportTime)
	b = appendString(b, ev.Text)
	b = binary.AppendUvarint(b, uint64(len(ev.MediaURLs)))
	for _, u := range ev.MediaURLs {
		b = appendString(b, u)
	}
	return b
}
