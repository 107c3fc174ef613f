package telemetry

// OutboxEntry is one result waiting for the broker's acknowledgement. Payload is the JSON
// of a Result exactly as it is published on …/result.
type OutboxEntry struct {
	Seq      uint64 // position in the outbox; entries are published in ascending Seq
	ResultID string
	Payload  []byte
}

// Outbox is the durable queue the publisher drains (edge/store implements it). It is defined
// here, where it is used, so the publisher needs nothing else from the store.
type Outbox interface {
	// Outbox returns up to limit of the oldest entries, oldest first, without removing them.
	Outbox(limit int) ([]OutboxEntry, error)
	// Ack removes the entry with this sequence once the broker acknowledged it. Acking an
	// absent sequence is not an error: a repeated acknowledgement is harmless.
	Ack(seq uint64) error
}
