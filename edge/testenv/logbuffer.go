package testenv

import (
	"strings"
	"sync"
)

// LogBuffer is an io.Writer for a logger under test: the test can read what was written while
// the code's goroutines may still be writing.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *LogBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// String returns everything written so far.
func (w *LogBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
