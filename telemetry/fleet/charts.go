package fleet

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"time"
)

// series is one chart: a value per health point (NaN where unknown).
type series struct {
	title, unit string
	value       func(HealthPoint) float64
	limit       float64 // dashed line, NaN for none
	limitLabel  string
}

func (s *Service) charts(h []HealthPoint) []template.HTML {
	th := s.opts.Alerts
	all := []series{
		{"Temperature", "°C", func(p HealthPoint) float64 {
			if p.TempC == nil {
				return math.NaN()
			}
			return *p.TempC
		}, th.TempC, "alert"},
		{"Free disk", "GB", func(p HealthPoint) float64 { return float64(p.DiskFree) / 1e9 }, float64(th.DiskFreeMin) / 1e9, "alert"},
		{"Backlog (queue + outbox)", "items", func(p HealthPoint) float64 { return float64(p.Queue + p.Outbox) }, float64(th.OutboxMax), "outbox alert"},
		{"Inference time p95", "ms", func(p HealthPoint) float64 { return p.InferP95 }, math.NaN(), ""},
	}
	out := make([]template.HTML, len(all))
	for i, sr := range all {
		out[i] = svgChart(sr, h)
	}
	return out
}

// svgChart draws one series as inline SVG: no scripts, no external assets. Gaps longer than
// ten minutes break the line, so an outage is visible as a gap.
func svgChart(sr series, pts []HealthPoint) template.HTML {
	const w, hgt, left, right, top, bottom = 600.0, 190.0, 58.0, 10.0, 12.0, 28.0
	var b strings.Builder
	title := html.EscapeString(sr.title)
	fmt.Fprintf(&b, `<figure class="chart"><figcaption>%s <span class="unit">(%s)</span></figcaption>`, title, html.EscapeString(sr.unit))
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" role="img" aria-label="%s over time">`, w, hgt, title)
	lo, hi := math.Inf(1), math.Inf(-1)
	var t0, t1 time.Time
	n := 0
	for _, p := range pts {
		v := sr.value(p)
		if math.IsNaN(v) {
			continue
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
		if n == 0 {
			t0 = p.TS
		}
		t1 = p.TS
		n++
	}
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="empty" text-anchor="middle">no data yet</text></svg></figure>`, w/2, hgt/2)
		return template.HTML(b.String())
	}
	if !math.IsNaN(sr.limit) && sr.limit > 0 {
		// Show the limit only when it is near the data, so it does not flatten the curve.
		if sr.limit <= hi*1.5+1 {
			lo, hi = math.Min(lo, sr.limit), math.Max(hi, sr.limit)
		}
	}
	if lo > 0 && lo < hi*0.3 {
		lo = 0
	}
	if hi-lo < 1e-9 {
		lo, hi = lo-1, hi+1
	}
	pad := (hi - lo) * 0.08
	lo, hi = lo-pad, hi+pad
	if t1.Sub(t0) < time.Minute {
		t0 = t1.Add(-time.Minute)
	}
	x := func(t time.Time) float64 { return left + (w-left-right)*t.Sub(t0).Seconds()/t1.Sub(t0).Seconds() }
	y := func(v float64) float64 { return top + (hgt-top-bottom)*(1-(v-lo)/(hi-lo)) }
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" class="plot"/>`, left, top, w-left-right, hgt-top-bottom)
	for _, v := range []float64{lo + pad, (lo + hi) / 2, hi - pad} {
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" class="grid"/><text x="%.0f" y="%.1f" class="axis" text-anchor="end">%s</text>`,
			left, w-right, y(v), y(v), left-6, y(v)+4, fmtTick(v))
	}
	if !math.IsNaN(sr.limit) && sr.limit > lo && sr.limit < hi {
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" class="limit"><title>%s %s</title></line>`,
			left, w-right, y(sr.limit), y(sr.limit), html.EscapeString(sr.limitLabel), fmtTick(sr.limit))
	}
	var line []string
	flush := func() {
		if len(line) == 1 {
			fmt.Fprintf(&b, `<circle r="2" class="dot" cx="%s"/>`, strings.Replace(line[0], ",", `" cy="`, 1))
		} else if len(line) > 1 {
			fmt.Fprintf(&b, `<polyline class="line" points="%s"/>`, strings.Join(line, " "))
		}
		line = line[:0]
	}
	var prev time.Time
	for _, p := range pts {
		v := sr.value(p)
		if math.IsNaN(v) {
			continue
		}
		if !prev.IsZero() && p.TS.Sub(prev) > 10*time.Minute {
			flush()
		}
		prev = p.TS
		line = append(line, fmt.Sprintf("%.1f,%.1f", x(p.TS), y(v)))
	}
	flush()
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="axis">%s</text><text x="%.0f" y="%.0f" class="axis" text-anchor="end">%s UTC</text>`,
		left, hgt-6, t0.UTC().Format("Jan 2 15:04"), w-right, hgt-6, t1.UTC().Format("Jan 2 15:04"))
	b.WriteString(`</svg></figure>`)
	return template.HTML(b.String())
}

func fmtTick(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
