package telemetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// HealthSource supplies the periodic health payload; the daemon implements it (usually by
// combining Collector.System with its own counters via NewHealth).
type HealthSource interface {
	Health(ctx context.Context) (Health, error)
}

// CommandHandler carries out commands that change the device; the daemon implements it.
type CommandHandler interface {
	// ReloadModel fetches (URL) or opens (Path) a model, checks its sha256, and switches
	// to it. It returns the model now in use.
	ReloadModel(ctx context.Context, cmd ReloadModelCommand) (ModelRef, error)
	// SetThreshold sets (or clears) the site's operating point of the running model, which
	// must be the model cmd names. It returns the operating point now in use.
	SetThreshold(ctx context.Context, cmd SetThresholdCommand) (OperatingPoint, error)
}

// PublisherOptions configure a Publisher. Zero fields take the documented defaults.
type PublisherOptions struct {
	// Broker is the broker URL: tcp://host:1883 (also mqtt://) or, for TLS,
	// ssl://host:8883 (also tls://, mqtts://, tcps://). Required.
	Broker string
	// Topics are the device's topics (NewTopics). Required.
	Topics Topics
	// ClientID defaults to "cxr-edge-<site>-<device>".
	ClientID string
	// Username and PasswordFile (read once by NewPublisher; surrounding whitespace trimmed)
	// authenticate to the broker. Both optional.
	Username, PasswordFile string
	// CAFile verifies the broker's certificate (default: the system roots); CertFile and
	// KeyFile present a client certificate. Only valid with a TLS broker URL.
	CAFile, CertFile, KeyFile string
	// KeepAlive is the MQTT keep-alive. Default 30 s.
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt. Default 10 s.
	ConnectTimeout time.Duration
	// MinReconnectInterval and MaxReconnectInterval bound the exponential backoff between
	// connection attempts. Defaults 500 ms and 1 min.
	MinReconnectInterval, MaxReconnectInterval time.Duration
	// HealthInterval is how often health is published (and once on every connect).
	// Default 60 s.
	HealthInterval time.Duration
	// InFlight is how many results may await their PUBACK at once, 1–16. Default 8.
	InFlight int
	// PublishTimeout is how long a result may wait for its PUBACK before the connection
	// is considered broken and re-established. Default 30 s.
	PublishTimeout time.Duration
	// PollInterval is how often the outbox is checked when Notify is not called. Default 2 s.
	PollInterval time.Duration
	// Version is the daemon version reported in status; Model the model in use (SetModel
	// changes it).
	Version string
	Model   ModelRef
	// Discovery publishes Home Assistant discovery configs under DiscoveryPrefix
	// (default "homeassistant") on every connect.
	Discovery       bool
	DiscoveryPrefix string
	// Dial, if set, opens the TCP connection to the broker (TLS is layered on top). Tests
	// use it to cut connections; a device could use it to reach the broker via a proxy.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock for payload timestamps. Default time.Now.
	Now func() time.Time
}

// Defaults of PublisherOptions.
const (
	DefaultKeepAlive            = 30 * time.Second
	DefaultConnectTimeout       = 10 * time.Second
	DefaultMinReconnectInterval = 500 * time.Millisecond
	DefaultMaxReconnectInterval = time.Minute
	DefaultHealthInterval       = 60 * time.Second
	DefaultInFlight             = 8
	MaxInFlight                 = 16
	DefaultPublishTimeout       = 30 * time.Second
	DefaultPollInterval         = 2 * time.Second
	DefaultDiscoveryPrefix      = "homeassistant"
)

