package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// LoadOptions configure a load run: Devices simulated devices, each with its own MQTT
// connection and Last Will, publish health every HealthEvery and a result about every
// ResultEvery, for Duration. The run always stops by itself.
type LoadOptions struct {
	Broker      string        // required, e.g. tcp://127.0.0.1:1883
	Prefix      string        // default "cxr"
	Devices     int           // default 100, at most 20000
	Sites       int           // devices are spread over this many sites (default 10)
	Duration    time.Duration // default 60s, at most 10 minutes
	HealthEvery time.Duration // default 10s
	ResultEvery time.Duration // default 60s per device
	// Settle is how long to wait after publishing for the dashboard to catch up (default 10s).
	Settle time.Duration
	Logger *slog.Logger
}

// LoadReport is what a load run measured. Delays and memory are the dashboard's own figures.
type LoadReport struct {
	Devices      int           `json:"devices"`
	Connected    int           `json:"connected"`
	Duration     time.Duration `json:"duration_ns"`
	Published    uint64        `json:"published"`
	PublishFails uint64        `json:"publish_failures"`
	Processed    uint64        `json:"processed"` // by the dashboard during the run
	Rejected     uint64        `json:"rejected"`
	PerSecond    float64       `json:"processed_per_s"`
	Delay        DelayStats    `json:"delay_ms"`
	HeapBytes    uint64        `json:"heap_bytes"`
	RSSBytes     uint64        `json:"rss_bytes"`
}

func (r LoadReport) String() string {
	return fmt.Sprintf("devices %d (connected %d), %v: published %d (%d failed), dashboard processed %d = %.1f msg/s, rejected %d\n"+
		"end-to-end delay over %d live messages: p50 %.1f ms, p95 %.1f ms, max %.1f ms\n"+
		"dashboard memory: RSS %.1f MiB, Go heap %.1f MiB",
		r.Devices, r.Connected, r.Duration.Round(time.Second), r.Published, r.PublishFails, r.Processed, r.PerSecond, r.Rejected,
		r.Delay.Samples, r.Delay.P50, r.Delay.P95, r.Delay.Max, float64(r.RSSBytes)/(1<<20), float64(r.HeapBytes)/(1<<20))
}

// StatsSource returns the dashboard's current statistics.
type StatsSource func(ctx context.Context) (Stats, error)

// HTTPStats reads GET <base>/api/stats of a running dashboard.
func HTTPStats(base string) StatsSource {
	return func(ctx context.Context) (Stats, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/api/stats", nil)
		if err != nil {
			return Stats{}, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return Stats{}, fmt.Errorf("dashboard stats: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return Stats{}, fmt.Errorf("dashboard stats: %s", resp.Status)
		}
		var st Stats
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return Stats{}, fmt.Errorf("dashboard stats: %w", err)
		}
		return st, nil
	}
}

// Stats returns the dashboard's statistics, as GET /api/stats does.
func (s *Service) Stats(context.Context) (Stats, error) { return s.snapshotStats(), nil }

func (o LoadOptions) withDefaults() (LoadOptions, error) {
	if o.Broker == "" {
		return o, errors.New("loadgen: --broker is required")
	}
	if o.Prefix == "" {
		o.Prefix = telemetry.DefaultTopicPrefix
	}
	if o.Devices == 0 {
		o.Devices = 100
	}
	if o.Sites == 0 {
		o.Sites = 10
	}
	if o.Duration == 0 {
		o.Duration = time.Minute
	}
	if o.HealthEvery == 0 {
		o.HealthEvery = 10 * time.Second
	}
	if o.ResultEvery == 0 {
		o.ResultEvery = time.Minute
	}
	if o.Settle == 0 {
		o.Settle = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.Devices < 1 || o.Devices > 20000:
		return o, fmt.Errorf("loadgen: devices %d: want 1 to 20000", o.Devices)
	case o.Sites < 1 || o.Sites > o.Devices:
		return o, fmt.Errorf("loadgen: sites %d: want 1 to the number of devices", o.Sites)
	case o.Duration > 10*time.Minute || o.Duration < time.Second:
		return o, fmt.Errorf("loadgen: duration %v: want 1s to 10m", o.Duration)
	case o.HealthEvery < 100*time.Millisecond || o.ResultEvery < 100*time.Millisecond:
		return o, errors.New("loadgen: health and result intervals must be at least 100ms")
	}
	return o, nil
}

