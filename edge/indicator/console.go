package indicator

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// Console writes each change of the shown state as one line, coloured when w is a
// terminal. For development machines and devices without LEDs.
type Console struct {
	l     latch
	mu    sync.Mutex // serialises writes
	w     io.Writer
	color bool
}

// NewConsole returns a console indicator writing to w.
func NewConsole(w io.Writer) *Console {
	return &Console{w: w, color: isTerminal(w)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// colour is the ANSI SGR code of a state and note what it asks of the reader.
func colour(s State) (sgr, note string) {
	switch s {
	case Pneumonia:
		return "1;33", " (prioritise; press the button to acknowledge)"
	case Fault:
		return "1;31", ""
	case Busy:
		return "36", ""
	case Backlog:
		return "34", " (results waiting for the network)"
	}
	return "32", ""
}

func (c *Console) show(s State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sgr, note := colour(s)
	text := s.String() + note
	if c.color {
		text = "\x1b[" + sgr + "m" + text + "\x1b[0m"
	}
	// A console that cannot be written to must not stop scoring.
	// No timestamp: journald and terminals' scrollback add their own.
	_, _ = fmt.Fprintf(c.w, "indicator: %s\n", text)
}

// Set implements Indicator.
func (c *Console) Set(s State) {
	if shown, changed := c.l.set(s); changed {
		c.show(shown)
	}
}

// Acknowledge implements Indicator.
func (c *Console) Acknowledge() {
	if shown, was := c.l.ack(); was {
		c.show(shown)
	}
}

// State implements Indicator.
func (c *Console) State() State { return c.l.state() }
