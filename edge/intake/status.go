package intake

import (
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// statusPage is the device's local status page (GET /): the latest results, newest first,
// refreshed every few seconds. It is meant for a browser or kiosk screen beside the X-ray
// unit; it shows no images and no patient data.
var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"pct":  func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
	"when": func(t time.Time) string { return t.Local().Format("15:04:05 02 Jan") },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1rem;background:#111;color:#eee}
table{border-collapse:collapse;width:100%}td,th{padding:.4rem .6rem;text-align:left;border-bottom:1px solid #333}
.pneumonia{background:#b36b00;color:#fff}.normal{background:#1e6b2e;color:#fff}.unreadable{background:#8b1a1a;color:#fff}
.label{font-weight:bold;border-radius:.3rem;padding:.1rem .5rem}
</style></head><body>
<h1>{{.Title}}</h1>
{{if .Results}}<table><tr><th>time</th><th>result</th><th>score</th><th>threshold</th><th>source</th><th>model</th><th>note</th></tr>
{{range .Results}}<tr><td>{{when .ScoredAt}}</td><td><span class="label {{.Label}}">{{.Label}}</span></td>
<td>{{if ne .Label "unreadable"}}{{pct .Score}}{{end}}</td><td>{{pct .Threshold}}</td><td>{{.Source}}</td><td>{{.Model.Name}}</td><td>{{.Reason}}</td></tr>
{{end}}</table>{{else}}<p>No results yet.</p>{{end}}
</body></html>
`))

func (h *httpAPI) statusPage(w http.ResponseWriter, r *http.Request) {
	res, err := h.opts.Results.Results(DefaultResultsLimit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "listing results: "+err.Error())
		return
	}
	title := h.opts.Title
	if title == "" {
		title = "cxr-edge"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_ = statusPage.Execute(w, struct {
		Title   string
		Results []telemetry.Result
	}{title, res})
}
