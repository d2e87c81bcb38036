package storage

import (
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// migration upgrades the file's layout to version inside the write
// transaction that Open runs at start: every step commits together with the
// new schema version or not at all.
type migration struct {
	// version is the schema version the file has after this step.
	version uint64
	// name says what the step does, for errors.
	name string
	up   func(tx *bolt.Tx) error
}

// migrations is the ordered list of layout changes, oldest first, versions
// strictly increasing. Append a step (never edit a released one) when the
// layout changes; Open creates every bucket of allBuckets before running
// the steps, so a step only has to fill or convert data.
var migrations = []migration{
	// Version 0 is a file created before the version was recorded (never
	// released): the layout is the same.
	{version: 1, name: "record schema version", up: func(*bolt.Tx) error { return nil }},
	{version: 2, name: "index pending messages", up: buildPendingIndex},
	{version: 3, name: "spill long event indexes", up: spillLongIndexes},
}

// schemaVersion is the layout this code reads and writes.
var schemaVersion = migrations[len(migrations)-1].version

// migrate runs the steps of list newer than version, in order, and returns
// the version reached.
func migrate(tx *bolt.Tx, version uint64, list []migration) (uint64, error) {
	for _, m := range list {
		if m.version <= version {
			continue
		}
		if err := m.up(tx); err != nil {
			return version, fmt.Errorf("migrate schema %d to %d (%s): %w", version, m.version, m.name, err)
		}
		version = m.version
	}
	return version, nil
}

// spillLongIndexes moves the event index of every message with more than
// inlineEvents events out of its record (see eventindex.go), so that the
// next event of a long history costs what the third does. Shorter indexes
// stay inline in their format-1 records, which still decode.
func spillLongIndexes(tx *bolt.Tx) error {
	mb := tx.Bucket(bucketMessages)
	// Collect first, rewrite after: bbolt cursors are not stable across
	// writes to their bucket.
	var long [][]byte
	var idx eventIndex
	var m Message
	err := mb.ForEach(func(k, v []byte) error {
		if err := decodeMessage(v, &m, &idx); err != nil {
			return fmt.Errorf("message %q: %w", k, err)
		}
		if !idx.spilled && len(idx.refs) > inlineEvents {
			long = append(long, slices.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	ib := spilledBuckets(tx)
	for _, k := range long {
		if err := decodeMessage(mb.Get(k), &m, &idx); err != nil {
			return fmt.Errorf("message %q: %w", k, err)
		}
		if err := ib.spill(indexPrefix(k), &idx); err != nil {
			return err
		}
		if err := mb.Put(k, encodeMessage(nil, &m, &idx)); err != nil {
			return fmt.Errorf("rewrite message %q: %w", k, err)
		}
	}
	return nil
}
