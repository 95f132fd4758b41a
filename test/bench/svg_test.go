package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
	"testing"
	"time"
)

// svgPanel is one series of a stacked time plot.
type svgPanel struct {
	title string
	unit  string
	at    []time.Duration
	v     []float64
}

// svgPlot draws panels one above the other on a shared time axis in
// minutes, with marks (e.g. changes) as ticks along each panel's bottom.
// Plain SVG: no plotting library for four lines.
func svgPlot(title string, panels []svgPanel, span time.Duration, marks []time.Duration) string {
	const (
		width, left, right = 900.0, 80.0, 20.0
		panelH, gap, top   = 150.0, 45.0, 40.0
	)
	plotW := width - left - right
	height := top + float64(len(panels))*(panelH+gap) + 10
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	w(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	w(`<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	minutes := math.Max(span.Minutes(), 1e-9)
	x := func(d time.Duration) float64 { return left + plotW*d.Minutes()/minutes }
	xStep := niceStep(minutes / 8)
	for i, p := range panels {
		y0 := top + float64(i)*(panelH+gap) + 15
		lo, hi := 0.0, 0.0
		for j, v := range p.v {
			if j == 0 || v > hi {
				hi = v
			}
		}
		if hi <= lo {
			hi = lo + 1
		}
		step := niceStep(hi / 4)
		hi = math.Ceil(hi/step) * step
		y := func(v float64) float64 { return y0 + panelH - panelH*(v-lo)/(hi-lo) }
		w(`<text x="%.0f" y="%.0f" font-weight="bold">%s (%s)</text>`+"\n", left, y0-6, html.EscapeString(p.title), html.EscapeString(p.unit))
		w(`<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", left, y0, plotW, panelH)
		for v := lo; v <= hi+step/2; v += step {
			w(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`, left, left+plotW, y(v), y(v))
			w(`<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, trimFloat(v))
		}
		for m := 0.0; m <= minutes+xStep/2; m += xStep {
			xm := left + plotW*m/minutes
			w(`<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#999"/>`, xm, xm, y0+panelH, y0+panelH+4)
			w(`<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", xm, y0+panelH+16, trimFloat(m))
		}
		for _, m := range marks {
			w(`<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#e69f00"/>`, x(m), x(m), y0+panelH-5, y0+panelH)
		}
		var pts []string
		for j := range p.v {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.at[j]), y(p.v[j])))
		}
		w(`<polyline fill="none" stroke="#0072b2" stroke-width="1.5" points="%s"/>`+"\n", strings.Join(pts, " "))
	}
	w(`<text x="%.0f" y="%.0f" text-anchor="middle">minutes (orange ticks: changes)</text>`+"\n", left+plotW/2, height-4)
	w("</svg>\n")
	return b.String()
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

// soakSVG plots the soak's samples.
func soakSVG(samples []soakSample, changes []soakChange, cfg soakConfig) string {
	var at, rateAt, dbAt []time.Duration
	var rss, gor, rate, db []float64
	for i, s := range samples {
		at = append(at, s.at)
		rss = append(rss, float64(s.managerRSS)/1024)
		gor = append(gor, s.goroutines)
		if s.etcdDBBytes > 0 { // 0: the scrape lacked the metric
			dbAt = append(dbAt, s.at)
			db = append(db, s.etcdDBBytes/(1<<20))
		}
		if i > 0 {
			rateAt = append(rateAt, s.at)
			rate = append(rate, (s.apiRequests-samples[i-1].apiRequests)/(s.at-samples[i-1].at).Seconds())
		}
	}
	var marks []time.Duration
	for _, c := range changes {
		marks = append(marks, c.at)
	}
	return svgPlot(fmt.Sprintf("edgefleet soak: %d clusters, a change every %s, %s", cfg.clusters, cfg.changeEvery, cfg.duration), []svgPanel{
		{"manager RSS", "MiB", at, rss},
		{"manager goroutines", "count", at, gor},
		{"kube-apiserver requests", "req/s", rateAt, rate},
		{"etcd database size", "MiB", dbAt, db},
	}, cfg.duration, marks)
}

