package indicator

import "time"

// WithClock sets the debounce clock of o, so that tests step time instead of sleeping.
func WithClock(o GPIOOptions, now func() time.Time) GPIOOptions {
	o.now = now
	return o
}