// RunLoad simulates the fleet against the broker and reports what the dashboard behind stats
// processed meanwhile. Run it against a freshly started dashboard: the delay percentiles
// cover the dashboard's most recent 32768 live messages.
func RunLoad(ctx context.Context, o LoadOptions, stats StatsSource) (LoadReport, error) {
	o, err := o.withDefaults()
	if err != nil {
		return LoadReport{}, err
	}
	before, err := stats(ctx)
	if err != nil {
		return LoadReport{}, err
	}
	run := fmt.Sprintf("%x", rand.Uint32())
	var published, failed atomic.Uint64
	clients := make([]mqtt.Client, o.Devices)
	var connected atomic.Int64
	// Connect in parallel but bounded, as devices coming up after a power cut would.
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range o.Devices {
		site, dev := fmt.Sprintf("site-%02d", i%o.Sites), fmt.Sprintf("dev-%05d", i)
		tp, _ := telemetry.NewTopics(o.Prefix, site, dev)
		will, _ := json.Marshal(telemetry.Status{Schema: telemetry.SchemaStatus, State: telemetry.StateOffline, TS: time.Now().UTC()})
		co := mqtt.NewClientOptions().AddBroker(o.Broker).SetClientID("loadgen-"+run+"-"+dev).
			SetCleanSession(true).SetAutoReconnect(false).SetKeepAlive(60*time.Second).
			SetBinaryWill(tp.Status(), will, 1, true)
		clients[i] = mqtt.NewClient(co)
		wg.Add(1)
		sem <- struct{}{}
		go func(c mqtt.Client) {
			defer wg.Done()
			defer func() { <-sem }()
			t := c.Connect()
			if t.WaitTimeout(20*time.Second) && t.Error() == nil {
				connected.Add(1)
			}
		}(clients[i])
	}
	wg.Wait()
	o.Logger.Info("loadgen: devices connected", "connected", connected.Load(), "of", o.Devices)
	defer func() {
		for _, c := range clients {
			if c.IsConnected() {
				c.Disconnect(50)
			}
		}
	}()
	start := time.Now()
	runCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	pub := func(c mqtt.Client, topic string, retained bool, v any) {
		b, _ := json.Marshal(v)
		t := c.Publish(topic, 1, retained, b)
		published.Add(1)
		if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			failed.Add(1)
		}
	}
	for i, c := range clients {
		if !c.IsConnected() {
			continue
		}
		wg.Add(1)
		go func(i int, c mqtt.Client) {
			defer wg.Done()
			simulateDevice(runCtx, o, i, run, c, pub)
		}(i, c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Let the dashboard drain what is in flight, then read its figures.
	deadline := time.Now().Add(o.Settle)
	var after Stats
	for {
		if after, err = stats(ctx); err != nil {
			return LoadReport{}, err
		}
		if after.Processed-before.Processed >= published.Load()-failed.Load() || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var rejBefore, rejAfter uint64
	for _, n := range before.Rejected {
		rejBefore += n
	}
	for _, n := range after.Rejected {
		rejAfter += n
	}
	rep := LoadReport{Devices: o.Devices, Connected: int(connected.Load()), Duration: elapsed,
		Published: published.Load(), PublishFails: failed.Load(), Processed: after.Processed - before.Processed,
		Rejected: rejAfter - rejBefore, Delay: after.Delay, HeapBytes: after.HeapB, RSSBytes: after.RSSB}
	rep.PerSecond = float64(rep.Processed) / elapsed.Seconds()
	return rep, nil
}

// simulateDevice publishes one device's status, health and results until ctx ends. Phases
// are random so the fleet's messages spread evenly over each interval.
func simulateDevice(ctx context.Context, o LoadOptions, i int, run string, c mqtt.Client, pub func(mqtt.Client, string, bool, any)) {
	site, dev := fmt.Sprintf("site-%02d", i%o.Sites), fmt.Sprintf("dev-%05d", i)
	tp, _ := telemetry.NewTopics(o.Prefix, site, dev)
	model := telemetry.ModelRef{Name: "cxr-pneumonia-int8", Version: "1", SHA256: "5f2c0d1e9a7b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5"}
	pub(c, tp.Status(), true, telemetry.Status{Schema: telemetry.SchemaStatus, State: telemetry.StateOnline, TS: time.Now().UTC(), Version: "loadgen", Model: model})
	rng := rand.New(rand.NewPCG(uint64(i), 42))
	temp := 45 + 10*rng.Float64()
	var scored, n uint64
	nextHealth := time.Now().Add(time.Duration(rng.Int64N(int64(o.HealthEvery))))
	nextResult := time.Now().Add(time.Duration(rng.Int64N(int64(o.ResultEvery))))
	for {
		next := nextHealth
		if nextResult.Before(next) {
			next = nextResult
		}
		wait := time.Until(next)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		now := time.Now().UTC()
		if !now.Before(nextHealth) {
			nextHealth = nextHealth.Add(o.HealthEvery)
			t := temp + rng.Float64()
			pub(c, tp.Health(), true, telemetry.Health{Schema: telemetry.SchemaHealth, TS: now, UptimeS: float64(n) * 10,
				CPUPct: 20 + 30*rng.Float64(), Load1: rng.Float64(), MemUsed: 900 << 20, MemTotal: 4 << 30, DiskFree: 20 << 30,
				TempC: &t, Queue: rng.IntN(2), Outbox: 0, Scored: scored, InferMsP50: 180, InferMsP95: 240, Indicator: "green"})
		}
		if !now.Before(nextResult) {
			nextResult = nextResult.Add(time.Duration(float64(o.ResultEvery) * (0.5 + rng.Float64())))
			n++
			scored++
			score := rng.Float64()
			label := telemetry.LabelNormal
			if score >= 0.5 {
				label = telemetry.LabelPneumonia
			}
			pub(c, tp.Result(), false, telemetry.Result{Schema: telemetry.SchemaResult, ID: fmt.Sprintf("%s-%s-%d", run, dev, n),
				ReceivedAt: now.Add(-300 * time.Millisecond), ScoredAt: now, Source: "folder", Label: label, Score: score,
				Threshold: 0.5, Model: model, TimingsMs: telemetry.Timings{Decode: 40, Preprocess: 20, Infer: 200, Total: 260},
				Image: telemetry.ImageInfo{Format: "jpeg", Width: 1024, Height: 1024}})
		}
	}
}
