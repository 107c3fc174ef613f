package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Reasons a message is rejected. Each is counted (outcome label) and logged, rate-limited.
var (
	ErrOversized     = errors.New("payload too large")
	ErrBadTopic      = errors.New("topic outside the contract")
	ErrMalformed     = errors.New("malformed JSON")
	ErrUnknownSchema = errors.New("unknown schema")
	ErrInvalid       = errors.New("invalid payload")
	// ErrDeviceLimit: the message is from a new device while Options.MaxDevices are known.
	ErrDeviceLimit = errors.New("device limit reached")
	// errIgnored marks contract topics the dashboard does not consume (commands, replies).
	errIgnored = errors.New("not consumed by the dashboard")
)

// Message kinds.
const (
	kindStatus  = "status"
	kindHealth  = "health"
	kindResult  = "result"
	kindUnknown = "unknown"
)

// Outcomes of one message, the "outcome" label of cxr_dashboard_messages_total.
const (
	outAccepted   = "accepted"
	outDuplicate  = "duplicate"
	outStale      = "stale"
	outStoreError = "store_error"
)

// outcomeOf names the counter of a decode error.
func outcomeOf(err error) string {
	switch {
	case errors.Is(err, ErrOversized):
		return "oversized"
	case errors.Is(err, ErrBadTopic):
		return "bad_topic"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrUnknownSchema):
		return "unknown_schema"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrDeviceLimit):
		return "device_limit"
	case errors.Is(err, errIgnored):
		return "ignored"
	}
	return "error"
}

// inbound is one MQTT message waiting for the processor.
type inbound struct {
	topic    string
	payload  []byte
	retained bool
	recv     time.Time
	ack      func()
}

// decoded is a message that passed the contract checks.
type decoded struct {
	kind         string
	site, device string
	status       *telemetry.Status
	health       *telemetry.Health
	result       *telemetry.Result
}

// decode checks one message against contract v1. It never panics on any input.
func decode(prefix, topic string, payload []byte, maxPayload int) (decoded, error) {
	var d decoded
	d.kind = kindUnknown
	if len(payload) > maxPayload {
		return d, fmt.Errorf("%w: %d bytes on %q (limit %d)", ErrOversized, len(payload), topic, maxPayload)
	}
	site, device, leaf, ok := telemetry.ParseTopic(prefix, topic)
	if !ok {
		return d, fmt.Errorf("%w: %q", ErrBadTopic, topic)
	}
	d.site, d.device = site, device
	switch {
	case leaf == "status" || leaf == "health" || leaf == "result":
		d.kind = leaf
	case strings.HasPrefix(leaf, "cmd/"):
		return d, fmt.Errorf("%w: %q", errIgnored, topic)
	default:
		return d, fmt.Errorf("%w: unknown leaf %q in %q", ErrBadTopic, leaf, topic)
	}
	var probe struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(payload, &probe); err != nil {
		return d, fmt.Errorf("%w on %q: %w", ErrMalformed, topic, err)
	}
	want := map[string]string{kindStatus: telemetry.SchemaStatus, kindHealth: telemetry.SchemaHealth, kindResult: telemetry.SchemaResult}[d.kind]
	if probe.Schema != want {
		return d, fmt.Errorf("%w %q on %q (want %q)", ErrUnknownSchema, probe.Schema, topic, want)
	}
	var err error
	switch d.kind {
	case kindStatus:
		d.status = new(telemetry.Status)
		if err = unmarshal(payload, d.status); err == nil {
			err = checkStatus(d.status)
		}
	case kindHealth:
		d.health = new(telemetry.Health)
		if err = unmarshal(payload, d.health); err == nil {
			err = checkHealth(d.health)
		}
	case kindResult:
		d.result = new(telemetry.Result)
		if err = unmarshal(payload, d.result); err == nil {
			err = checkResult(d.result)
		}
	}
	if err != nil {
		return d, fmt.Errorf("%s on %q: %w", d.kind, topic, err)
	}
	return d, nil
}

func unmarshal(payload []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(v); err != nil {
		// A well-formed document with a field of the wrong type is invalid, not malformed.
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%w: field %q: %w", ErrInvalid, te.Field, err)
		}
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// minTS rejects zero and absurd timestamps (a device without a clock sends 1970).
var minTS = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func checkTS(name string, ts time.Time) error {
	if ts.Before(minTS) {
		return fmt.Errorf("%w: %s %v is before 2020 (device clock not set?)", ErrInvalid, name, ts)
	}
	return nil
}

func finite(fs ...float64) bool {
	for _, f := range fs {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return false
		}
	}
	return true
}

func checkStatus(s *telemetry.Status) error {
	if s.State != telemetry.StateOnline && s.State != telemetry.StateOffline {
		return fmt.Errorf("%w: state %q (want online or offline)", ErrInvalid, s.State)
	}
	return checkTS("ts", s.TS)
}

