package telemetry_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// How the daemon wires the publisher: the store is the outbox, a HealthSource combines
// the machine's figures with the daemon's counters.
func ExamplePublisher() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()

	topics, err := telemetry.NewTopics("", "clinic-7", "cart-2")
	if err != nil {
		log.Fatal(err)
	}
	collector := telemetry.NewCollector(telemetry.CollectorOptions{DiskPath: dir})
	latencies := telemetry.NewLatencies(0)
	health := telemetry.HealthFunc(func(ctx context.Context) (telemetry.Health, error) {
		sys, err := collector.System(ctx) // partial figures still come back with an error
		if err != nil {
			log.Print(err)
		}
		s, _ := st.Stats()
		p := latencies.Percentiles(50, 95)
		return telemetry.NewHealth(time.Now(), sys, telemetry.Counters{Queue: s.Pending, Outbox: s.Outbox,
			InferMsP50: p[0], InferMsP95: p[1], Indicator: "ready"}), nil
	})
	pub, err := telemetry.NewPublisher(telemetry.PublisherOptions{
		Broker: "tcp://127.0.0.1:1883", Topics: topics, Version: "1.0.0",
		Model: telemetry.ModelRef{Name: "cxr-pneumonia", Version: "3", SHA256: "…"},
	}, st, health, nil)
	if err != nil {
		log.Fatal(err)
	}
	// The daemon runs it until shutdown and calls pub.Notify() after each store.Commit.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = pub.Run(ctx) // publishes offline and disconnects when ctx ends
	fmt.Println(topics.Result())
	// Output: cxr/clinic-7/cart-2/result
}

func ExampleLatencies() {
	l := telemetry.NewLatencies(100)
	for ms := 1; ms <= 20; ms++ {
		l.Observe(time.Duration(ms) * time.Millisecond)
	}
	fmt.Println(l.Percentiles(50, 95))
	// Output: [10 19]
}

func ExampleParseThrottled() {
	now, err := telemetry.ParseThrottled("throttled=0x50005")
	fmt.Println(now, err)
	// Output: true <nil>
}