// WithDefaults returns o with every zero field set to its default.
func (o PublisherOptions) WithDefaults() PublisherOptions {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.KeepAlive, DefaultKeepAlive)
	def(&o.ConnectTimeout, DefaultConnectTimeout)
	def(&o.MinReconnectInterval, DefaultMinReconnectInterval)
	def(&o.MaxReconnectInterval, DefaultMaxReconnectInterval)
	def(&o.HealthInterval, DefaultHealthInterval)
	def(&o.PublishTimeout, DefaultPublishTimeout)
	def(&o.PollInterval, DefaultPollInterval)
	if o.InFlight <= 0 {
		o.InFlight = DefaultInFlight
	}
	if o.ClientID == "" {
		o.ClientID = "cxr-edge-" + o.Topics.Site + "-" + o.Topics.Device
	}
	if o.DiscoveryPrefix == "" {
		o.DiscoveryPrefix = DefaultDiscoveryPrefix
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// PublisherStats count what the publisher did since it was created.
type PublisherStats struct {
	Connected bool
	Connects  uint64 // successful connections
	Published uint64 // result publishes sent (including resends)
	Acked     uint64 // results acknowledged by the broker and removed from the outbox
	Resent    uint64 // results sent again after a broken connection or timeout
	Rejected  uint64 // outbox entries that were not valid results (dropped, logged)
}

// Publisher keeps the device's MQTT session: status with Last Will, periodic health,
// results drained from the outbox at QoS 1, and commands.
type Publisher struct {
	opts     PublisherOptions
	outbox   Outbox
	health   HealthSource
	cmds     CommandHandler
	password string
	tls      *tls.Config // nil for plain TCP

	wake chan struct{}

	mu    sync.Mutex
	model ModelRef
	sess  *session      // nil while not connected
	ready chan struct{} // closed (and replaced) whenever sess changes

	// cmdRuns tracks command handlers so Run returns only after they have; stopping
	// (guarded by mu) turns away commands that arrive while Run is returning.
	cmdRuns  sync.WaitGroup
	stopping bool

	reloading atomic.Bool
	connects  atomic.Uint64
	published atomic.Uint64
	acked     atomic.Uint64
	resent    atomic.Uint64
	rejected  atomic.Uint64
}

// session is one MQTT connection. A new paho client is made per connection so that the
// Last Will always carries the current model, and so that a lost connection fails the
// tokens still in flight instead of having paho resend them itself (paho's auto-reconnect
// completes the original token of a resent message without a PUBACK, which would let the
// outbox be acked for a result the broker never confirmed).
type session struct {
	client paho.Client
	lost   chan struct{}
	once   sync.Once
}

func (s *session) drop() { s.once.Do(func() { close(s.lost) }) }

// NewPublisher checks the options and prepares a publisher; Run connects. health and cmds
// may be nil (no health is published; reload-model and set-threshold are answered with an
// error).
func NewPublisher(opts PublisherOptions, outbox Outbox, health HealthSource, cmds CommandHandler) (*Publisher, error) {
	opts = opts.WithDefaults()
	if outbox == nil {
		return nil, errors.New("publisher: nil outbox")
	}
	if _, err := NewTopics(opts.Topics.Prefix, opts.Topics.Site, opts.Topics.Device); err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	if d := opts.DiscoveryPrefix; opts.Discovery && (d == "" || strings.ContainsAny(d, "+#") || strings.HasPrefix(d, "/") || strings.HasSuffix(d, "/")) {
		// Checked here: a bad prefix would otherwise fail every connect, forever.
		return nil, fmt.Errorf("publisher: discovery prefix %q: must not contain + or # nor start or end with /", d)
	}
	if opts.InFlight > MaxInFlight {
		return nil, fmt.Errorf("publisher: in-flight window %d: want 1-%d", opts.InFlight, MaxInFlight)
	}
	u, err := url.Parse(opts.Broker)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("publisher: broker URL %q: want scheme://host:port", opts.Broker)
	}
	secure := false
	switch u.Scheme {
	case "tcp", "mqtt":
	case "ssl", "tls", "mqtts", "tcps":
		secure = true
	default:
		return nil, fmt.Errorf("publisher: broker URL %q: scheme %q is not tcp, mqtt, ssl, tls, mqtts or tcps", opts.Broker, u.Scheme)
	}
	if !secure && (opts.CAFile != "" || opts.CertFile != "" || opts.KeyFile != "") {
		return nil, fmt.Errorf("publisher: TLS files given but broker URL %q is not TLS (use ssl://)", opts.Broker)
	}
	p := &Publisher{opts: opts, outbox: outbox, health: health, cmds: cmds, model: opts.Model,
		wake: make(chan struct{}, 1), ready: make(chan struct{})}
	if opts.PasswordFile != "" {
		b, err := os.ReadFile(opts.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("publisher: password file: %w", err)
		}
		p.password = strings.TrimSpace(string(b))
	}
	if secure {
		if p.tls, err = TLSConfig(opts.CAFile, opts.CertFile, opts.KeyFile); err != nil {
			return nil, fmt.Errorf("publisher: %w", err)
		}
	}
	return p, nil
}

