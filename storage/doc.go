// Package storage is the bbolt-backed system of record: every delivery
// report event, the current state of every message, and the indexes and
// counters the dashboard and API read.
//
// # Writes
//
// All writes go through one writer goroutine. Apply queues a request and
// waits; the writer takes the first queued request, drains whatever else is
// queued (up to maxBatch), applies them in one bbolt transaction, commits
// with fsync and answers each. A request rejected on its own (replayed
// nonce) is answered with its error without failing the batch; a failed
// commit fails the whole batch. Nothing is answered before its commit.
// Retention batches and other writes are requests to the same writer.
//
// After each commit the writer offers the newly stored events, in cursor
// order and without ever waiting, to the one consumer of Store.Applied (a
// bounded channel: a consumer that falls behind loses events, counted, and
// never stalls a commit).
//
// # Layout
//
//	messages      messageKey(MessageUUID) → message state + inline event index [(cursor, content hash)…] or "spilled"
//	events        8-byte BE cursor → event (status, error code, sequence, source, raw payload…)
//	by_time       8-byte BE FirstSeen Unix nanos + MessageUUID → empty
//	nonce_log     8-byte BE latest expiry + 8-byte BE sequence → the nonces one commit used (see nonce.go)
//	nonces        nonce → 8-byte BE expiry Unix nanos (written before nonce_log; read at Open, purged as it expires)
//	nonce_expiry  8-byte BE expiry + nonce → empty (purge order of nonces)
//	stats         8-byte BE hour start (Unix seconds) → counters of messages first seen that hour (status,
//	              time to deliver, error code, and bounded country/carrier/sender tables and spend: analytics.go)
//	stats_minute  8-byte BE minute start (Unix seconds) → status counters of that minute, kept 48 h
//	pending       8-byte BE LastSeen Unix nanos + MessageUUID → empty, for every non-terminal message (see pending.go)
//	meta          schema_version (8-byte BE), last_ping, and keys the app owns
//	message_events  len + messageKey + 8-byte BE cursor → content hash, for a spilled index (see eventindex.go)
//	message_hashes  len + messageKey + content hash → cursor, its duplicate lookup
//
// The per-message event index lives inside the message record while it has
// at most 32 entries: a message has a handful of events, the record is
// rewritten on every event anyway, and a second bucket would dirty another
// 4 KiB page per commit. A longer index spills to message_events and
// message_hashes, so an event costs the same whatever the history's length.
// Append-only buckets (events, by_time, nonce_log, stats) have time-ordered
// keys, so commits touch few pages; the nonces are looked up in memory
// (nonce.go), not in a random-key bucket.
// Values use a compact binary encoding (see encode.go).
package storage
