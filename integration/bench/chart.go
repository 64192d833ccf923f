package bench

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

var toolColors = map[string]string{ToolLocal: "#4477aa", ToolSSH: "#cc3311", ToolPcap: "#228833"}

// toolStroke keeps lines that lie on top of each other visible: the
// ceiling is wide and pale underneath, ssh dashed.
var toolStroke = map[string]string{
	ToolLocal: `stroke-width="7" stroke-opacity="0.45"`,
	ToolSSH:   `stroke-width="2" stroke-dasharray="7 3"`,
	ToolPcap:  `stroke-width="2.5"`,
}

// tick labels an axis value in packets per second.
func tick(v float64) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("%gk", v/1000)
}

// SVG draws delivered rate against offered rate, one panel per payload
// size, one line per tool (medians; bars span the repeats), with the
// loss-free diagonal.
func (r *Results) SVG() string {
	const (
		pw, ph = 420.0, 300.0 // plot area of one panel
		ml, mr = 70.0, 40.0   // margins
		mt, mb = 60.0, 90.0
	)
	sizes := r.Settings.Sizes
	sweepH := ph + mb
	if len(r.Sweep) == 0 {
		sizes, sweepH = nil, 0 // a fan-in run only
	}
	width := max(float64(len(sizes))*(ml+pw+mr)+10, 10+ml+fanInWidth(len(r.FanIn))+mr)
	height := mt + sweepH
	if len(r.FanIn) > 0 {
		height += fanInHeight
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	title := "delivered vs offered packet rate"
	if sweepH == 0 {
		title = "fan-in"
	}
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="15" font-weight="bold">pcap benchmark: %s</text>`+"\n", title)
	fmt.Fprintf(&b, `<text x="10" y="38" fill="#555">%s, %s CPUs (%s), median of %d runs, bars: min–max</text>`+"\n",
		r.Date.Format("2006-01-02"), html.EscapeString(r.Machine["cpus"]), html.EscapeString(r.Machine["cpu"]), r.Settings.Repeats)

	for i, size := range sizes {
		ox := 10 + float64(i)*(ml+pw+mr) + ml
		oy := mt
		var rows []SweepRow
		top := 1.0
		for _, row := range r.Sweep {
			if row.Size == size {
				rows = append(rows, row)
				top = max(top, row.OfferedPPS.Max, row.DeliveredPPS.Max)
			}
		}
		step := niceStep(top / 5)
		top = math.Ceil(top/step) * step
		x := func(v float64) float64 { return ox + v/top*pw }
		y := func(v float64) float64 { return oy + ph - v/top*ph }

		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-weight="bold">%d-byte payloads</text>`+"\n", ox, oy-8, size)
		for v := 0.0; v <= top+step/2; v += step {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x(0), y(v), x(top), y(v))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x(v), y(0), x(v), y(top))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x(0)-6, y(v)+4, tick(v))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(v), y(0)+16, tick(v))
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#888"/>`+"\n", ox, oy, pw, ph)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="4 4"/>`+"\n", x(0), y(0), x(top), y(top))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">offered (packets/s sent)</text>`+"\n", ox+pw/2, oy+ph+34)
		fmt.Fprintf(&b, `<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle">delivered (packets/s in the file)</text>`+"\n", ox-52, oy+ph/2)

		for _, tool := range r.Settings.Tools {
			var pts []SweepRow
			for _, row := range rows {
				if row.Tool == tool {
					pts = append(pts, row)
				}
			}
			slices.SortFunc(pts, func(a, b SweepRow) int {
				if a.OfferedPPS.Median < b.OfferedPPS.Median {
					return -1
				}
				return 1
			})
			c, st := toolColors[tool], toolStroke[tool]
			var line []string
			for _, p := range pts {
				px, py := x(p.OfferedPPS.Median), y(p.DeliveredPPS.Median)
				line = append(line, fmt.Sprintf("%.1f,%.1f", px, py))
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", px, y(p.DeliveredPPS.Min), px, y(p.DeliveredPPS.Max), c)
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s, ceiling %s: offered %s, delivered %s, loss %.3f%%</title></circle>`+"\n",
					px, py, c, tool, rateName(p.Rate), kpps(p.OfferedPPS.Median), kpps(p.DeliveredPPS.Median), p.LossPct.Median)
			}
			if len(line) > 1 {
				fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" %s/>`+"\n", strings.Join(line, " "), c, st)
			}
		}
	}
	// Legend.
	lx, ly := 10+ml, mt+ph+56
	if sweepH == 0 {
		ly = mt + fanInHeight - 20
	}
	for _, tool := range r.Settings.Tools {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" %s/>`+"\n", lx, ly, lx+24, ly, toolColors[tool], toolStroke[tool])
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+30, ly+4, legendName(tool))
		lx += 230
	}
	if sweepH > 0 {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#555">grey dashed diagonal: delivered = offered (no loss)</text>`+"\n", 10+ml, ly+24)
	}
	if len(r.FanIn) > 0 {
		r.fanInSVG(&b, 10+ml, mt+sweepH+40)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func legendName(tool string) string {
	switch tool {
	case ToolLocal:
		return "tcpdump in the VM → tmpfs"
	case ToolSSH:
		return "ssh root@vm 'tcpdump -U -w -'"
	case ToolPcap:
		return "pcap: agent → api → ssh"
	}
	return tool
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

// The fan-in panel: CPU µs per delivered packet (all processes of the
// path), one bar per tool and point, loss and out-of-order under it.
const (
	fanInHeight = 330.0
	fanInBarW   = 34.0
	fanInGap    = 26.0
)

func fanInWidth(rows int) float64 { return float64(rows)*fanInBarW + float64(rows/2)*fanInGap + 40 }

func (r *Results) fanInSVG(b *strings.Builder, ox, oy float64) {
	const ph = 200.0
	top := 1.0
	for _, f := range r.FanIn {
		top = max(top, f.USPerPacket["total"].Max)
	}
	step := niceStep(top / 5)
	top = math.Ceil(top/step) * step
	y := func(v float64) float64 { return oy + ph - v/top*ph }
	w := fanInWidth(len(r.FanIn))
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-weight="bold">fan-in: %d VMs at once into one capture; CPU µs per delivered packet, all processes (bars: min–max); loss %% and packets out of order below</text>`+"\n",
		ox, oy-12, r.Settings.FanInVMs)
	for v := 0.0; v <= top+step/2; v += step {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", ox, y(v), ox+w, y(v))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", ox-6, y(v)+4, tick(v))
	}
	x := ox + 10
	for i, f := range r.FanIn {
		us := f.USPerPacket["total"]
		c := toolColors[f.Tool]
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %d B × %s pps per VM: %.2f µs per packet, loss %.3f%%, out of order %.0f</title></rect>`+"\n",
			x, y(us.Median), fanInBarW-4, ph-(y(us.Median)-oy), c, f.Tool, f.Size, rateName(f.RatePerVM), us.Median, f.LossPct.Median, f.OutOfOrder.Max)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x+(fanInBarW-4)/2, y(us.Min), x+(fanInBarW-4)/2, y(us.Max))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%.1f%%</text>`+"\n", x+(fanInBarW-4)/2, oy+ph+14, f.LossPct.Median)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%.0f</text>`+"\n", x+(fanInBarW-4)/2, oy+ph+28, f.OutOfOrder.Max)
		x += fanInBarW
		if i%2 == 1 {
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%d B × %s</text>`+"\n", x-fanInBarW, oy+ph+46, f.Size, rateName(f.RatePerVM))
			x += fanInGap
		}
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#555">colours as above: pcap (3 agents → api → ssh) beside 3 parallel ssh root@vm 'tcpdump -U -w -'</text>`+"\n", ox, oy+ph+70)
}
