package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// ErrNotFound is returned by Results.Result for an unknown id (the store's own not-found
// error may be wrapped instead; HTTPOptions.NotFound tells them apart).
var ErrNotFound = errors.New("intake: result not found")

// Results reads committed results for the HTTP API.
type Results interface {
	// Result returns the result of input id.
	Result(id string) (telemetry.Result, error)
	// Results returns the newest n results, newest first.
	Results(n int) ([]telemetry.Result, error)
}

// HTTPOptions configure the HTTP handler.
type HTTPOptions struct {
	Processor Processor // required
	Results   Results   // required
	// MaxBytes is the largest accepted body; larger requests get 413. Default 64 MiB.
	MaxBytes int64
	// Health reports whether the device is healthy; nil = always. Its error is shown on
	// GET /healthz with status 503.
	Health func(ctx context.Context) error
	// Metrics serves GET /metrics (promhttp.HandlerFor a registry); nil = 404.
	Metrics http.Handler
	// NotFound reports whether an error of Results means "no such result"; default
	// errors.Is(err, ErrNotFound).
	NotFound func(error) bool
	// Title of the screen (GET /), e.g. "cxr-edge clinic-7/cart-1"; default "cxr-edge".
	Title string
	// Screen supplies the kiosk screen's device state, acknowledge and thumbnails; nil = the
	// screen shows the latest result only, POST /v1/ack answers 501 and thumbnails 404.
	Screen Screen
	// Counters, optional.
	Counters *Metrics
	Logger   *slog.Logger
	Now      func() time.Time
}

// Default and largest n of GET /v1/results.
const (
	DefaultResultsLimit = 20
	MaxResultsLimit     = 1000
)

// idPattern: result ids are 64 lowercase hex digits (the store's keyed hash of the input).
var idPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// NewHTTPHandler returns the device's HTTP API:
//
//	POST /v1/studies          image body (JPEG, PNG or DICOM, recognised by content; the
//	                          Content-Type is not used) → 200 with the result document
//	                          (telemetry.Result, as published on MQTT); the same image again
//	                          returns its earlier result (scored once); an image that cannot be
//	                          decoded → 422 with the "unreadable" result; 400 empty body,
//	                          413 too large, 415 not an image, 503 when it cannot be processed now
//	GET  /v1/results/{id}     one result, 404 when unknown
//	GET  /v1/results?limit=N  the newest N results (default 20, at most 1000), newest first
//	GET  /healthz             200 {"status":"ok"} or 503 {"status":"unhealthy","error":…}
//	GET  /metrics             Prometheus metrics
//	GET  /                    kiosk screen: state colour, latest result with thumbnail and
//	                          score, model, broker and backlog, Acknowledge button (HTML; it
//	                          polls GET /v1/screen once a second)
//	GET  /v1/screen           the screen's state (ScreenState) as JSON
//	POST /v1/ack              clear a latched "pneumonia suspected" → 200 with the new state;
//	                          403 from a page of another origin, 501 without a Screen
//	GET  /v1/thumbnails/{id}  small grey JPEG of an input (local only; never published)
//
// Errors are JSON objects {"error": "..."}.
func NewHTTPHandler(opts HTTPOptions) (http.Handler, error) {
	if opts.Processor == nil || opts.Results == nil {
		return nil, errors.New("intake: HTTP handler needs a Processor and Results")
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.NotFound == nil {
		opts.NotFound = func(err error) bool { return errors.Is(err, ErrNotFound) }
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &httpAPI{opts}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/studies", h.postStudy)
	mux.HandleFunc("GET /v1/results/{id}", h.getResult)
	mux.HandleFunc("GET /v1/results", h.listResults)
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /{$}", h.screenPage)
	mux.HandleFunc("GET /screen.js", h.screenAsset("screen.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /screen.css", h.screenAsset("screen.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET /v1/screen", h.getScreen)
	mux.HandleFunc("POST /v1/ack", h.postAck)
	mux.HandleFunc("GET /v1/thumbnails/{id}", h.getThumbnail)
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	return mux, nil
}

type httpAPI struct{ opts HTTPOptions }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client may have gone; nothing useful to do about it
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (h *httpAPI) reject(w http.ResponseWriter, status int, why error) {
	h.opts.Counters.rejected(SourceHTTP, why)
	writeError(w, status, why.Error())
}

func (h *httpAPI) postStudy(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > h.opts.MaxBytes {
		h.reject(w, http.StatusRequestEntityTooLarge,
			fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, r.ContentLength, h.opts.MaxBytes))
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.reject(w, http.StatusRequestEntityTooLarge,
				fmt.Errorf("%w: the limit is %d bytes", ErrTooLarge, h.opts.MaxBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	if len(data) == 0 {
		h.reject(w, http.StatusBadRequest, fmt.Errorf("%w: send the image as the request body", ErrEmpty))
		return
	}
	format := Sniff(data)
	if format == "" {
		h.reject(w, http.StatusUnsupportedMediaType, ErrUnsupported)
		return
	}
	h.opts.Counters.received(SourceHTTP)
	// The image is scored even if the client disconnects meanwhile: it is already being
	// recorded, and the result stays available under GET /v1/results/{id}.
	res, err := h.opts.Processor.Process(context.WithoutCancel(r.Context()), Input{
		Source: SourceHTTP, Format: format, Data: data, ReceivedAt: h.opts.Now(),
	})
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away
		}
		h.opts.Logger.Error("processing HTTP input", "err", err)
		writeError(w, http.StatusServiceUnavailable, "cannot process the image now: "+err.Error())
		return
	}
	status := http.StatusOK
	if res.Label == telemetry.LabelUnreadable {
		status = http.StatusUnprocessableEntity
	}
	w.Header().Set("Location", "/v1/results/"+res.ID)
	writeJSON(w, status, res)
}

func (h *httpAPI) getResult(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !idPattern.MatchString(id) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("result id %q: want 64 lowercase hex digits", id))
		return
	}
	res, err := h.opts.Results.Result(id)
	if err != nil {
		if h.opts.NotFound(err) {
			writeError(w, http.StatusNotFound, "no result with id "+id)
			return
		}
		h.opts.Logger.Error("reading result", "id", id, "err", err)
		writeError(w, http.StatusInternalServerError, "reading result: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *httpAPI) listResults(w http.ResponseWriter, r *http.Request) {
	n := DefaultResultsLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > MaxResultsLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want an integer from 1 to %d", s, MaxResultsLimit))
			return
		}
		n = v
	}
	res, err := h.opts.Results.Results(n)
	if err != nil {
		h.opts.Logger.Error("listing results", "err", err)
		writeError(w, http.StatusInternalServerError, "listing results: "+err.Error())
		return
	}
	if res == nil {
		res = []telemetry.Result{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": res})
}

func (h *httpAPI) healthz(w http.ResponseWriter, r *http.Request) {
	if h.opts.Health != nil {
		if err := h.opts.Health(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "error": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
