package indicator

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"
)

// GPIOOptions configure a GPIO indicator. Zero fields take the documented defaults.
type GPIOOptions struct {
	// Green, Amber and Red drive the LEDs; a nil pin is simply not driven.
	Green, Amber, Red gpio.PinOut
	// Button is the acknowledge push button (optional). By default it is wired to ground
	// with the internal pull-up: pressed reads Low.
	Button gpio.PinIn
	// ButtonActiveHigh: the button pulls the pin High when pressed (pull-down used).
	ButtonActiveHigh bool
	// LEDActiveLow: the LEDs light when their pin is Low (wired to sink current).
	LEDActiveLow bool
	// BlinkPeriod is the length of one blink pattern. Default 800 ms.
	BlinkPeriod time.Duration
	// Debounce ignores further button edges for this long after a press. Default 50 ms.
	Debounce time.Duration
	// OnAcknowledge, if set, is called (in its own goroutine) when the button clears a
	// latched Pneumonia. Close waits for it to return.
	OnAcknowledge func()
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// now is the debounce clock; tests set it (export_test.go) so that no test has to
	// sleep through a real debounce time. Defaults to time.Now.
	now func() time.Time
}

// Defaults of GPIOOptions.
const (
	DefaultBlinkPeriod = 800 * time.Millisecond
	DefaultDebounce    = 50 * time.Millisecond
)

// WithDefaults returns o with every zero field set to its default.
func (o GPIOOptions) WithDefaults() GPIOOptions {
	if o.BlinkPeriod <= 0 {
		o.BlinkPeriod = DefaultBlinkPeriod
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o
}

// slots is how many steps one blink period has; a pattern is one bit per slot.
const slots = 8

// Patterns, slot 0 first (bit 0).
const (
	patOff    uint8 = 0x00
	patOn     uint8 = 0xFF
	patBlink  uint8 = 0x0F // on half the period, off half: scoring
	patDouble uint8 = 0x05 // two short flashes then a pause: waiting for the broker
)

// patterns returns the green, amber and red patterns of a state.
func patterns(base State, latched bool) (green, amber, red uint8) {
	if latched {
		amber = patOn
	}
	switch base {
	case Ready, Normal:
		green = patOn
	case Busy:
		green = patBlink
	case Backlog:
		green = patDouble
	case Fault:
		red = patOn
	case Pneumonia:
		amber = patOn
	}
	return green, amber, red
}

// GPIO drives LEDs and reads the acknowledge button through periph.io pins.
type GPIO struct {
	l      latch
	opts   GPIOOptions
	leds   [3]gpio.PinOut
	change chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewGPIO starts driving the pins until ctx ends or Close; the LEDs are switched off then.
func NewGPIO(ctx context.Context, opts GPIOOptions) (*GPIO, error) {
	opts = opts.WithDefaults()
	g := &GPIO{opts: opts, leds: [3]gpio.PinOut{opts.Green, opts.Amber, opts.Red}, change: make(chan struct{}, 1)}
	for _, p := range g.leds {
		if p == nil {
			continue
		}
		if err := p.Out(g.level(false)); err != nil {
			return nil, fmt.Errorf("indicator: LED pin %s: %w", p, err)
		}
	}
	if b := opts.Button; b != nil {
		pull, edge := gpio.PullUp, gpio.FallingEdge
		if opts.ButtonActiveHigh {
			pull, edge = gpio.PullDown, gpio.RisingEdge
		}
		if err := b.In(pull, edge); err != nil {
			return nil, fmt.Errorf("indicator: button pin %s: %w", b, err)
		}
	}
	ctx, g.cancel = context.WithCancel(ctx)
	g.wg.Add(1)
	go func() { defer g.wg.Done(); g.drive(ctx) }()
	if opts.Button != nil {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.watchButton(ctx) }()
	}
	return g, nil
}

// PinNames name the pins for OpenGPIO (as periph's gpioreg knows them, e.g. "GPIO17");
// an empty name leaves that pin out.
type PinNames struct {
	Green, Amber, Red, Button string
}

// OpenGPIO initialises the host's GPIO drivers, looks the pins up by name and starts a
// GPIO indicator. The daemon calls it; tests use NewGPIO with fake pins.
func OpenGPIO(ctx context.Context, names PinNames, opts GPIOOptions) (*GPIO, error) {
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("indicator: initialise GPIO: %w", err)
	}
	lookup := func(role, name string) (gpio.PinIO, error) {
		if name == "" {
			return nil, nil
		}
		p := gpioreg.ByName(name)
		if p == nil {
			return nil, fmt.Errorf("indicator: %s pin %q not found on this board", role, name)
		}
		return p, nil
	}
	var err error
	var green, amber, red, button gpio.PinIO
	if green, err = lookup("green LED", names.Green); err != nil {
		return nil, err
	}
	if amber, err = lookup("amber LED", names.Amber); err != nil {
		return nil, err
	}
	if red, err = lookup("red LED", names.Red); err != nil {
		return nil, err
	}
	if button, err = lookup("button", names.Button); err != nil {
		return nil, err
	}
	// Typed nils would look like pins; only set what exists.
	if green != nil {
		opts.Green = green
	}
	if amber != nil {
		opts.Amber = amber
	}
	if red != nil {
		opts.Red = red
	}
	if button != nil {
		opts.Button = button
	}
	return NewGPIO(ctx, opts)
}

