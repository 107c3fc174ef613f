package store_test

import (
	"fmt"
	"log"
	"os"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// The daemon's loop: record the input, score it, commit result + outbox entry in one
// transaction; the publisher acks the entry after the broker's PUBACK.
func Example() {
	dir, _ := os.MkdirTemp("", "store-example")
	defer os.RemoveAll(dir)
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	img := []byte("…image bytes…")
	in, dup, _ := s.Submit("folder", "chest.png", img, time.Now())
	fmt.Println("duplicate:", dup, "state:", in.State)
	_, dup, _ = s.Submit("http", "again.png", img, time.Now())
	fmt.Println("same image again, duplicate:", dup)

	// After a crash, Pending() lists what to score again.
	pending, _ := s.Pending()
	fmt.Println("pending:", len(pending))

	seq, _ := s.Commit(telemetry.Result{ID: in.ID, Label: telemetry.LabelNormal, Score: 0.12, Threshold: 0.5})
	entries, _ := s.Outbox(16)
	fmt.Println("outbox:", len(entries), entries[0].Seq == seq)

	_ = s.Ack(seq) // after PUBACK
	st, _ := s.Stats()
	fmt.Printf("inputs=%d pending=%d outbox=%d\n", st.Inputs, st.Pending, st.Outbox)
	// Output:
	// duplicate: false state: pending
	// same image again, duplicate: true
	// pending: 1
	// outbox: 1 true
	// inputs=1 pending=0 outbox=0
}