func TestNiceStep(t *testing.T) {
	for _, tt := range []struct{ raw, want float64 }{{0, 1}, {0.3, 0.5}, {1, 1}, {1.1, 2}, {3, 5}, {7, 10}, {12, 20}, {450, 500}} {
		if got := niceStep(tt.raw); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("niceStep(%v) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func TestFitTrend(t *testing.T) {
	mins := func(n int) []time.Duration {
		var d []time.Duration
		for i := range n {
			d = append(d, time.Duration(i)*time.Minute)
		}
		return d
	}
	line := func(n int, a, perHour float64) []float64 {
		var v []float64
		for i := range n {
			v = append(v, a+perHour*float64(i)/60)
		}
		return v
	}
	for _, tt := range []struct {
		name          string
		v             []float64
		noise         float64
		slope         float64
		flat, leaking bool
	}{
		{"constant", line(60, 300, 0), 10, 0, true, false},
		{"growing 100 MiB/h on 300", line(60, 300, 100), 10, 100, false, true},
		{"within 5%/h of the mean", line(60, 1000, 40), 10, 40, true, false},
		{"shrinking", line(60, 300, -60), 10, -60, false, false},
		{"below the noise floor", line(60, 100, 30), 50, 30, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := fitTrend(mins(len(tt.v)), tt.v, tt.noise)
			if math.Abs(got.slopePerHour-tt.slope) > 1e-6 || got.flat != tt.flat || got.leaks() != tt.leaking {
				t.Errorf("slope %v flat %v leaks %v, want %v %v %v", got.slopePerHour, got.flat, got.leaks(), tt.slope, tt.flat, tt.leaking)
			}
		})
	}
}

func TestSoakSVG(t *testing.T) {
	var samples []soakSample
	for i := range 7 {
		samples = append(samples, soakSample{at: time.Duration(i) * 10 * time.Second, managerRSS: 200 << 10, goroutines: 900 + float64(i),
			apiRequests: float64(100 * i), etcdDBBytes: 8 << 20})
	}
	svg := soakSVG(samples, []soakChange{{at: 0}, {at: time.Minute}}, soakConfig{clusters: 5, changeEvery: time.Minute, duration: time.Minute})
	for _, want := range []string{"<svg ", "</svg>", "manager RSS (MiB)", "manager goroutines", "kube-apiserver requests (req/s)", "<polyline"} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if strings.Count(svg, "<polyline") != 4 || strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
		t.Errorf("want 4 finite lines:\n%s", svg)
	}
}

func TestJudgeSoak(t *testing.T) {
	// An hour of 10 s samples: level memory and goroutines, 50 req/s with a
	// burst of 1,000 requests at each minute's change, a database of
	// 80 MiB with readings that lack the metric now and then.
	var samples []soakSample
	var requests float64
	for i := range 361 {
		at := time.Duration(i) * 10 * time.Second
		requests += 500
		if i%6 == 0 {
			requests += 1000
		}
		db := float64(80 << 20)
		if i%50 == 7 {
			db = 0
		}
		samples = append(samples, soakSample{at: at, managerRSS: 350 << 10, goroutines: 5100, apiRequests: requests, apiserverRSS: 800 << 10, etcdDBBytes: db})
	}
	changes := []soakChange{{at: 0, converged: 5 * time.Second}, {at: time.Minute, converged: 9 * time.Second}, {at: 2 * time.Minute}}
	r := judgeSoak(samples, changes, soakConfig{duration: time.Hour, changeEvery: time.Minute, sampleEvery: 10 * time.Second})
	for name, tr := range map[string]trend{"rss": r.rss, "goroutines": r.goroutines, "rate": r.rate, "db": r.db, "apiserver rss": r.apiRSS} {
		if !tr.flat {
			t.Errorf("%s judged not flat: slope %+.2f/h (%v)", name, tr.slopePerHour, tr)
		}
	}
	if r.db.min != 80 {
		t.Errorf("etcd size minimum %v MiB: a reading without the metric was taken for an empty database", r.db.min)
	}
	if r.changes != 3 || r.converged != 2 || r.worst != 9*time.Second {
		t.Errorf("changes %d converged %d worst %s, want 3, 2, 9s", r.changes, r.converged, r.worst)
	}
}
