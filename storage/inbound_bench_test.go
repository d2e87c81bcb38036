package storage

import (
	"testing"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkApplyOptOutStatus measures what the opt-out list adds to the
// writer for an ordinary status event (delivered, no error 200): the only
// writer work inbound messages added to the status-callback path, beside
// two empty strings in the message record. Compare with the writer's cost
// per event (BenchmarkApplyParallel, microseconds).
//
//	go test -run '^$' -bench BenchmarkApplyOptOutStatus -benchmem ./storage
func BenchmarkApplyOptOutStatus(b *testing.B) {
	s := mustOpenStore(b)
	e := ev("0c7e1a42-2f61-11ef-a3d5-0242ac120003", StatusDelivered, 3, "ErrorCode", "000")
	m := Message{MessageUUID: e.MessageUUID, Details: e.Details}
	err := s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketOptOuts)
		b.ReportAllocs()
		for b.Loop() {
			if changed, err := applyOptOut(bk, &e, &m); err != nil || changed {
				b.Fatalf("applyOptOut = %v, %v", changed, err)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
