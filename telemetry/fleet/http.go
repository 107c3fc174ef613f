package fleet

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

//go:embed web
var webFS embed.FS

// Handler serves the UI, the JSON API, server-sent events and /metrics.
//
//	GET /                          fleet page        GET /api/devices
//	GET /device/{site}/{id}        device page       GET /api/devices/{site}/{id}?hours=24
//	GET /events                    SSE "change"      GET /api/results?site=&device=&label=&limit=
//	GET /metrics                   Prometheus        GET /api/alerts, /api/stats, /healthz
//	POST /api/devices/{site}/{id}/cmd/{name}         GET /api/commands?site=&device=&limit=
//	(commands need an operator token, see CommandOptions)
func (s *Service) Handler() http.Handler {
	tpl := template.Must(template.New("").Funcs(s.funcs()).ParseFS(webFS, "web/*.html"))
	static, _ := fs.Sub(webFS, "web/static")
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", s.page(tpl, "fleet.html", s.fleetData))
	mux.HandleFunc("GET /device/{site}/{id}", s.page(tpl, "device.html", s.deviceData))
	mux.HandleFunc("GET /fragment/fleet", s.page(tpl, "fleet-table", s.fleetData))
	mux.HandleFunc("GET /fragment/summary", s.page(tpl, "summary", s.fleetData))
	mux.HandleFunc("GET /fragment/alerts", s.page(tpl, "alerts", s.fleetData))
	mux.HandleFunc("GET /fragment/feed", s.page(tpl, "feed", s.fleetData))
	mux.HandleFunc("GET /fragment/device/{site}/{id}", s.page(tpl, "device-body", s.deviceData))
	mux.HandleFunc("GET /fragment/commands/{site}/{id}", s.page(tpl, "command-list", func(r *http.Request) (any, int, error) {
		es, err := s.store.audits(r.PathValue("site"), r.PathValue("id"), deviceCommandsShown)
		if err != nil {
			return nil, http.StatusInternalServerError, err
		}
		return es, http.StatusOK, nil
	}))
	mux.HandleFunc("GET /api/devices", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.state.Devices()) })
	mux.HandleFunc("GET /api/devices/{site}/{id}", s.apiDevice)
	mux.HandleFunc("GET /api/results", s.apiResults)
	mux.HandleFunc("POST /api/devices/{site}/{id}/cmd/{name}", s.apiCommand)
	mux.HandleFunc("GET /api/commands", s.apiCommands)
	mux.HandleFunc("GET /api/alerts", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.state.Alerts()) })
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.snapshotStats()) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !s.Healthy() {
			http.Error(w, "processor stalled", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.stats.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /events", s.serveEvents)
	return securityHeaders(mux)
}

// securityHeaders: the UI needs nothing from other origins.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// badRequest names the parameter and what is allowed.
func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeJSON(w, http.StatusBadRequest, apiError{Error: fmt.Sprintf(format, args...)})
}

// DeviceDetail is the body of GET /api/devices/{site}/{id}.
type DeviceDetail struct {
	Device  DeviceView     `json:"device"`
	History []HealthPoint  `json:"history"`
	Results []ResultRecord `json:"results"`
}

// maxHistoryPoints bounds one history response.
const maxHistoryPoints = 20000

func (s *Service) deviceDetail(r *http.Request) (DeviceDetail, int, error) {
	site, id := r.PathValue("site"), r.PathValue("id")
	if !telemetry.ValidID(site) || !telemetry.ValidID(id) {
		return DeviceDetail{}, http.StatusBadRequest, fmt.Errorf("site and device ids: want 1-64 characters of [a-zA-Z0-9_-]")
	}
	hours := 24
	if q := r.URL.Query().Get("hours"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 24*400 {
			return DeviceDetail{}, http.StatusBadRequest, fmt.Errorf("hours %q: want a whole number from 1 to 9600", q)
		}
		hours = n
	}
	v, ok := s.state.Device(site, id)
	if !ok {
		return DeviceDetail{}, http.StatusNotFound, fmt.Errorf("device %s/%s: not known to this dashboard", site, id)
	}
	hist, err := s.store.history(site, id, s.opts.Now().Add(-time.Duration(hours)*time.Hour), maxHistoryPoints)
	if err != nil {
		return DeviceDetail{}, http.StatusInternalServerError, err
	}
	res, err := s.store.results(ResultQuery{Site: site, Device: id, Limit: 20})
	if err != nil {
		return DeviceDetail{}, http.StatusInternalServerError, err
	}
	if hist == nil {
		hist = []HealthPoint{}
	}
	return DeviceDetail{Device: v, History: hist, Results: res}, http.StatusOK, nil
}