// TLSConfig is the TLS set-up of an MQTT client of the contract (the device's publisher
// and the dashboard): TLS 1.2 or later; the broker verified against caFile's certificates
// (empty: the system roots); a client certificate when certFile and keyFile are both given.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("client certificate needs both a cert file and a key file")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Notify tells the publisher that the outbox has new entries (call after Commit). It
// never blocks.
func (p *Publisher) Notify() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// SetModel changes the model reported in status and republishes status when connected.
func (p *Publisher) SetModel(m ModelRef) {
	p.mu.Lock()
	p.model = m
	s := p.sess
	p.mu.Unlock()
	if s != nil {
		p.publishStatus(s, StateOnline)
	}
}

// Stats returns the publisher's counters.
func (p *Publisher) Stats() PublisherStats {
	p.mu.Lock()
	connected := p.sess != nil
	p.mu.Unlock()
	return PublisherStats{Connected: connected, Connects: p.connects.Load(), Published: p.published.Load(),
		Acked: p.acked.Load(), Resent: p.resent.Load(), Rejected: p.rejected.Load()}
}

// Run connects (and reconnects, with backoff) until ctx is cancelled, publishing status,
// health and results and answering commands. On cancellation it publishes offline status,
// disconnects cleanly and returns nil.
func (p *Publisher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.drainLoop(ctx) }()
	go func() { defer wg.Done(); p.healthLoop(ctx) }()
	p.connectLoop(ctx)
	wg.Wait()
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	p.cmdRuns.Wait()
	return nil
}

func (p *Publisher) statusPayload(state string) []byte {
	p.mu.Lock()
	m := p.model
	p.mu.Unlock()
	b, _ := json.Marshal(Status{Schema: SchemaStatus, State: state, TS: p.opts.Now().UTC(), Version: p.opts.Version, Model: m})
	return b
}

func (p *Publisher) clientOptions(s *session) *paho.ClientOptions {
	o := paho.NewClientOptions().
		AddBroker(p.opts.Broker).
		SetClientID(p.opts.ClientID).
		SetCleanSession(true).
		SetAutoReconnect(false). // connectLoop reconnects; see session
		SetConnectRetry(false).
		SetKeepAlive(p.opts.KeepAlive).
		SetPingTimeout(p.opts.KeepAlive/2+time.Second).
		SetConnectTimeout(p.opts.ConnectTimeout).
		SetWriteTimeout(p.opts.PublishTimeout).
		SetOrderMatters(false).
		SetBinaryWill(p.opts.Topics.Status(), p.statusPayload(StateOffline), 1, true).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			p.opts.Logger.Warn("mqtt connection lost", "err", err)
			s.drop()
		})
	if p.opts.Username != "" {
		o.SetUsername(p.opts.Username)
	}
	if p.password != "" {
		o.SetPassword(p.password)
	}
	if p.tls != nil {
		o.SetTLSConfig(p.tls)
	}
	if p.opts.Dial != nil {
		o.SetCustomOpenConnectionFn(func(u *url.URL, co paho.ClientOptions) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), p.opts.ConnectTimeout)
			defer cancel()
			conn, err := p.opts.Dial(ctx, "tcp", u.Host)
			if err != nil || p.tls == nil {
				return conn, err
			}
			cfg := p.tls.Clone()
			cfg.ServerName = u.Hostname()
			tc := tls.Client(conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			return tc, nil
		})
	}
	return o
}

