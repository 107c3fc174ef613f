package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	bolt "go.etcd.io/bbolt"
)

// maxBatch bounds the messages committed in one transaction.
const maxBatch = 512

// Service is one running dashboard.
type Service struct {
	opts  Options
	log   *slog.Logger
	store *store
	state *state
	stats *stats
	hub   *hub
	cmd   *commander
	rlog  *rateLog
	in    chan inbound

	connected   atomic.Bool
	beat        atomic.Int64 // unix ns of the processor's last loop, for the watchdog
	alertsDirty atomic.Bool
	started     time.Time
	closeOnce   sync.Once
}

// New opens the store in opts.StoreDir and restores the fleet state from it.
func New(opts Options) (*Service, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	cmd, err := newCommander(opts.Commands)
	if err != nil {
		return nil, err
	}
	st, err := openStore(opts.StoreDir)
	if err != nil {
		return nil, err
	}
	devs, err := st.loadDevices()
	if err != nil {
		st.close()
		return nil, fmt.Errorf("load fleet state: %w", err)
	}
	s := &Service{opts: opts, log: opts.Logger, store: st, state: newState(), hub: newHub(), cmd: cmd,
		rlog: newRateLog(10 * time.Second), in: make(chan inbound, opts.QueueSize), started: opts.Now()}
	for _, d := range devs {
		s.state.devices[deviceKey(d.Site, d.ID)] = d
	}
	s.stats = newStats(s)
	s.state.refreshAlerts(opts.Now(), opts.Alerts)
	s.beat.Store(opts.Now().UnixNano())
	return s, nil
}

// Close closes the store. Call it after Run has returned.
func (s *Service) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.store.close() })
	return err
}

// Run connects to the broker (if one is configured) and processes messages, prunes history
// and evaluates alerts until ctx is cancelled. It returns nil on cancellation.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var client mqtt.Client
	if s.opts.MQTT.Broker != "" {
		c, err := s.connectMQTT(ctx)
		if err != nil {
			return err
		}
		client = c
		s.cmd.setClient(c)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.pruneLoop(ctx) }()
	go func() { defer wg.Done(); s.alertLoop(ctx) }()
	s.process(ctx)
	if client != nil {
		client.Disconnect(500)
	}
	cancel()
	wg.Wait()
	return nil
}

// Healthy reports whether the processor is looping; the systemd watchdog is fed only then.
func (s *Service) Healthy() bool {
	return s.opts.Now().Sub(time.Unix(0, s.beat.Load())) < 10*time.Second
}

// Connected reports whether the dashboard is connected and its subscription acknowledged.
func (s *Service) Connected() bool { return s.connected.Load() }

func (s *Service) process(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	batch := make([]inbound, 0, maxBatch)
	var expired time.Time // last expiry of silent devices
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			now := s.opts.Now()
			s.beat.Store(now.UnixNano())
			// Here, not in pruneLoop: only the processor writes device records, so a message
			// applied concurrently cannot bring a forgotten record back half-made.
			if now.Sub(expired) >= s.opts.Retention.PruneEvery {
				expired = now
				s.expireDevices(now)
			}
		case m := <-s.in:
			batch = append(batch[:0], m)
		drain:
			for len(batch) < maxBatch {
				select {
				case m := <-s.in:
					batch = append(batch, m)
				default:
					break drain
				}
			}
			s.applyBatch(batch)
			s.beat.Store(s.opts.Now().UnixNano())
		}
	}
}

// outcome of one message inside a batch.
type outcome struct {
	kind, result string
	delay        time.Duration // publish ts → committed; <0 when not measured
}

// ingest applies messages synchronously (as the processor does); tests and the fuzzer use it.
func (s *Service) ingest(msgs ...inbound) { s.applyBatch(msgs) }

// applyBatch decodes, applies and stores a batch in one transaction, then acknowledges it.
func (s *Service) applyBatch(batch []inbound) {
	outs := make([]outcome, len(batch))
	var kinds eventKinds
	var delays []time.Time // publish ts of measured messages, parallel to measured
	var measured []int
	err := s.store.db.Update(func(tx *bolt.Tx) error {
		s.state.mu.Lock()
		defer s.state.mu.Unlock()
		dirty := map[*deviceState]bool{}
		for i, m := range batch {
			outs[i].delay = -1
			d, err := decode(s.opts.MQTT.TopicPrefix, m.topic, m.payload, s.opts.MaxPayload)
			if err == nil {
				// The cap goes through the same count-and-log path as the contract checks.
				err = s.state.admit(d.site, d.device, s.opts.MaxDevices)
			}
			outs[i].kind = d.kind
			if err != nil {
				outs[i].result = outcomeOf(err)
				if !errors.Is(err, errIgnored) {
					s.logReject(outs[i].result, err, m.recv)
				}
				continue
			}
			dev := s.state.device(d.site, d.device, m.recv)
			res, pub, err := s.apply(tx, dev, d, m)
			if err != nil {
				return err
			}
			outs[i].result = res
			// Even a stale or duplicate message moves last_seen, so the device is always saved.
			dirty[dev] = true
			if res == outAccepted {
				kinds |= kindEvent(d.kind)
				if !m.retained {
					measured = append(measured, i)
					delays = append(delays, pub)
				}
			}
		}
		for d := range dirty {
			if err := putDevice(tx, d); err != nil {
				return err
			}
		}
		return nil
	})
	now := s.opts.Now()
	if err != nil {
		// Not acknowledged: the broker redelivers the batch after a reconnect.
		s.log.Error("store write failed; batch not acknowledged", "messages", len(batch), "err", err)
		for i := range outs {
			outs[i].result = outStoreError
		}
		s.stats.record(outs, now)
		s.forceReloadAfterFailure()
		return
	}
	stored := 0 // counted only now that the transaction holds them
	for _, o := range outs {
		if o.kind == kindResult && o.result == outAccepted {
			stored++
		}
	}
	s.stats.addResultCount(stored)
	for j, i := range measured {
		outs[i].delay = now.Sub(delays[j])
	}
	for _, m := range batch {
		if m.ack != nil {
			m.ack()
		}
	}
	s.stats.record(outs, now)
	if kinds != 0 {
		s.alertsDirty.Store(true)
		s.hub.publish(kinds)
	}
}

