package indicator_test

import (
	"os"

	"github.com/cxr-edge/cxr-edge/edge/indicator"
)

// The daemon drives the indicator around each image; a suspected pneumonia stays shown
// until the clinician acknowledges it. On a device, indicator.OpenGPIO(ctx,
// indicator.PinNames{Green: "GPIO17", Amber: "GPIO27", Red: "GPIO22", Button: "GPIO23"},
// indicator.GPIOOptions{}) gives the same interface with LEDs and a button.
func Example() {
	var ind indicator.Indicator = indicator.NewConsole(os.Stdout)
	ind.Set(indicator.Ready) // the initial state: no change, nothing written
	ind.Set(indicator.Busy)
	ind.Set(indicator.Pneumonia)
	ind.Set(indicator.Busy) // next image: amber stays latched
	ind.Acknowledge()       // the button
	ind.Set(indicator.Normal)
	// Output:
	// indicator: busy
	// indicator: pneumonia (prioritise; press the button to acknowledge)
	// indicator: busy
	// indicator: normal
}
