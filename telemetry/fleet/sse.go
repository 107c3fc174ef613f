package fleet

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// eventKinds is a set of things that changed, coalesced per SSE client.
type eventKinds uint8

const (
	evDevices eventKinds = 1 << iota
	evResults
	evAlerts
	evCommands
)

func kindEvent(kind string) eventKinds {
	switch kind {
	case kindResult:
		return evResults | evDevices
	case kindStatus, kindHealth:
		return evDevices
	}
	return 0
}

func (k eventKinds) names() string {
	var n []string
	if k&evDevices != 0 {
		n = append(n, "devices")
	}
	if k&evResults != 0 {
		n = append(n, "results")
	}
	if k&evAlerts != 0 {
		n = append(n, "alerts")
	}
	if k&evCommands != 0 {
		n = append(n, "commands")
	}
	return strings.Join(n, " ")
}

// hub fans change notifications out to SSE clients. A slow client never blocks the
// processor: its pending changes are merged into one bit set.
type hub struct {
	mu      sync.Mutex
	clients map[*sseClient]struct{}
}

type sseClient struct {
	mu      sync.Mutex
	pending eventKinds
	wake    chan struct{}
}

func newHub() *hub { return &hub{clients: map[*sseClient]struct{}{}} }

func (h *hub) publish(k eventKinds) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		c.mu.Lock()
		c.pending |= k
		c.mu.Unlock()
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

func (h *hub) add() *sseClient {
	c := &sseClient{wake: make(chan struct{}, 1)}
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
	return c
}

func (h *hub) remove(c *sseClient) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
}

// sseMinGap limits each client to one event per interval; changes in between are merged.
const sseMinGap = 500 * time.Millisecond

// serveEvents streams "change" events whose data lists what changed ("devices results
// alerts"); the page then re-fetches the fragments it shows.
func (s *Service) serveEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	c := s.hub.add()
	defer s.hub.remove(c)
	fmt.Fprint(w, "retry: 3000\n: connected\n\n")
	fl.Flush()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case <-c.wake:
			c.mu.Lock()
			k := c.pending
			c.pending = 0
			c.mu.Unlock()
			if k == 0 {
				continue
			}
			if _, err := fmt.Fprintf(w, "event: change\ndata: %s\n\n", k.names()); err != nil {
				return
			}
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(sseMinGap):
			}
		}
	}
}
