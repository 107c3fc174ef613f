// Package indicator tells the clinician at a glance what the device is doing: green when
// ready or the last image was normal, amber (latched until acknowledged) when pneumonia is
// suspected, red on a device fault, with blink patterns while scoring (Busy) and while
// results wait for the broker (Backlog).
//
// Implementations: GPIO (LEDs and an acknowledge button via periph.io), Console (state
// changes written to a terminal or log), None (remembers the state only, for health).
package indicator

import (
	"fmt"
	"sync"
)

// State is what the device shows.
type State int

// States. Set(Pneumonia) latches the amber light until Acknowledge; other states change
// only the green and red lights meanwhile.
const (
	Ready     State = iota // idle, nothing to attend to: green steady
	Busy                   // scoring an image: green blinking
	Normal                 // last image scored normal: green steady
	Pneumonia              // pneumonia suspected: amber steady, latched until acknowledged
	Fault                  // the device cannot work (model, disk, camera…): red steady
	Backlog                // results wait for the broker: green double flash
)

// String returns the state's name as used in health payloads and metrics.
func (s State) String() string {
	switch s {
	case Ready:
		return "ready"
	case Busy:
		return "busy"
	case Normal:
		return "normal"
	case Pneumonia:
		return "pneumonia"
	case Fault:
		return "fault"
	case Backlog:
		return "backlog"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// ParseState returns the state with this name.
func ParseState(name string) (State, error) {
	for s := Ready; s <= Backlog; s++ {
		if s.String() == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("indicator state %q: want ready, busy, normal, pneumonia, fault or backlog", name)
}

// Indicator is what the daemon drives. Implementations are safe for concurrent use.
type Indicator interface {
	// Set changes the state. Pneumonia latches until Acknowledge.
	Set(State)
	// Acknowledge clears a latched Pneumonia (the clinician pressed the button).
	Acknowledge()
	// State is what is shown: Fault over a latched Pneumonia over the last Set.
	State() State
}

// latch is the state machine every implementation shares.
type latch struct {
	mu      sync.Mutex
	base    State
	latched bool
}

// set records s and reports whether what is shown changed.
func (l *latch) set(s State) (shown State, changed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	before := l.shownLocked()
	l.base = s
	if s == Pneumonia {
		l.latched = true
	}
	return l.shownLocked(), l.shownLocked() != before || s == Pneumonia
}

// ack clears the latch and reports whether it was set.
func (l *latch) ack() (shown State, was bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	was = l.latched
	l.latched = false
	if l.base == Pneumonia {
		l.base = Ready // acknowledged: nothing left to attend to
	}
	return l.shownLocked(), was
}

func (l *latch) shownLocked() State {
	switch {
	case l.base == Fault:
		return Fault
	case l.latched:
		return Pneumonia
	}
	return l.base
}

func (l *latch) snapshot() (base State, latched bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.base, l.latched
}

func (l *latch) state() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.shownLocked()
}

// None shows nothing but remembers the state (for health and metrics).
type None struct{ l latch }

// NewNone returns an indicator without output.
func NewNone() *None { return &None{} }

// Set implements Indicator.
func (n *None) Set(s State) { n.l.set(s) }

// Acknowledge implements Indicator.
func (n *None) Acknowledge() { n.l.ack() }

// State implements Indicator.
func (n *None) State() State { return n.l.state() }
