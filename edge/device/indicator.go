package device

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/cxr-edge/cxr-edge/edge/indicator"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// busyIndicator is implemented by indicators that show scoring in progress.
type busyIndicator interface{ Busy() }

// lights drives an indicator.Indicator (GPIO LEDs, console, none) from results:
// normal → green, pneumonia → amber (latched until the button is pressed), unreadable → red
// (the image was not assessed: retake or check it), scoring → green blinking.
type lights struct {
	ind indicator.Indicator
}

func (l lights) Show(r telemetry.Result) {
	switch r.Label {
	case telemetry.LabelNormal:
		l.ind.Set(indicator.Normal)
	case telemetry.LabelPneumonia:
		l.ind.Set(indicator.Pneumonia)
	default:
		l.ind.Set(indicator.Fault)
	}
}

func (l lights) Busy() { l.ind.Set(indicator.Busy) }

// State names what is shown, for health payloads and metrics.
func (l lights) State() string { return l.ind.State().String() }

// openIndicator builds the indicator indicator.kind selects. close releases GPIO lines.
func openIndicator(ctx context.Context, cfg IndicatorConfig, console io.Writer, log *slog.Logger) (lights, func() error, error) {
	switch cfg.Kind {
	case "gpio":
		g, err := indicator.OpenGPIO(ctx, indicator.PinNames{
			Green: cfg.Pins.Green, Amber: cfg.Pins.Amber, Red: cfg.Pins.Red, Button: cfg.Pins.Button,
		}, indicator.GPIOOptions{
			Logger:        log.With("component", "indicator"),
			OnAcknowledge: func() { log.Info("pneumonia alert acknowledged at the device") },
		})
		if err != nil {
			return lights{}, nil, fmt.Errorf("indicator.kind gpio: %w", err)
		}
		g.Set(indicator.Ready)
		return lights{g}, g.Close, nil
	case "console":
		c := indicator.NewConsole(console)
		c.Set(indicator.Ready)
		return lights{c}, func() error { return nil }, nil
	default:
		n := indicator.NewNone()
		n.Set(indicator.Ready)
		return lights{n}, func() error { return nil }, nil
	}
}
