package indicator_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/cxr-edge/cxr-edge/edge/indicator"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

func TestStateNames(t *testing.T) {
	for s := indicator.Ready; s <= indicator.Backlog; s++ {
		got, err := indicator.ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("round trip %v: %v %v", s, got, err)
		}
	}
	if _, err := indicator.ParseState("green"); err == nil {
		t.Error("unknown state name accepted")
	}
	if indicator.State(42).String() != "state(42)" {
		t.Error("out-of-range state name")
	}
}

// TestLatch runs the shared state machine through every implementation.
func TestLatch(t *testing.T) {
	impls := map[string]func(t *testing.T) indicator.Indicator{
		"none":    func(*testing.T) indicator.Indicator { return indicator.NewNone() },
		"console": func(*testing.T) indicator.Indicator { return indicator.NewConsole(&bytes.Buffer{}) },
		"gpio": func(t *testing.T) indicator.Indicator {
			g, err := indicator.NewGPIO(context.Background(), indicator.GPIOOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { g.Close() })
			return g
		},
	}
	type step struct {
		set  *indicator.State // nil: Acknowledge
		want indicator.State
	}
	s := func(x indicator.State) *indicator.State { return &x }
	steps := []step{
		{s(indicator.Ready), indicator.Ready},
		{s(indicator.Busy), indicator.Busy},
		{s(indicator.Pneumonia), indicator.Pneumonia},
		{s(indicator.Busy), indicator.Pneumonia}, // latched
		{s(indicator.Normal), indicator.Pneumonia},
		{s(indicator.Fault), indicator.Fault},     // a fault shows over it…
		{s(indicator.Ready), indicator.Pneumonia}, // …and the latch is still there after
		{nil, indicator.Ready},
		{s(indicator.Backlog), indicator.Backlog},
		{s(indicator.Pneumonia), indicator.Pneumonia},
		{nil, indicator.Ready}, // acknowledging with Pneumonia as last Set returns to Ready
	}
	for name, mk := range impls {
		ind := mk(t)
		for i, st := range steps {
			if st.set == nil {
				ind.Acknowledge()
			} else {
				ind.Set(*st.set)
			}
			if got := ind.State(); got != st.want {
				t.Errorf("%s step %d: shows %v, want %v", name, i, got, st.want)
			}
		}
	}
}

func TestConsole(t *testing.T) {
	var buf bytes.Buffer
	c := indicator.NewConsole(&buf)
	c.Set(indicator.Busy)
	c.Set(indicator.Busy) // no change, no line
	c.Set(indicator.Pneumonia)
	c.Set(indicator.Normal) // latched: still pneumonia, no line
	c.Acknowledge()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{"indicator: busy", "indicator: pneumonia (prioritise; press the button to acknowledge)", "indicator: normal"}
	if len(lines) != len(want) {
		t.Fatalf("lines %q", lines)
	}
	for i := range want {
		if !strings.HasSuffix(lines[i], want[i]) {
			t.Errorf("line %d %q, want suffix %q", i, lines[i], want[i])
		}
	}
	if strings.Contains(buf.String(), "\x1b[") {
		t.Error("colour codes written to a non-terminal")
	}
}

// recPin is periph's fake pin that also records every level written to it.
type recPin struct {
	*gpiotest.Pin
	mu     sync.Mutex
	levels []gpio.Level
}

func newRecPin(name string) *recPin { return &recPin{Pin: &gpiotest.Pin{N: name}} }

func (p *recPin) Out(l gpio.Level) error {
	p.mu.Lock()
	p.levels = append(p.levels, l)
	p.mu.Unlock()
	return p.Pin.Out(l)
}

func (p *recPin) seq() []gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]gpio.Level(nil), p.levels...)
}

func (p *recPin) reset() {
	p.mu.Lock()
	p.levels = nil
	p.mu.Unlock()
}

type rig struct {
	g                 *indicator.GPIO
	green, amber, red *recPin
	button            *gpiotest.Pin
	acks              atomic.Int32
	clock             atomic.Int64 // the debounce clock, in nanoseconds since the rig's start
}

