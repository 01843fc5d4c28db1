package main

import (
	"fmt"
	"math"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// series is one line of a plot: at each x, the median of some runs with
// their minimum and maximum as an error bar.
type series struct {
	name string
	xs   []float64
	ys   []stat
}

// seriesXY adapts a series to gonum's XYer and YErrorer.
type seriesXY series

func (s seriesXY) Len() int                    { return len(s.xs) }
func (s seriesXY) XY(i int) (float64, float64) { return s.xs[i], s.ys[i].Med }
func (s seriesXY) YError(i int) (float64, float64) {
	return s.ys[i].Med - s.ys[i].Min, s.ys[i].Max - s.ys[i].Med
}

// add appends the point when it has runs.
func (s *series) add(x float64, y stat) {
	if y.N > 0 {
		s.xs = append(s.xs, x)
		s.ys = append(s.ys, y)
	}
}

// linePlot draws series against x, with a logarithmic x axis when logX.
func linePlot(path, title, xlabel, ylabel string, logX bool, ss ...series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text, p.Y.Label.Text = xlabel, ylabel
	p.Legend.Top = true
	xmin, xmax := math.Inf(1), math.Inf(-1)
	for i, s := range ss {
		if len(s.xs) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(seriesXY(s))
		if err != nil {
			return fmt.Errorf("plot %s: %w", title, err)
		}
		l.Color = plotutil.Color(i)
		pts.Color = plotutil.Color(i)
		pts.Shape = plotutil.Shape(i)
		eb, err := plotter.NewYErrorBars(seriesXY(s))
		if err != nil {
			return fmt.Errorf("plot %s: %w", title, err)
		}
		eb.Color = plotutil.Color(i)
		p.Add(l, pts, eb)
		p.Legend.Add(s.name, l, pts)
		for _, x := range s.xs {
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
		}
	}
	if math.IsInf(xmin, 1) {
		return errNoData
	}
	p.Y.Min = 0
	p.Y.Max = headroom(ss...)
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.X.Min, p.X.Max = xmin/1.5, xmax*1.5
	} else if xmin == xmax {
		p.X.Min, p.X.Max = xmin-1, xmax+1
	}
	return save(p, path)
}

// bars is one set of bars: one value per category.
type bars struct {
	name string
	ys   []stat
}

// barPlot draws groups of bars, one group per category.
func barPlot(path, title, ylabel string, categories []string, bs ...bars) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	w := vg.Points(float64(min(80/len(bs), 24)))
	for i, b := range bs {
		vals := make(plotter.Values, len(b.ys))
		for j, y := range b.ys {
			vals[j] = y.Med
		}
		bc, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return fmt.Errorf("plot %s: %w", title, err)
		}
		bc.Color = plotutil.Color(i)
		bc.LineStyle.Width = 0
		bc.Offset = w * vg.Length(float64(i)-float64(len(bs)-1)/2)
		p.Add(bc)
		p.Legend.Add(b.name, bc)
	}
	p.NominalX(categories...)
	p.X.Min, p.X.Max = -0.7, float64(len(categories))-0.3
	p.Y.Min = 0
	var ys []stat
	for _, b := range bs {
		ys = append(ys, b.ys...)
	}
	p.Y.Max = headroom(series{ys: ys})
	return save(p, path)
}

// headroom is the top of a y axis: the largest value plus room for the
// legend above it.
func headroom(ss ...series) float64 {
	top := 0.0
	for _, s := range ss {
		for _, y := range s.ys {
			top = math.Max(top, y.Max)
		}
	}
	if top == 0 {
		return 1
	}
	return top * 1.3
}