// forceReloadAfterFailure restores the in-memory state from the store after a failed
// transaction, so memory never runs ahead of what is on disk.
func (s *Service) forceReloadAfterFailure() {
	devs, err := s.store.loadDevices()
	if err != nil {
		s.log.Error("reload fleet state", "err", err)
		return
	}
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	s.state.devices = map[string]*deviceState{}
	for _, d := range devs {
		s.state.devices[deviceKey(d.Site, d.ID)] = d
	}
}

// apply applies one decoded message to its device and the store. It returns the outcome and
// the publish time used to measure the end-to-end delay.
func (s *Service) apply(tx *bolt.Tx, dev *deviceState, d decoded, m inbound) (string, time.Time, error) {
	switch d.kind {
	case kindStatus:
		if !dev.applyStatus(d.status, m.recv) {
			return outStale, time.Time{}, nil
		}
		return outAccepted, d.status.TS, nil
	case kindHealth:
		live := dev.applyHealth(d.health, m.recv)
		stored, err := addHealth(tx, d.site, d.device, pointOf(d.health, effTS(d.health.TS, m.recv)), s.opts.Retention.HealthMinInterval)
		if err != nil {
			return "", time.Time{}, err
		}
		if !live && !stored {
			return outStale, time.Time{}, nil
		}
		return outAccepted, d.health.TS, nil
	case kindResult:
		rec := recordOf(d.site, d.device, d.result, m.recv)
		err := addResult(tx, rec)
		if errors.Is(err, errDuplicate) {
			dev.seen(effTS(d.result.ScoredAt, m.recv), m.recv)
			return outDuplicate, time.Time{}, nil
		}
		if err != nil {
			return "", time.Time{}, err
		}
		dev.seen(effTS(d.result.ScoredAt, m.recv), m.recv)
		dev.Results++
		if d.result.ScoredAt.After(dev.LastResult) {
			dev.LastResult = d.result.ScoredAt
		}
		if modelKey(dev.Model) == "" {
			dev.Model = d.result.Model
		}
		return outAccepted, d.result.ScoredAt, nil
	}
	return "error", time.Time{}, nil
}

func (s *Service) logReject(reason string, err error, now time.Time) {
	if ok, quiet := s.rlog.allow(reason, now); ok {
		s.log.Warn("message rejected", "reason", reason, "err", err, "suppressed_since_last", quiet)
	}
}

func (s *Service) pruneLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.Retention.PruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ps, err := s.store.prune(s.opts.Now(), s.opts.Retention)
			// Batches committed before an error are gone all the same: count them.
			s.stats.addResultCount(-ps.Results)
			if err != nil {
				s.log.Error("prune history", "err", err)
			} else if ps.Results+ps.Health > 0 {
				s.log.Info("pruned history", "results", ps.Results, "health_points", ps.Health)
			}
		}
	}
}

// expireDevices forgets the devices not heard from for Retention.DeviceMaxAge, in the store
// and then in memory, and reports how many went. Only the processor calls it.
func (s *Service) expireDevices(now time.Time) int {
	cutoff := now.Add(-s.opts.Retention.DeviceMaxAge)
	var gone []string
	s.state.mu.RLock()
	for k, d := range s.state.devices {
		if d.LastSeen.Before(cutoff) && d.FirstAt.Before(cutoff) {
			gone = append(gone, k)
		}
	}
	s.state.mu.RUnlock()
	if len(gone) == 0 {
		return 0 // no write transaction (and fsync) every PruneEvery for nothing
	}
	// The processor is the only writer of device records, so the list is still true here.
	err := s.store.db.Update(func(tx *bolt.Tx) error {
		for _, k := range gone {
			if err := deleteDevice(tx, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("forget silent devices", "err", err)
		return 0
	}
	s.state.mu.Lock()
	for _, k := range gone {
		delete(s.state.devices, k)
		delete(s.state.alerts, k)
	}
	s.state.mu.Unlock()
	s.log.Info("forgot silent devices", "devices", len(gone), "silent_for", s.opts.Retention.DeviceMaxAge.String())
	s.alertsDirty.Store(true)
	s.hub.publish(evDevices | evAlerts)
	return len(gone)
}

func (s *Service) alertLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n++
			// Time alone raises offline/silent alerts, so evaluate every 5 s even when idle.
			if s.alertsDirty.Swap(false) || n%5 == 0 {
				if s.state.refreshAlerts(s.opts.Now(), s.opts.Alerts) {
					s.hub.publish(evAlerts | evDevices)
				}
			}
		}
	}
}