func checkHealth(h *telemetry.Health) error {
	if h.Queue < 0 || h.Outbox < 0 {
		return fmt.Errorf("%w: negative queue or outbox", ErrInvalid)
	}
	if h.TempC != nil && !finite(*h.TempC) {
		return fmt.Errorf("%w: temp_c not finite", ErrInvalid)
	}
	return checkTS("ts", h.TS)
}

func checkResult(r *telemetry.Result) error {
	if r.ID == "" || len(r.ID) > 128 {
		return fmt.Errorf("%w: id empty or longer than 128 characters", ErrInvalid)
	}
	switch r.Label {
	case telemetry.LabelNormal, telemetry.LabelPneumonia, telemetry.LabelUnreadable:
	default:
		return fmt.Errorf("%w: label %q (want normal, pneumonia or unreadable)", ErrInvalid, r.Label)
	}
	if !finite(r.Score, r.Threshold, r.TimingsMs.Total) {
		return fmt.Errorf("%w: score, threshold or timing not finite", ErrInvalid)
	}
	return checkTS("scored_at", r.ScoredAt)
}

// rateLog logs at most one line per reason and interval, reporting how many were suppressed.
type rateLog struct {
	mu    sync.Mutex
	every time.Duration
	last  map[string]time.Time
	quiet map[string]int
}

func newRateLog(every time.Duration) *rateLog {
	return &rateLog{every: every, last: map[string]time.Time{}, quiet: map[string]int{}}
}

// allow reports whether reason may be logged now and how many were suppressed before it.
func (r *rateLog) allow(reason string, now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.last[reason]) < r.every {
		r.quiet[reason]++
		return false, 0
	}
	n := r.quiet[reason]
	r.last[reason], r.quiet[reason] = now, 0
	return true, n
}

// connectMQTT subscribes to the fleet's topics. The session is persistent (clean session off,
// stable client id) and messages are acknowledged manually after they are stored.
func (s *Service) connectMQTT(ctx context.Context) (mqtt.Client, error) {
	m := s.opts.MQTT
	co := mqtt.NewClientOptions().
		AddBroker(m.Broker).
		SetClientID(m.ClientID).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		SetKeepAlive(m.KeepAlive).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(2 * time.Second).
		SetMaxReconnectInterval(30 * time.Second).
		SetResumeSubs(true)
	if m.Username != "" {
		co.SetUsername(m.Username)
	}
	if m.PasswordFile != "" {
		pw, err := os.ReadFile(m.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.password_file: %w", err)
		}
		co.SetPassword(strings.TrimSpace(string(pw)))
	}
	if m.CAFile != "" || m.CertFile != "" {
		tc, err := telemetry.TLSConfig(m.CAFile, m.CertFile, m.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.ca_file, mqtt.cert_file, mqtt.key_file: %w", err)
		}
		co.SetTLSConfig(tc)
	}
	topic := m.SubscriptionTopic()
	handler := func(_ mqtt.Client, msg mqtt.Message) {
		// A reply to a command goes to the request waiting for it; it also takes the queue,
		// where it is acknowledged in order like every other message.
		s.cmd.deliver(m.TopicPrefix, msg.Topic(), msg.Payload())
		in := inbound{topic: msg.Topic(), payload: msg.Payload(), retained: msg.Retained(), recv: s.opts.Now(), ack: msg.Ack}
		select {
		case s.in <- in:
		case <-ctx.Done():
		}
	}
	// A resumed session gets its queued messages right after CONNACK, before the subscription
	// below has registered its route in paho; without a default handler paho would drop them.
	co.SetDefaultPublishHandler(handler)
	co.SetOnConnectHandler(func(c mqtt.Client) {
		s.log.Info("mqtt connected", "broker", m.Broker, "client_id", m.ClientID, "topic", topic)
		// Subscribing on every connect also covers a broker that lost the session.
		t := c.Subscribe(topic, 1, handler)
		if m.SharedGroup != "" {
			// A shared subscription hands a reply to any one of the dashboards; the one
			// that sent the command must see it, so replies are subscribed to unshared.
			c.Subscribe(m.ReplyTopic(), 1, handler)
		}
		go func() {
			if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
				s.log.Error("mqtt subscribe failed", "topic", topic, "err", t.Error())
				return
			}
			s.connected.Store(c.IsConnected())
		}()
	})
	co.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		s.connected.Store(false)
		s.log.Warn("mqtt connection lost; reconnecting", "err", err)
	})
	c := mqtt.NewClient(co)
	// With ConnectRetry the token completes only once connected; do not block start-up on it.
	c.Connect()
	return c, nil
}