func (s *Service) apiDevice(w http.ResponseWriter, r *http.Request) {
	d, code, err := s.deviceDetail(r)
	if err != nil {
		writeJSON(w, code, apiError{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// parseResultQuery reads site, device, label and limit (default 50, at most 1000).
func parseResultQuery(r *http.Request) (ResultQuery, error) {
	q := r.URL.Query()
	rq := ResultQuery{Site: q.Get("site"), Device: q.Get("device"), Label: q.Get("label"), Limit: 50}
	if rq.Site != "" && !telemetry.ValidID(rq.Site) {
		return rq, fmt.Errorf("site %q: want 1-64 characters of [a-zA-Z0-9_-]", rq.Site)
	}
	if rq.Device != "" && !telemetry.ValidID(rq.Device) {
		return rq, fmt.Errorf("device %q: want 1-64 characters of [a-zA-Z0-9_-]", rq.Device)
	}
	switch rq.Label {
	case "", telemetry.LabelNormal, telemetry.LabelPneumonia, telemetry.LabelUnreadable:
	default:
		return rq, fmt.Errorf("label %q: want normal, pneumonia or unreadable", rq.Label)
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return rq, fmt.Errorf("limit %q: want a whole number from 1 to 1000", l)
		}
		rq.Limit = n
	}
	return rq, nil
}

func (s *Service) apiResults(w http.ResponseWriter, r *http.Request) {
	rq, err := parseResultQuery(r)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	res, err := s.store.results(rq)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// fleetPage is the data of the fleet page and its fragments.
type fleetPage struct {
	Now                      time.Time
	Devices                  []DeviceView
	Alerts                   []Alert
	Results                  []ResultRecord
	Online, Offline, Unknown int
	Critical, Warning        int
	Connected                bool
	Thresholds               Thresholds
}

func (s *Service) fleetData(r *http.Request) (any, int, error) {
	p := fleetPage{Now: s.opts.Now(), Devices: s.state.Devices(), Alerts: s.state.Alerts(), Connected: s.Connected(), Thresholds: s.opts.Alerts}
	for _, d := range p.Devices {
		switch d.State {
		case telemetry.StateOnline:
			p.Online++
		case telemetry.StateOffline:
			p.Offline++
		default:
			p.Unknown++
		}
	}
	for _, a := range p.Alerts {
		if a.Severity == SevCritical {
			p.Critical++
		} else {
			p.Warning++
		}
	}
	rq, err := parseResultQuery(r)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	if r.URL.Query().Get("limit") == "" {
		rq.Limit = 25
	}
	p.Results, err = s.store.results(rq)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	return p, http.StatusOK, nil
}

// devicePage is the data of the device page.
type devicePage struct {
	DeviceDetail
	Now             time.Time
	Charts          []template.HTML
	CommandsEnabled bool
	Commands        []AuditEntry
}

// deviceCommandsShown is how many audit entries the device page lists.
const deviceCommandsShown = 20

func (s *Service) deviceData(r *http.Request) (any, int, error) {
	d, code, err := s.deviceDetail(r)
	if err != nil {
		return nil, code, err
	}
	cmds, err := s.store.audits(d.Device.Site, d.Device.ID, deviceCommandsShown)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	return devicePage{DeviceDetail: d, Now: s.opts.Now(), Charts: s.charts(d.History), CommandsEnabled: len(s.cmd.ops) > 0, Commands: cmds}, http.StatusOK, nil
}

// page renders a template into a buffer first, so a failure is a clean error page.
func (s *Service) page(tpl *template.Template, name string, data func(*http.Request) (any, int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, code, err := data(r)
		if err != nil {
			http.Error(w, err.Error(), code)
			return
		}
		var buf bytes.Buffer
		if err := tpl.ExecuteTemplate(&buf, name, v); err != nil {
			s.log.Error("render page", "template", name, "err", err)
			http.Error(w, "rendering failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(buf.Bytes())
	}
}

func (s *Service) funcs() template.FuncMap {
	return template.FuncMap{
		"ago": func(now, t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			d := now.Sub(t)
			if d < 0 {
				d = 0
			}
			return ago(d) + " ago"
		},
		"clock": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
		"gb":   func(b uint64) string { return gb(b) },
		"pct":  func(f float64) string { return fmt.Sprintf("%.0f %%", 100*f) },
		"num2": func(f float64) string { return fmt.Sprintf("%.2f", f) },
		"ms":   func(f float64) string { return fmt.Sprintf("%.0f ms", f) },
		"temp": func(h *telemetry.Health) string {
			if h == nil || h.TempC == nil {
				return "—"
			}
			return fmt.Sprintf("%.1f °C", *h.TempC)
		},
		"short": shortSHA,
		"model": modelLabel,
		"stateClass": func(v DeviceView) string {
			switch {
			case v.Severity == SevCritical:
				return "bad"
			case v.Severity == SevWarning:
				return "warn"
			case v.State == telemetry.StateOnline:
				return "ok"
			}
			return "unknown"
		},
	}
}