// debounce is the rig's debounce time; the tests step r.clock past it instead of sleeping.
const debounce = time.Second

func newRig(t *testing.T, activeLow bool) *rig {
	t.Helper()
	// Unbuffered: a send returns once the button goroutine has taken the edge, so after the
	// next send the previous edge has been fully handled — no sleeping to "let it happen".
	r := &rig{green: newRecPin("green"), amber: newRecPin("amber"), red: newRecPin("red"),
		button: &gpiotest.Pin{N: "button", EdgesChan: make(chan gpio.Level)}}
	start := time.Now()
	opts := indicator.WithClock(indicator.GPIOOptions{
		Green: r.green, Amber: r.amber, Red: r.red, Button: r.button, LEDActiveLow: activeLow,
		BlinkPeriod: 40 * time.Millisecond, Debounce: debounce,
		OnAcknowledge: func() { r.acks.Add(1) },
	}, func() time.Time { return start.Add(time.Duration(r.clock.Load())) })
	g, err := indicator.NewGPIO(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	r.g = g
	return r
}

// edge delivers one button edge; it returns once the button goroutine has received it.
func (r *rig) edge(t *testing.T, l gpio.Level) {
	t.Helper()
	select {
	case r.button.EdgesChan <- l:
	case <-time.After(testenv.WaitLimit):
		t.Fatalf("button goroutine did not take edge %v", l)
	}
}

// settle returns once every edge sent before it has been handled: a release edge is taken
// only after the goroutine has finished with the previous one, and a release does nothing.
func (r *rig) settle(t *testing.T) {
	t.Helper()
	r.edge(t, gpio.High)
}

// level reads a pin's current level.
func level(p *recPin) gpio.Level { return p.Read() }

func TestGPIOSteadyStates(t *testing.T) {
	for _, activeLow := range []bool{false, true} {
		r := newRig(t, activeLow)
		on, off := gpio.High, gpio.Low
		if activeLow {
			on, off = gpio.Low, gpio.High
		}
		cases := []struct {
			s                 indicator.State
			green, amber, red gpio.Level
		}{
			{indicator.Ready, on, off, off},
			{indicator.Fault, off, off, on},
			{indicator.Normal, on, off, off},
			{indicator.Pneumonia, off, on, off},
		}
		for _, c := range cases {
			r.g.Set(c.s)
			testenv.WaitFor(t, c.s.String(), func() bool {
				return level(r.green) == c.green && level(r.amber) == c.amber && level(r.red) == c.red
			})
		}
		// Steady means steady: no further writes while nothing changes.
		r.g.Acknowledge()
		testenv.WaitFor(t, "ready", func() bool { return level(r.green) == on && level(r.amber) == off })
		r.green.reset()
		time.Sleep(100 * time.Millisecond)
		if n := len(r.green.seq()); n != 0 {
			t.Errorf("activeLow=%v: steady green written %d times", activeLow, n)
		}
	}
}

// transitions counts level changes in a recorded sequence.
func transitions(seq []gpio.Level) int {
	n := 0
	for i := 1; i < len(seq); i++ {
		if seq[i] != seq[i-1] {
			n++
		}
	}
	return n
}

func TestGPIOBlinkPatterns(t *testing.T) {
	r := newRig(t, false)
	// Busy: green toggles on/off, amber and red stay dark.
	r.g.Set(indicator.Busy)
	testenv.WaitFor(t, "busy blinking", func() bool { return transitions(r.green.seq()) >= 6 })
	seq := r.green.seq()
	for i := 1; i < len(seq); i++ {
		if seq[i] == seq[i-1] {
			t.Fatalf("green written twice with the same level: %v", seq)
		}
	}
	if level(r.amber) != gpio.Low || level(r.red) != gpio.Low {
		t.Fatal("amber/red lit while busy")
	}
	// Backlog: per period two flashes (4 changes) — twice as many as Busy (2 changes).
	r.g.Set(indicator.Backlog)
	r.green.reset()
	testenv.WaitFor(t, "backlog flashing", func() bool { return transitions(r.green.seq()) >= 8 })
	// Pneumonia latches amber on while green keeps blinking for Busy.
	r.g.Set(indicator.Pneumonia)
	testenv.WaitFor(t, "amber on", func() bool { return level(r.amber) == gpio.High })
	r.g.Set(indicator.Busy)
	r.amber.reset()
	r.green.reset()
	testenv.WaitFor(t, "busy under latch", func() bool { return transitions(r.green.seq()) >= 4 })
	if len(r.amber.seq()) != 0 || level(r.amber) != gpio.High {
		t.Fatalf("latched amber changed while busy: %v", r.amber.seq())
	}
}

func TestGPIOButtonAcknowledges(t *testing.T) {
	r := newRig(t, false)
	r.g.Set(indicator.Pneumonia)
	r.g.Set(indicator.Normal)
	testenv.WaitFor(t, "amber on", func() bool { return level(r.amber) == gpio.High })
	r.edge(t, gpio.Low)
	testenv.WaitFor(t, "amber off", func() bool { return level(r.amber) == gpio.Low })
	testenv.WaitFor(t, "acknowledge callback", func() bool { return r.acks.Load() == 1 })
	if r.g.State() != indicator.Normal {
		t.Fatalf("after acknowledge shows %v, want normal", r.g.State())
	}
	// A new suspected case, then contact bounce of the same press: ignored, amber stays.
	r.g.Set(indicator.Pneumonia)
	testenv.WaitFor(t, "amber on again", func() bool { return level(r.amber) == gpio.High })
	r.clock.Add(int64(debounce - time.Millisecond))
	r.edge(t, gpio.Low)
	r.edge(t, gpio.Low)
	r.settle(t)
	if r.g.State() != indicator.Pneumonia {
		t.Fatalf("bounce within the debounce time acknowledged: shows %v", r.g.State())
	}
	// A real press once the debounce time has passed acknowledges.
	r.clock.Add(int64(time.Millisecond))
	r.edge(t, gpio.Low)
	testenv.WaitFor(t, "second acknowledge", func() bool { return level(r.amber) == gpio.Low && r.acks.Load() == 2 })
	// A release (High) is not a press.
	r.g.Set(indicator.Pneumonia)
	r.clock.Add(int64(2 * debounce))
	r.edge(t, gpio.High)
	r.settle(t)
	if r.g.State() != indicator.Pneumonia {
		t.Fatal("button release acknowledged")
	}
	// Acknowledge() does the same as the button, without calling OnAcknowledge (which is
	// for the button: the caller of Acknowledge knows already).
	r.g.Acknowledge()
	testenv.WaitFor(t, "amber off by Acknowledge", func() bool { return level(r.amber) == gpio.Low })
	if n := r.acks.Load(); n != 2 {
		t.Fatalf("OnAcknowledge called %d times, want 2 (the button presses only)", n)
	}
}

func TestGPIOCloseSwitchesOff(t *testing.T) {
	r := newRig(t, false)
	r.g.Set(indicator.Fault)
	testenv.WaitFor(t, "red on", func() bool { return level(r.red) == gpio.High })
	r.g.Close()
	if level(r.red) != gpio.Low || level(r.green) != gpio.Low || level(r.amber) != gpio.Low {
		t.Fatal("LEDs left on after Close")
	}
}

func TestGPIOOptionsDefaults(t *testing.T) {
	d := indicator.GPIOOptions{}.WithDefaults()
	if d.BlinkPeriod != 800*time.Millisecond || d.Debounce != 50*time.Millisecond || d.Logger == nil {
		t.Fatalf("defaults %+v", d)
	}
}

func TestGPIOButtonWithoutEdgesRejected(t *testing.T) {
	// periph's fake refuses edge detection without an edge source, as a real pin without
	// interrupt support would; the constructor must report it, naming the pin.
	_, err := indicator.NewGPIO(context.Background(), indicator.GPIOOptions{Button: &gpiotest.Pin{N: "GPIO23"}})
	if err == nil || !strings.Contains(err.Error(), "GPIO23") {
		t.Fatalf("err %v", err)
	}
}
