package intake

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"time"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// ScreenState is what the kiosk screen shows (GET /v1/screen). It carries no patient data:
// the latest result is the same document as published on MQTT.
type ScreenState struct {
	// Title names the device, e.g. "cxr-edge clinic-7/cart-1".
	Title string `json:"title"`
	// State is the indicator's state: ready, busy, normal, pneumonia, fault or backlog. The
	// screen's colour follows it, so screen and LEDs never disagree.
	State string `json:"state"`
	// Latest is the newest result, nil before the first.
	Latest *telemetry.Result `json:"latest,omitempty"`
	// Thumbnail is the local URL of Latest's thumbnail ("" when there is no result).
	Thumbnail string `json:"thumbnail,omitempty"`
	// Model is the model in use and Threshold its operating point.
	Model     telemetry.ModelRef `json:"model"`
	Threshold float64            `json:"threshold"`
	// Pending inputs wait to be scored; Outbox results wait for the broker.
	Pending int `json:"pending"`
	Outbox  int `json:"outbox"`
	// Broker is "connected", "disconnected" or "none" (no broker configured).
	Broker string `json:"broker"`
	// Time is the device's clock when the state was read.
	Time time.Time `json:"time"`
}

// Broker states of ScreenState.
const (
	BrokerConnected    = "connected"
	BrokerDisconnected = "disconnected"
	BrokerNone         = "none"
)

// Screen is the device side of the kiosk screen (the daemon implements it).
type Screen interface {
	// ScreenState returns what the screen shows now; Title and Thumbnail are filled in by
	// the handler.
	ScreenState(ctx context.Context) (ScreenState, error)
	// Acknowledge clears a latched "pneumonia suspected" (the screen's button).
	Acknowledge(ctx context.Context) error
	// Thumbnail returns a small grey JPEG of input id; an error matched by
	// HTTPOptions.NotFound (or ErrNotFound) when there is none.
	Thumbnail(ctx context.Context, id string) ([]byte, error)
}

// ErrNoScreen: the handler was built without HTTPOptions.Screen.
var ErrNoScreen = errors.New("intake: this device has no screen state (HTTPOptions.Screen is nil)")

//go:embed screen
var screenFiles embed.FS

var screenPage = template.Must(template.ParseFS(screenFiles, "screen/index.html"))

// screenCSP lets the page load only its own script, style, thumbnails and JSON.
const screenCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (h *httpAPI) title() string {
	if h.opts.Title == "" {
		return "cxr-edge"
	}
	return h.opts.Title
}

// screenPage serves the kiosk page; screen.js fills it from GET /v1/screen once a second.
func (h *httpAPI) screenPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", screenCSP)
	w.Header().Set("Cache-Control", "no-store")
	_ = screenPage.Execute(w, struct{ Title string }{h.title()})
}

func (h *httpAPI) screenAsset(name, contentType string) http.HandlerFunc {
	data, err := screenFiles.ReadFile("screen/" + name)
	if err != nil {
		panic(err) // embedded at build time: a missing file is a build mistake
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(data)
	}
}

// state reads the screen state, or, without a Screen, the latest result alone.
func (h *httpAPI) state(ctx context.Context) (ScreenState, error) {
	var s ScreenState
	if h.opts.Screen != nil {
		var err error
		if s, err = h.opts.Screen.ScreenState(ctx); err != nil {
			return s, err
		}
	} else {
		s = ScreenState{State: "ready", Broker: BrokerNone, Time: h.opts.Now()}
		res, err := h.opts.Results.Results(1)
		if err != nil {
			return s, err
		}
		if len(res) > 0 {
			s.Latest = &res[0]
			s.Model, s.Threshold = res[0].Model, res[0].Threshold
		}
	}
	s.Title = h.title()
	if s.Latest != nil && h.opts.Screen != nil {
		s.Thumbnail = "/v1/thumbnails/" + s.Latest.ID
	}
	return s, nil
}

func (h *httpAPI) getScreen(w http.ResponseWriter, r *http.Request) {
	s, err := h.state(r.Context())
	if err != nil {
		h.opts.Logger.Error("reading screen state", "err", err)
		writeError(w, http.StatusInternalServerError, "reading screen state: "+err.Error())
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s)
}

// postAck acknowledges a latched alert. A request from a page of another origin is refused:
// only the device's own screen (or a client without an Origin header, such as curl on the
// device) may clear the amber.
func (h *httpAPI) postAck(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			writeError(w, http.StatusForbidden, "acknowledge from another origin refused")
			return
		}
	}
	if h.opts.Screen == nil {
		writeError(w, http.StatusNotImplemented, ErrNoScreen.Error())
		return
	}
	if err := h.opts.Screen.Acknowledge(r.Context()); err != nil {
		h.opts.Logger.Error("acknowledge", "err", err)
		writeError(w, http.StatusInternalServerError, "acknowledge: "+err.Error())
		return
	}
	h.opts.Logger.Info("alert acknowledged on the screen", "remote", r.RemoteAddr)
	h.getScreen(w, r)
}

func (h *httpAPI) getThumbnail(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !idPattern.MatchString(id) {
		writeError(w, http.StatusBadRequest, "thumbnail id "+id+": want 64 lowercase hex digits")
		return
	}
	if h.opts.Screen == nil {
		writeError(w, http.StatusNotFound, ErrNoScreen.Error())
		return
	}
	data, err := h.opts.Screen.Thumbnail(r.Context(), id)
	if err != nil {
		if h.opts.NotFound(err) || errors.Is(err, ErrNotFound) {
			writeError(w, http.StatusNotFound, "no thumbnail for "+id)
			return
		}
		h.opts.Logger.Warn("thumbnail", "id", id, "err", err)
		writeError(w, http.StatusInternalServerError, "thumbnail: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// A thumbnail of an id never changes; the screen may cache it, nobody else.
	w.Header().Set("Cache-Control", "private, max-age=3600")
	_, _ = w.Write(data)
}
