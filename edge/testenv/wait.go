package testenv

import (
	"testing"
	"time"
)

// WaitLimit bounds WaitFor. It is generous on purpose: CI runs the tests under -race on a
// loaded 2-core machine, and a passing test never waits it out, so only a failing test pays.
const WaitLimit = 30 * time.Second

// WaitFor polls cond every few milliseconds until it holds, failing t (naming what it waited
// for) after WaitLimit. Use it instead of sleeping for "long enough".
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", WaitLimit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
