//go:build race

package engine

// raceEnabled lets the heaviest cases (MobileNetV2) step aside under the race detector,
// which slows them tenfold; they still run in the plain test run.
const raceEnabled = true
