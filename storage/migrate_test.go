package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestMigrate(t *testing.T) {
	s := mustOpenStore(t)
	var ran []string
	step := func(name string, err error) func(*bolt.Tx) error {
		return func(*bolt.Tx) error {
			ran = append(ran, name)
			return err
		}
	}
	boom := errors.New("boom")
	list := []migration{
		{version: 1, name: "one", up: step("one", nil)},
		{version: 2, name: "two", up: step("two", nil)},
		{version: 5, name: "five", up: step("five", nil)},
	}
	tests := []struct {
		name    string
		from    uint64
		list    []migration
		want    uint64
		wantRan string
		wantErr error
	}{
		{name: "from zero", from: 0, list: list, want: 5, wantRan: "[one two five]"},
		{name: "from middle", from: 2, list: list, want: 5, wantRan: "[five]"},
		{name: "current", from: 5, list: list, want: 5, wantRan: "[]"},
		{name: "failure stops", from: 0, list: []migration{list[0], {version: 2, name: "bad", up: step("bad", boom)}, list[2]},
			want: 1, wantRan: "[one bad]", wantErr: boom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ran = []string{}
			var got uint64
			var err error
			_ = s.db.View(func(tx *bolt.Tx) error {
				got, err = migrate(tx, tc.from, tc.list)
				return nil
			})
			if got != tc.want || fmt.Sprint(ran) != tc.wantRan || !errors.Is(err, tc.wantErr) {
				t.Errorf("got version %d, ran %v, err %v; want %d, %s, %v", got, ran, err, tc.want, tc.wantRan, tc.wantErr)
			}
		})
	}
	for i := 1; i < len(migrations); i++ {
		if migrations[i].version <= migrations[i-1].version {
			t.Errorf("migrations[%d].version = %d, want more than %d", i, migrations[i].version, migrations[i-1].version)
		}
	}
}

// A file written by schema version 2 (format-1 records, every index inline)
// opens: long indexes are spilled, short ones stay, histories and duplicate
// detection are unchanged.
func TestMigrateSpillsLongIndexes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dlr.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Write what a schema-2 binary would have.
	received := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	histories := map[string]int{"long": inlineEvents + 20, "short": 3}
	hashes := map[string][]uint64{}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		eb, mb := tx.Bucket(bucketEvents), tx.Bucket(bucketMessages)
		cursor := uint64(0)
		for _, uuid := range []string{"long", "short"} {
			var m Message
			var refs []eventRef
			for i := range histories[uuid] {
				e := ev(uuid, StatusSent, int64(i+1))
				e.ReceivedAt = received.Add(time.Duration(cursor) * time.Second)
				keys := sortedKeys(e.Payload)
				cursor++
				e.Cursor = cursor
				m.Fold(&e)
				h := contentHash(&e, keys)
				hashes[uuid] = append(hashes[uuid], h)
				refs = append(refs, eventRef{cursor: cursor, hash: h})
				if err := eb.Put(u64key(cursor), encodeEventV1(nil, &e, keys)); err != nil {
					return err
				}
			}
			if err := mb.Put(messageKey(uuid), encodeMessageV1(nil, &m, refs)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketByTime).Put(byTimeKey(m.FirstSeen, uuid), nil); err != nil {
				return err
			}
		}
		if err := eb.SetSequence(cursor); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put([]byte(metaSchemaVersion), u64key(2))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpenPath(t, path, Options{NoSync: true})
	v, err := s.GetMeta(metaSchemaVersion)
	if err != nil || len(v) != 8 || binary.BigEndian.Uint64(v) != schemaVersion || schemaVersion < 3 {
		t.Fatalf("schema version after open = %v, %v; want %d", v, err, schemaVersion)
	}
	if !isSpilled(t, s, "long") || isSpilled(t, s, "short") {
		t.Errorf("spilled after migration: long %v, short %v; want true, false", isSpilled(t, s, "long"), isSpilled(t, s, "short"))
	}
	for uuid, n := range histories {
		got := pageAll(t, s, uuid, 10, false)
		if len(got) != n || got[0] >= got[n-1] {
			t.Errorf("%s after migration: events %v, want %d ascending", uuid, got, n)
		}
		m, _ := mustGet(t, s, uuid)
		if m.EventCount != n || m.Status != StatusSent || m.To != "+14155550100" {
			t.Errorf("%s after migration = %+v, want its %d events folded", uuid, m, n)
		}
		// The stored hashes still recognise a retry.
		res := mustApply(t, s, ev(uuid, StatusSent, 2))
		if !res.Duplicate || res.Cursor != got[1] {
			t.Errorf("%s: retry of event 2 = %+v, want duplicate of %d", uuid, res, got[1])
		}
		res = mustApply(t, s, ev(uuid, StatusDelivered, int64(n+1)))
		if res.Duplicate || res.Message.EventCount != n+1 || res.Message.Status != StatusDelivered {
			t.Errorf("%s: new event after migration = %+v, want stored as event %d", uuid, res, n+1)
		}
	}
	if k := countKeys(t, s, bucketMessageHashes); k != histories["long"]+1 {
		t.Errorf("hash index holds %d keys, want the long message's %d", k, histories["long"]+1)
	}
}
