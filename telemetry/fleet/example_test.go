package fleet_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"

	"github.com/cxr-edge/cxr-edge/telemetry/fleet"
)

// A dashboard: open the store, serve the UI/API, run the intake until the context ends.
func Example() {
	dir, _ := os.MkdirTemp("", "fleet-example-")
	defer os.RemoveAll(dir)

	opts := fleet.DefaultOptions()
	opts.StoreDir = dir
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	// opts.MQTT.Broker = "ssl://broker.hospital.example:8883" // and CAFile, CertFile, …
	svc, err := fleet.New(opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer svc.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }() // stop Run before Close

	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/api/devices")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.Status, " ", string(body))
	// Output: 200 OK []
}

func ExampleMQTTOptions_SubscriptionTopic() {
	o := fleet.DefaultOptions()
	fmt.Println(o.MQTT.SubscriptionTopic())
	o.MQTT.SharedGroup = "dashboards" // several instances share the messages
	fmt.Println(o.MQTT.SubscriptionTopic())
	// Output:
	// cxr/+/+/#
	// $share/dashboards/cxr/+/+/#
}
