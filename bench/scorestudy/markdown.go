package main

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// predictors are the scores whose agreement with the measured damage is
// tabulated, in table order.
var predictors = []string{"spectral", "spectral-live", "magnitude", "activation", "taylor", "random", "outnorm", "flap", "wanda-out",
	"wanda-in", "spectral*flap", "spectral-std", "spectral-out", "spectral-contrib", "nbr-recon", "obs", "loo-var", "linfrac"}

// short are the column names of the per-group damage tables.
var short = []string{"spectral", "magnitude", "activation", "taylor", "random", "flap", "spectral*flap", "obs", "nbr-recon"}

// Markdown renders the tables of docs/RESEARCH.md from a study.
func Markdown(st *Study) string {
	var b strings.Builder
	for _, c := range append([]Config{st.Config}, st.Merged...) {
		fmt.Fprintf(&b, "- `%s` (%s): seed %d, %d scoring rows per fixture, the rest of the calibration file validates", c.Command, strings.Join(c.Fixtures, ", "), c.Seed, c.Samples)
		if c.LSQSamples > 0 {
			fmt.Fprintf(&b, "; the least-squares refit uses %d of the scoring rows", c.LSQSamples)
		}
		b.WriteString(".\n")
	}
	b.WriteString("\n")
	b.WriteString("## Summaries\n\n")
	summary(&b, st)
	statSummary(&b, st)
	removalSummary(&b, st)
	loopPivot(&b, st)
	b.WriteString("## Per group\n\n")
	hypothesis(&b, st)
	anatomy(&b, st)
	single(&b, st)
	bottom(&b, st)
	loops(&b, st)
	return b.String()
}

func relu(op string) bool { return op == "Relu" || op == "Clip" || op == "LeakyRelu" }

func hypothesis(b *strings.Builder, st *Study) {
	b.WriteString("### Spectral score against unit statistics (Spearman, scoring rows)\n\n")
	b.WriteString("| fixture | group | op | width | linear fraction | linear fraction, live units | mean \\|a\\| | \\|\\|W_out\\|\\| | std(a)·\\|\\|W_out\\|\\| | magnitude | taylor |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range st.Fixtures {
		for _, g := range f.Groups {
			s := g.Scores["spectral"]
			lin, live := "–", "–"
			if relu(g.Op) {
				lin = rho(s, g.Scores["linfrac"])
				var x, y []float64
				for p, sd := range g.Scores["std"] {
					if sd > 0 {
						x, y = append(x, s[p]), append(y, g.Scores["linfrac"][p])
					}
				}
				live = rho(x, y)
			}
			fmt.Fprintf(b, "| %s | `%s` | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", f.Name, g.Name, g.Op, g.Width, lin, live,
				rho(s, g.Scores["activation"]), rho(s, g.Scores["outnorm"]), rho(s, g.Scores["flap"]),
				rho(s, g.Scores["magnitude"]), rho(s, g.Scores["taylor"]))
		}
	}
	b.WriteString("\n")
}

// anatomy shows what the spectral score follows: the units' norms, their
// degrees in the two graphs, how much their neighbourhood changes, and
// where the dead units (constant output) rank.
func anatomy(b *strings.Builder, st *Study) {
	b.WriteString("### What the spectral score follows (Spearman with the spectral score, scoring rows)\n\n")
	b.WriteString("| fixture | group | \\|\\|z\\|\\| | \\|\\|a\\|\\| | std(a) | unexplained variance | degree in G_X | degree in G_Y | neighbourhood change | dead units | their mean spectral percentile |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range st.Fixtures {
		for _, g := range f.Groups {
			s := g.Scores["spectral"]
			dead, pct := deadUnits(g)
			p := "–"
			if dead > 0 {
				p = fmt.Sprintf("%.0f%%", pct)
			}
			fmt.Fprintf(b, "| %s | `%s` | %s | %s | %s | %s | %s | %s | %s | %d | %s |\n", f.Name, g.Name, rho(s, g.Scores["znorm"]), rho(s, g.Scores["anorm"]),
				rho(s, g.Scores["std"]), rho(s, g.Scores["loo-var"]), rho(s, g.Scores["degx"]), rho(s, g.Scores["degy"]), rho(s, g.Scores["nbr-change"]), dead, p)
		}
	}
	b.WriteString("\n")
}

// deadUnits counts the units whose output never varies (std 0) and their
// mean percentile in the spectral ranking (0%: scored lowest).
func deadUnits(g *GroupResult) (int, float64) {
	r := ranks(g.Scores["spectral"])
	n, sum := 0, 0.0
	for p, sd := range g.Scores["std"] {
		if sd == 0 {
			n++
			sum += (r[p] - 1) / float64(max(len(r)-1, 1)) * 100
		}
	}
	if n == 0 {
		return 0, 0
	}
	return n, sum / float64(n)
}