func save(p *plot.Plot, path string) error {
	if err := p.Save(18*vg.Centimeter, 11*vg.Centimeter, path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// errNoData marks a plot without a point to draw.
var errNoData = fmt.Errorf("no data")

// plots writes the plots of what was measured into dir and returns their
// file names.
func (r *report) plots(dir string) ([]string, error) {
	var files []string
	emit := func(name string, fn func(path string) error) error {
		err := fn(filepath.Join(dir, name))
		if err == errNoData {
			return nil
		}
		if err != nil {
			return err
		}
		files = append(files, name)
		return nil
	}
	var steps []func() error
	if len(r.peers) > 0 {
		steps = append(steps, func() error {
			return emit("peers.png", func(path string) error {
				var cats []string
				var eddy, js bars
				eddy.name, js.name = "Eddy", "JetStream"
				for _, durable := range []bool{true, false} {
					for _, row := range r.peers {
						e, n, name := row.EddyRelaxed, row.NATSRelaxed, "relaxed"
						if durable {
							e, n, name = row.EddyDurable, row.NATSDurable, "durable"
						}
						cats = append(cats, fmt.Sprintf("%s %s ×%d", name, sizeName(row.Size), row.Producers))
						eddy.ys = append(eddy.ys, statOf(e, mbps))
						js.ys = append(js.ys, statOf(n, mbps))
					}
				}
				return barPlot(path, "Produce: Eddy and NATS JetStream", "MB/s", cats, eddy, js)
			})
		})
	}
	if len(r.ceilings) > 0 {
		steps = append(steps, func() error {
			return emit("ceilings.png", func(path string) error {
				var cats []string
				c, e := bars{name: "ceiling"}, bars{name: "Eddy"}
				for _, row := range r.ceilings {
					cats = append(cats, row.Short)
					c.ys = append(c.ys, statOf(row.CeilingRuns, mbps))
					e.ys = append(e.ys, statOf(row.EddyRuns, mbps))
				}
				return barPlot(path, "Eddy against the machine's ceilings", "MB/s", cats, c, e)
			})
		})
	}
	if l := r.latency; l != nil {
		steps = append(steps, func() error {
			return emit("latency.png", func(path string) error {
				pr, e2e, floor := bars{name: "produce"}, bars{name: "end to end"}, bars{name: "loopback floor"}
				for _, f := range []func(measure) float64{p50, p99, p999} {
					pr.ys = append(pr.ys, statOf(l.Produce, f))
					e2e.ys = append(e2e.ys, statOf(l.E2E, f))
					floor.ys = append(floor.ys, statOf(l.Floor, f))
				}
				return barPlot(path, fmt.Sprintf("Latency at half the maximum (produce %.0f, end to end %.0f records/s), 1 KiB, durable", l.Rate, l.E2ERate), "ms",
					[]string{"p50", "p99", "p99.9"}, pr, e2e, floor)
			})
		})
	}
	if len(r.parts) > 0 {
		steps = append(steps, func() error {
			return emit("partitions.png", func(path string) error {
				keyed, unkeyed := series{name: "durable produce, 1 KiB, keyed"}, series{name: "durable produce, 1 KiB, no keys"}
				for _, pt := range r.parts {
					keyed.add(float64(pt.Partitions), statOf(pt.Runs, mbps))
					if len(pt.Unkeyed) > 0 {
						unkeyed.add(float64(pt.Partitions), statOf(pt.Unkeyed, mbps))
					}
				}
				return linePlot(path, "Throughput against partitions", "partitions", "MB/s", true, keyed, unkeyed)
			})
		}, func() error {
			return emit("memory.png", func(path string) error {
				idle, load := series{name: "idle"}, series{name: "under load (peak)"}
				for _, pt := range r.parts {
					if pt.IdleRSS > 0 {
						idle.add(float64(pt.Partitions), statVals([]float64{float64(pt.IdleRSS) / (1 << 20)}))
					}
					if pt.LoadRSS > 0 {
						load.add(float64(pt.Partitions), statVals([]float64{float64(pt.LoadRSS) / (1 << 20)}))
					}
				}
				return linePlot(path, "Broker memory (RSS) against partitions", "partitions", "MiB", true, idle, load)
			})
		})
	}
	if len(r.sizes) > 0 {
		steps = append(steps, func() error {
			return emit("record-size.png", func(path string) error {
				s := series{name: "durable produce"}
				for _, pt := range r.sizes {
					s.add(float64(pt.X), statOf(pt.Runs, mbps))
				}
				return linePlot(path, "Throughput against record size", "record size (bytes)", "MB/s", true, s)
			})
		})
	}
	if len(r.producers) > 0 {
		steps = append(steps, func() error {
			return emit("producers.png", func(path string) error {
				s := series{name: "durable produce, 1 KiB"}
				for _, pt := range r.producers {
					s.add(float64(pt.X), statOf(pt.Runs, mbps))
				}
				return linePlot(path, "Throughput against producers", "producers", "MB/s", false, s)
			})
		})
	}
	if len(r.startup) > 0 {
		steps = append(steps, func() error {
			return emit("startup.png", func(path string) error {
				su, rec := series{name: "after clean shutdown"}, series{name: "after kill -9"}
				for _, sp := range r.startup {
					gib := float64(sp.Bytes) / (1 << 30)
					su.add(gib, statVals(sp.Startup))
					rec.add(gib, statVals(sp.Recovery))
				}
				return linePlot(path, "Time to ready against data size", "data (GiB)", "seconds", false, su, rec)
			})
		})
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return files, err
		}
	}
	return files, nil
}