// Close stops the goroutines and switches the LEDs off.
func (g *GPIO) Close() error {
	g.cancel()
	g.wg.Wait()
	return nil
}

// Set implements Indicator.
func (g *GPIO) Set(s State) {
	g.l.set(s)
	g.poke()
}

// Acknowledge implements Indicator.
func (g *GPIO) Acknowledge() {
	g.l.ack()
	g.poke()
}

// State implements Indicator.
func (g *GPIO) State() State { return g.l.state() }

func (g *GPIO) poke() {
	select {
	case g.change <- struct{}{}:
	default:
	}
}

func (g *GPIO) level(on bool) gpio.Level {
	return gpio.Level(on != g.opts.LEDActiveLow)
}

// drive renders the patterns: one slot every BlinkPeriod/slots, restarting at slot 0 on
// every change so a new state shows at once. Pins are written only when their level
// changes. Steady states need no ticking at all.
func (g *GPIO) drive(ctx context.Context) {
	var last [3]int8 // 0 off (NewGPIO switched them off), 1 on
	tick := time.NewTicker(g.opts.BlinkPeriod / slots)
	defer tick.Stop()
	slot := 0
	for {
		base, latched := g.l.snapshot()
		gp, ap, rp := patterns(base, latched)
		pats := [3]uint8{gp, ap, rp}
		steady := true
		for i, p := range pats {
			if p != patOn && p != patOff {
				steady = false
			}
			on := p&(1<<slot) != 0
			var v int8
			if on {
				v = 1
			}
			if g.leds[i] != nil && last[i] != v {
				if err := g.leds[i].Out(g.level(on)); err != nil {
					g.opts.Logger.Warn("indicator: LED write failed", "pin", g.leds[i].String(), "err", err)
				}
				last[i] = v
			}
		}
		var tc <-chan time.Time
		if !steady {
			tc = tick.C
		}
		select {
		case <-ctx.Done():
			for i, p := range g.leds {
				if p != nil && last[i] != 0 {
					_ = p.Out(g.level(false))
				}
			}
			return
		case <-g.change:
			slot = 0
			tick.Reset(g.opts.BlinkPeriod / slots)
		case <-tc:
			slot = (slot + 1) % slots
		}
	}
}

// watchButton acknowledges on a debounced press.
func (g *GPIO) watchButton(ctx context.Context) {
	b := g.opts.Button
	pressed := gpio.Low
	if g.opts.ButtonActiveHigh {
		pressed = gpio.High
	}
	var lastPress time.Time
	for ctx.Err() == nil {
		// A finite wait so cancellation is noticed; periph returns early on an edge.
		if !b.WaitForEdge(100 * time.Millisecond) {
			continue
		}
		now := g.opts.now()
		if b.Read() != pressed || now.Sub(lastPress) < g.opts.Debounce {
			continue
		}
		lastPress = now
		if _, was := g.l.ack(); was {
			g.poke()
			if g.opts.OnAcknowledge != nil {
				// Tracked so that Close returns only after the callback has: it may
				// publish through something the caller closes next.
				g.wg.Add(1)
				go func() { defer g.wg.Done(); g.opts.OnAcknowledge() }()
			}
		}
	}
}