func single(b *strings.Builder, st *Study) {
	b.WriteString("### Which score predicts the damage of removing one unit (Spearman with the loss increase, validation rows)\n\n")
	b.WriteString("| fixture | group | units | median ΔL | max ΔL |")
	for _, s := range short {
		fmt.Fprintf(b, " %s |", s)
	}
	b.WriteString("\n|---|---|---|---|---|" + strings.Repeat("---|", len(short)) + "\n")
	for _, f := range st.Fixtures {
		for _, g := range f.Groups {
			d := lossOf(g.Single)
			fmt.Fprintf(b, "| %s | `%s` | %d | %.2g | %.2g |", f.Name, g.Name, len(g.Single), median(d), slices.Max(d))
			for _, s := range short {
				fmt.Fprintf(b, " %s |", rho(pick(g.Scores[s], g.Single), d))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
}

// summary averages, over every group of every fixture, the rank
// correlation of each score with single-unit and random-set damage.
func summary(b *strings.Builder, st *Study) {
	b.WriteString("### Summary over all groups: mean Spearman with the damage\n\n")
	b.WriteString("| score | one unit: mean ρ with ΔL | groups with ρ > 0.3 | one unit: mean ρ with KL | random sets (sum of scores): mean ρ with ΔL | groups with ρ > 0.3 |\n|---|---|---|---|---|---|\n")
	for _, s := range predictors {
		var r1, r2, rk []float64
		for _, f := range st.Fixtures {
			for _, g := range f.Groups {
				if s == "linfrac" && !relu(g.Op) {
					continue
				}
				r1 = append(r1, spearman(pick(g.Scores[s], g.Single), lossOf(g.Single)))
				rk = append(rk, spearman(pick(g.Scores[s], g.Single), klOf(g.Single)))
				r2 = append(r2, spearman(setSums(g.Scores[s], g.Sets), lossOf(g.Sets)))
			}
		}
		name := s
		if s == "linfrac" {
			name += " (ReLU groups)"
		}
		fmt.Fprintf(b, "| %s | %s | %d/%d | %s | %s | %d/%d |\n", name, fmtR(meanOK(r1)), above(r1, 0.3), len(r1), fmtR(meanOK(rk)), fmtR(meanOK(r2)), above(r2, 0.3), len(r2))
	}
	b.WriteString("\n")
}

// bottomOf returns, for one group, the loss increase of removing its
// lowest-scored frac by each score (before or after the refit) and the mean
// over the random draws; ok is false when the group has no such removal.
func bottomOf(g *GroupResult, frac float64, lsq bool) (vals map[string]float64, random float64, ok bool) {
	vals = map[string]float64{}
	var rnd []float64
	for _, x := range g.Bottom {
		if x.Frac != frac {
			continue
		}
		v := x.DLoss
		if lsq {
			v = x.DLossLSQ
		}
		if strings.HasPrefix(x.Score, "random-") {
			rnd = append(rnd, v)
		} else {
			vals[x.Score] = v
		}
	}
	return vals, meanOK(rnd), len(vals) > 0
}

// standing is, per score, the mean rank among bottomScores over the groups
// (1: least damage) and the number of groups where it beats random.
type standing struct {
	rank   map[string]float64
	wins   map[string]int
	groups int
}

func standings(st *Study, frac float64, lsq bool) standing {
	ranks := map[string][]float64{}
	out := standing{rank: map[string]float64{}, wins: map[string]int{}}
	for _, f := range st.Fixtures {
		for _, g := range f.Groups {
			vals, rnd, ok := bottomOf(g, frac, lsq)
			if !ok {
				continue
			}
			out.groups++
			for s, r := range rankOf(vals, bottomScores) {
				ranks[s] = append(ranks[s], r)
			}
			for _, s := range bottomScores {
				if vals[s] < rnd {
					out.wins[s]++
				}
			}
		}
	}
	for s, r := range ranks {
		out.rank[s] = meanOK(r)
	}
	return out
}

func whenText(lsq bool) string {
	if lsq {
		return "after the least-squares refit"
	}
	return "no recovery"
}

func bottom(b *strings.Builder, st *Study) {
	for _, frac := range st.Config.Fractions {
		for _, lsq := range []bool{false, true} {
			fmt.Fprintf(b, "### Loss increase when the lowest-scored %.0f%% of one group is removed (%s)\n\n", frac*100, whenText(lsq))
			b.WriteString("| fixture | group |")
			for _, s := range bottomScores {
				fmt.Fprintf(b, " %s |", s)
			}
			b.WriteString(" random (3 draws) |\n|---|---|" + strings.Repeat("---|", len(bottomScores)+1) + "\n")
			for _, f := range st.Fixtures {
				for _, g := range f.Groups {
					vals, rnd, ok := bottomOf(g, frac, lsq)
					if !ok {
						continue
					}
					fmt.Fprintf(b, "| %s | `%s` |", f.Name, g.Name)
					best := math.Inf(1)
					for _, s := range bottomScores {
						best = math.Min(best, vals[s])
					}
					for _, s := range bottomScores {
						cell := fmt.Sprintf("%.3g", vals[s])
						if vals[s] == best {
							cell = "**" + cell + "**"
						}
						fmt.Fprintf(b, " %s |", cell)
					}
					fmt.Fprintf(b, " %.3g |\n", rnd)
				}
			}
			sd := standings(st, frac, lsq)
			b.WriteString("| | mean rank (1 = least damage) |")
			for _, s := range bottomScores {
				fmt.Fprintf(b, " %.1f |", sd.rank[s])
			}
			b.WriteString(" |\n| | groups where it beats random |")
			for _, s := range bottomScores {
				fmt.Fprintf(b, " %d/%d |", sd.wins[s], sd.groups)
			}
			b.WriteString(" |\n\n")
		}
	}
}

// removalSummary puts the bottom rows of every removal table side by side.
func removalSummary(b *strings.Builder, st *Study) {
	b.WriteString("### Summary: removing a group's lowest-scored units at once — mean rank among the scores (1 = least damage) and groups where the score beats random\n\n| score |")
	type setting struct {
		frac float64
		lsq  bool
	}
	var ss []setting
	for _, frac := range st.Config.Fractions {
		for _, lsq := range []bool{false, true} {
			ss = append(ss, setting{frac, lsq})
			fmt.Fprintf(b, " %.0f%%, %s |", frac*100, whenText(lsq))
		}
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(ss)) + "\n")
	var sds []standing
	for _, x := range ss {
		sds = append(sds, standings(st, x.frac, x.lsq))
	}
	for _, s := range bottomScores {
		fmt.Fprintf(b, "| %s |", s)
		for _, sd := range sds {
			fmt.Fprintf(b, " %.1f · %d/%d |", sd.rank[s], sd.wins[s], sd.groups)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// statSummary condenses the per-group correlations of the spectral score
// with unit statistics: the median over groups and the range.
func statSummary(b *strings.Builder, st *Study) {
	b.WriteString("### Summary: Spearman of the spectral score with unit statistics over the groups (median, and lowest to highest)\n\n| statistic | groups | median | range |\n|---|---|---|---|\n")
	for _, c := range []struct{ label, key string }{
		{"linear fraction, live units (ReLU and clip groups where it varies)", "linfrac"},
		{"mean \\|a\\|", "activation"}, {"std(a)", "std"}, {"\\|\\|W_out\\|\\|", "outnorm"},
		{"std(a)·\\|\\|W_out\\|\\|", "flap"}, {"magnitude", "magnitude"}, {"taylor", "taylor"},
		{"degree in G_Y", "degy"}, {"neighbourhood change", "nbr-change"},
	} {
		var r []float64
		for _, f := range st.Fixtures {
			for _, g := range f.Groups {
				x, y := g.Scores["spectral"], g.Scores[c.key]
				if c.key == "linfrac" {
					if !relu(g.Op) {
						continue
					}
					x, y = live(g, x), live(g, y)
				}
				if v := spearman(x, y); !math.IsNaN(v) {
					r = append(r, v)
				}
			}
		}
		if len(r) == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s | %d | %s | %s to %s |\n", c.label, len(r), fmtR(median(r)), fmtR(slices.Min(r)), fmtR(slices.Max(r)))
	}
	b.WriteString("\n")
}

// live keeps the entries of the units whose output varies.
func live(g *GroupResult, v []float64) []float64 {
	var out []float64
	for p, sd := range g.Scores["std"] {
		if sd > 0 {
			out = append(out, v[p])
		}
	}
	return out
}

// loopPivot shows the loop runs as one row per fixture.
func loopPivot(b *strings.Builder, st *Study) {
	var names []string
	for _, f := range st.Fixtures {
		for _, l := range f.Loop {
			if !slices.Contains(names, l.Score) {
				names = append(names, l.Score)
			}
		}
	}
	if len(names) == 0 {
		return
	}
	fmt.Fprintf(b, "### Summary: the whole loop to %.0f%%, metric on the validation rows before → after the least-squares refit\n\n| fixture | original |", st.Config.Loop*100)
	for _, s := range names {
		fmt.Fprintf(b, " %s |", s)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(names)) + "\n")
	for _, f := range st.Fixtures {
		if len(f.Loop) == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s (%s) | %.4f |", f.Name, f.Loop[0].Metric, f.Loop[0].Original)
		for _, s := range names {
			cell := "–"
			for _, l := range f.Loop {
				if l.Score == s && l.Error == "" {
					cell = fmt.Sprintf("%.3f → %.3f", l.Pruned, l.LSQ)
				}
			}
			fmt.Fprintf(b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func loops(b *strings.Builder, st *Study) {
	any := false
	for _, f := range st.Fixtures {
		any = any || len(f.Loop) > 0
	}
	if !any {
		return
	}
	fmt.Fprintf(b, "### The whole loop to %.0f%% with each score (validation rows, seed %d)\n\n", st.Config.Loop*100, st.Config.Seed)
	b.WriteString("| fixture | metric | original | score | reduction | pruned | after lsq |\n|---|---|---|---|---|---|---|\n")
	for _, f := range st.Fixtures {
		for _, l := range f.Loop {
			if l.Error != "" {
				fmt.Fprintf(b, "| %s | | | %s | failed: %s | | |\n", f.Name, l.Score, l.Error)
				continue
			}
			fmt.Fprintf(b, "| %s | %s | %.4f | %s | %.3f | %.4f | %.4f |\n", f.Name, l.Metric, l.Original, l.Score, l.Reduction, l.Pruned, l.LSQ)
		}
	}
	b.WriteString("\n")
}

// rankOf ranks the values of cols ascending (1 = smallest), ties averaged.
func rankOf(vals map[string]float64, cols []string) map[string]float64 {
	v := make([]float64, len(cols))
	for k, s := range cols {
		v[k] = vals[s]
	}
	r := ranks(v)
	out := map[string]float64{}
	for k, s := range cols {
		out[s] = r[k]
	}
	return out
}

func lossOf(d []Damage) []float64 {
	out := make([]float64, len(d))
	for k, x := range d {
		out[k] = x.DLoss
	}
	return out
}

func klOf(d []Damage) []float64 {
	out := make([]float64, len(d))
	for k, x := range d {
		out[k] = x.KL
	}
	return out
}

// pick returns the scores of the units removed one at a time.
func pick(s []float64, d []Damage) []float64 {
	if s == nil {
		return nil
	}
	out := make([]float64, len(d))
	for k, x := range d {
		out[k] = s[x.Units[0]]
	}
	return out
}

func setSums(s []float64, d []Damage) []float64 {
	if s == nil {
		return nil
	}
	out := make([]float64, len(d))
	for k, x := range d {
		for _, u := range x.Units {
			out[k] += s[u]
		}
	}
	return out
}

func rho(x, y []float64) string { return fmtR(spearman(x, y)) }

func fmtR(r float64) string {
	if math.IsNaN(r) {
		return "–"
	}
	return fmt.Sprintf("%+.2f", r)
}

// spearman is the rank correlation with ties given their mean rank; NaN
// when either side is constant or missing.
func spearman(x, y []float64) float64 {
	if len(x) != len(y) || len(x) < 3 {
		return math.NaN()
	}
	rx, ry := ranks(x), ranks(y)
	n := float64(len(x))
	var mx, my float64
	for k := range rx {
		mx += rx[k]
		my += ry[k]
	}
	mx /= n
	my /= n
	var sxy, sxx, syy float64
	for k := range rx {
		sxy += (rx[k] - mx) * (ry[k] - my)
		sxx += (rx[k] - mx) * (rx[k] - mx)
		syy += (ry[k] - my) * (ry[k] - my)
	}
	if sxx == 0 || syy == 0 {
		return math.NaN()
	}
	return sxy / math.Sqrt(sxx*syy)
}

func ranks(v []float64) []float64 {
	idx := make([]int, len(v))
	for k := range idx {
		idx[k] = k
	}
	sort.SliceStable(idx, func(a, b int) bool { return v[idx[a]] < v[idx[b]] })
	r := make([]float64, len(v))
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && v[idx[j+1]] == v[idx[i]] {
			j++
		}
		for k := i; k <= j; k++ {
			r[idx[k]] = float64(i+j)/2 + 1
		}
		i = j + 1
	}
	return r
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// meanOK is the mean of the values that are not NaN.
func meanOK(v []float64) float64 {
	var s float64
	n := 0
	for _, x := range v {
		if !math.IsNaN(x) {
			s += x
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return s / float64(n)
}

func above(v []float64, t float64) int {
	n := 0
	for _, x := range v {
		if x > t {
			n++
		}
	}
	return n
}
