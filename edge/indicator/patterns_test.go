package indicator

import "testing"

// TestPatterns pins down what each LED shows per state: the contract with the clinician.
func TestPatterns(t *testing.T) {
	cases := []struct {
		base              State
		latched           bool
		green, amber, red uint8
	}{
		{Ready, false, patOn, patOff, patOff},
		{Normal, false, patOn, patOff, patOff},
		{Busy, false, patBlink, patOff, patOff},
		{Backlog, false, patDouble, patOff, patOff},
		{Fault, false, patOff, patOff, patOn},
		{Pneumonia, true, patOff, patOn, patOff},
		// Latched amber stays whatever else happens.
		{Busy, true, patBlink, patOn, patOff},
		{Normal, true, patOn, patOn, patOff},
		{Fault, true, patOff, patOn, patOn},
		{Backlog, true, patDouble, patOn, patOff},
	}
	for _, c := range cases {
		g, a, r := patterns(c.base, c.latched)
		if g != c.green || a != c.amber || r != c.red {
			t.Errorf("%s latched=%v: green %08b amber %08b red %08b", c.base, c.latched, g, a, r)
		}
	}
	// Blinking patterns must differ visibly: not steady, and not equal to each other.
	if patBlink == patDouble || patBlink == patOn || patDouble == patOff {
		t.Fatal("blink patterns indistinct")
	}
}