// connectLoop owns the sessions: connect, set up, wait for loss, back off, repeat.
func (p *Publisher) connectLoop(ctx context.Context) {
	backoff := p.opts.MinReconnectInterval
	for ctx.Err() == nil {
		s := &session{lost: make(chan struct{})}
		s.client = paho.NewClient(p.clientOptions(s))
		tok := s.client.Connect()
		err := waitToken(ctx, tok, p.opts.ConnectTimeout+time.Second)
		if err == nil {
			err = p.setup(ctx, s)
		}
		if err != nil {
			s.client.Disconnect(0)
			if ctx.Err() != nil {
				return
			}
			wait := backoff/2 + rand.N(backoff/2+1) // jitter so a fleet does not reconnect in step
			p.opts.Logger.Warn("mqtt connect failed", "broker", p.opts.Broker, "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			backoff = min(backoff*2, p.opts.MaxReconnectInterval)
			continue
		}
		backoff = p.opts.MinReconnectInterval
		p.connects.Add(1)
		p.opts.Logger.Info("mqtt connected", "broker", p.opts.Broker, "client_id", p.opts.ClientID)
		p.setSession(s)
		p.publishHealth(ctx, s)
		select {
		case <-ctx.Done():
			p.setSession(nil)
			p.shutdown(s)
			return
		case <-s.lost:
			p.setSession(nil)
			s.client.Disconnect(0)
		}
	}
}

// setup runs on every (re)connect: online status, command subscription, discovery.
func (p *Publisher) setup(ctx context.Context, s *session) error {
	sub := s.client.Subscribe(p.opts.Topics.Command("+"), 1, func(_ paho.Client, m paho.Message) {
		// In its own goroutine: a model reload takes long and must not hold up paho's
		// message router (PUBACKs of results go through it).
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.stopping {
			return
		}
		p.cmdRuns.Add(1)
		go func() { defer p.cmdRuns.Done(); p.handleCommand(ctx, s, m.Topic(), m.Payload()) }()
	})
	if err := waitToken(ctx, sub, p.opts.PublishTimeout); err != nil {
		return fmt.Errorf("subscribe to commands: %w", err)
	}
	// Online only once commands are subscribed: a dashboard may send one as soon as it sees it.
	if err := waitToken(ctx, s.client.Publish(p.opts.Topics.Status(), 1, true, p.statusPayload(StateOnline)), p.opts.PublishTimeout); err != nil {
		return fmt.Errorf("publish online status: %w", err)
	}
	if p.opts.Discovery {
		for _, d := range p.discoveryConfigs() {
			if err := waitToken(ctx, s.client.Publish(d.topic, 1, true, d.payload), p.opts.PublishTimeout); err != nil {
				return fmt.Errorf("publish discovery %s: %w", d.topic, err)
			}
		}
	}
	return nil
}

// shutdown announces offline (retained, replacing what the Last Will would have said) and
// disconnects cleanly.
func (p *Publisher) shutdown(s *session) {
	if err := waitToken(context.Background(), s.client.Publish(p.opts.Topics.Status(), 1, true, p.statusPayload(StateOffline)), 2*time.Second); err != nil {
		p.opts.Logger.Warn("mqtt publish offline status", "err", err)
	}
	s.client.Disconnect(250)
	p.opts.Logger.Info("mqtt disconnected")
}

func (p *Publisher) setSession(s *session) {
	p.mu.Lock()
	p.sess = s
	close(p.ready)
	p.ready = make(chan struct{})
	p.mu.Unlock()
}

// awaitSession returns the current live session, waiting for one; nil when ctx ends.
func (p *Publisher) awaitSession(ctx context.Context) *session {
	for {
		p.mu.Lock()
		s, ready := p.sess, p.ready
		p.mu.Unlock()
		if s != nil {
			select {
			case <-s.lost: // lost but not yet replaced: wait for the next one
			default:
				return s
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ready:
		}
	}
}

func (p *Publisher) publishStatus(s *session, state string) {
	if err := waitToken(context.Background(), s.client.Publish(p.opts.Topics.Status(), 1, true, p.statusPayload(state)), p.opts.PublishTimeout); err != nil {
		p.opts.Logger.Warn("mqtt publish status", "err", err)
	}
}

func (p *Publisher) healthLoop(ctx context.Context) {
	t := time.NewTicker(p.opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		s := p.sess
		p.mu.Unlock()
		if s != nil {
			p.publishHealth(ctx, s)
		}
	}
}

func (p *Publisher) publishHealth(ctx context.Context, s *session) {
	if p.health == nil {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	h, err := p.health.Health(hctx)
	cancel()
	if err != nil {
		p.opts.Logger.Warn("health", "err", err)
		return
	}
	h.Schema = SchemaHealth
	if h.TS.IsZero() {
		h.TS = p.opts.Now()
	}
	h.TS = h.TS.UTC()
	b, err := json.Marshal(h)
	if err != nil {
		p.opts.Logger.Warn("health encode", "err", err)
		return
	}
	if err := waitToken(ctx, s.client.Publish(p.opts.Topics.Health(), 1, true, b), p.opts.PublishTimeout); err != nil && ctx.Err() == nil {
		p.opts.Logger.Warn("mqtt publish health", "err", err)
	}
}

var errConnLost = errors.New("connection lost")

// drainLoop publishes the outbox whenever connected, waiting for Notify or the poll
// interval when it is empty.
func (p *Publisher) drainLoop(ctx context.Context) {
	poll := time.NewTicker(p.opts.PollInterval)
	defer poll.Stop()
	for {
		s := p.awaitSession(ctx)
		if s == nil {
			return
		}
		err := p.drain(ctx, s)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errConnLost):
			continue // awaitSession waits for the next connection
		case err != nil:
			p.opts.Logger.Warn("publish results", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-poll.C:
		case <-s.lost:
		}
	}
}

type inflight struct {
	seq uint64
	tok paho.Token
}

// drain publishes outbox entries in sequence order with at most InFlight awaiting their
// PUBACK, and acks each in the outbox strictly in order once its PUBACK arrived. It returns
// nil when the outbox is empty. On a lost connection or timeout the unacknowledged entries
// stay in the outbox and are sent again on the next connection, still in order.
func (p *Publisher) drain(ctx context.Context, s *session) error {
	var window []inflight
	var lastSent uint64
	for {
		if len(window) < p.opts.InFlight {
			entries, err := p.outbox.Outbox(len(window) + p.opts.InFlight)
			if err != nil {
				return fmt.Errorf("read outbox: %w", err)
			}
			for _, e := range entries {
				if e.Seq <= lastSent || len(window) >= p.opts.InFlight {
					continue
				}
				lastSent = e.Seq
				payload, err := sanitizeResult(e.Payload)
				if err != nil {
					// Cannot be published in any valid form; keeping it would block the
					// outbox forever.
					p.rejected.Add(1)
					p.opts.Logger.Error("dropping invalid outbox entry", "seq", e.Seq, "result", e.ResultID, "err", err)
					if err := p.outbox.Ack(e.Seq); err != nil {
						return fmt.Errorf("drop invalid entry %d: %w", e.Seq, err)
					}
					continue
				}
				window = append(window, inflight{e.Seq, s.client.Publish(p.opts.Topics.Result(), 1, false, payload)})
				p.published.Add(1)
			}
		}
		if len(window) == 0 {
			return nil
		}
		head := window[0]
		timer := time.NewTimer(p.opts.PublishTimeout)
		select {
		case <-head.tok.Done():
			timer.Stop()
		case <-s.lost:
			timer.Stop()
			p.resent.Add(uint64(len(window)))
			return errConnLost
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
			p.opts.Logger.Warn("no PUBACK in time; reconnecting", "seq", head.seq, "timeout", p.opts.PublishTimeout)
			p.resent.Add(uint64(len(window)))
			s.drop()
			return errConnLost
		}
		if err := head.tok.Error(); err != nil {
			p.resent.Add(uint64(len(window)))
			s.drop()
			return fmt.Errorf("%w: publish %d: %v", errConnLost, head.seq, err)
		}
		if err := p.outbox.Ack(head.seq); err != nil {
			return fmt.Errorf("ack outbox %d: %w", head.seq, err)
		}
		p.acked.Add(1)
		window = window[1:]
	}
}

// sanitizeResult re-encodes an outbox payload through the Result struct, so only contract
// fields can ever leave the device whatever was stored.
func sanitizeResult(b []byte) ([]byte, error) {
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("not a result: %w", err)
	}
	if r.Schema != SchemaResult || r.ID == "" {
		return nil, fmt.Errorf("not a %s payload (schema %q, id %q)", SchemaResult, r.Schema, r.ID)
	}
	r.Reason = clipReason(r.Reason)
	return json.Marshal(r)
}

// MaxReasonBytes bounds the reason text of a published result. The reason is the one free
// text that leaves the device (a decoder's error message); clipping it keeps a hostile or
// broken input from making a large payload or carrying much of itself off the device.
const MaxReasonBytes = 256

func clipReason(s string) string {
	if len(s) <= MaxReasonBytes {
		return s
	}
	cut := MaxReasonBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func (p *Publisher) handleCommand(ctx context.Context, s *session, topic string, payload []byte) {
	_, _, leaf, ok := ParseTopic(p.opts.Topics.Prefix, topic)
	name, found := strings.CutPrefix(leaf, "cmd/")
	if !ok || !found || strings.Contains(name, "/") {
		return
	}
	reply := Reply{Schema: SchemaReply}
	var detail any
	var err error
	switch name {
	case CmdPing:
		var c PingCommand
		if c, err = ParsePing(payload); err == nil {
			reply.ID = c.ID
			p.mu.Lock()
			detail = map[string]any{"version": p.opts.Version, "model": p.model}
			p.mu.Unlock()
		}
	case CmdReloadModel:
		var c ReloadModelCommand
		c, err = ParseReloadModel(payload)
		reply.ID = c.ID
		if err == nil {
			detail, err = p.reloadModel(ctx, c)
		}
	case CmdSetThreshold:
		var c SetThresholdCommand
		c, err = ParseSetThreshold(payload)
		reply.ID = c.ID
		if err == nil {
			if p.cmds == nil {
				err = errors.New("set-threshold is not supported by this device")
			} else {
				detail, err = p.cmds.SetThreshold(ctx, c)
			}
		}
	default:
		err = fmt.Errorf("unknown command %q", name)
	}
	reply.OK = err == nil
	if err != nil {
		reply.Error = err.Error()
		p.opts.Logger.Warn("command failed", "command", name, "err", err)
	} else {
		reply.Detail = detail
	}
	reply.TS = p.opts.Now().UTC()
	b, _ := json.Marshal(reply)
	if err := waitToken(ctx, s.client.Publish(p.opts.Topics.CommandReply(name), 1, false, b), p.opts.PublishTimeout); err != nil {
		p.opts.Logger.Warn("mqtt publish reply", "command", name, "err", err)
	}
}

func (p *Publisher) reloadModel(ctx context.Context, c ReloadModelCommand) (any, error) {
	if p.cmds == nil {
		return nil, errors.New("reload-model is not supported by this device")
	}
	if !p.reloading.CompareAndSwap(false, true) {
		return nil, errors.New("a model reload is already in progress")
	}
	defer p.reloading.Store(false)
	m, err := p.cmds.ReloadModel(ctx, c)
	if err != nil {
		return nil, err
	}
	p.SetModel(m)
	return m, nil
}

// waitToken waits for a paho token, the context, or the timeout.
func waitToken(ctx context.Context, tok paho.Token, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("no answer from the broker within %s", timeout)
	}
}
