package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/shrink"
	"github.com/onnx-cria/onnx-cria/spectral"
)

type scoreJSON struct {
	Model     string            `json:"model"`
	Criterion string            `json:"criterion"`
	Samples   int               `json:"samples"`
	Seed      int64             `json:"seed"`
	Options   any               `json:"criterion_options,omitempty"`
	Groups    []groupScoresJSON `json:"groups"`
}

type groupScoresJSON struct {
	Name        string    `json:"name"`
	Kind        string    `json:"kind"`
	Width       int       `json:"width"`
	Pre         string    `json:"pre_activation,omitempty"`
	Post        string    `json:"post_activation,omitempty"`
	Scores      []float64 `json:"scores"`
	Eigenvalues []float64 `json:"eigenvalues,omitempty"`
	Cluster     any       `json:"eigenvalue_cluster,omitempty"`
	GraphX      any       `json:"graph_x,omitempty"`
	GraphY      any       `json:"graph_y,omitempty"`
	Solver      any       `json:"solver,omitempty"`
}

// criterionFlags adds the criterion flags shared by score, ablate and shrink.
type critFlags struct {
	name *string
	k, s *int
}

func addCritFlags(fs *flagSet) critFlags {
	return critFlags{
		name: fs.String("criterion", shrink.DefaultCriterion, "unit score: obs (what the least-squares refit cannot recover when the unit goes; the default, docs/RESULTS.md says why), or the output-aware wanda, flap, spectral-flap; spectral (the paper's score); the local baselines magnitude, magnitude-l1, activation, random, taylor (gradients; needs labels or a language model) (docs/METHOD.md §6)"),
		k:    fs.Int("k", spectral.DefaultK, 1, "spectral: neighbours in the kNN graphs (capped at a group's width - 1)"),
		s:    fs.Int("s", 2, 1, "spectral: number of generalized eigenpairs (at most 64)"),
	}
}

func (c critFlags) criterion() (shrink.Criterion, error) {
	crit, err := shrink.NewCriterion(*c.name)
	if err != nil {
		return nil, usagef("--criterion: %v", err)
	}
	if *c.s > 64 {
		return nil, usagef("--s %d: want at most 64 eigenpairs (2 is the default; more than 16 rarely changes the ranking)", *c.s)
	}
	if _, ok := crit.(*shrink.Spectral); ok {
		o := shrink.DefaultSpectralOptions()
		o.K, o.S = *c.k, *c.s
		crit = shrink.NewSpectral(o)
	}
	return crit, nil
}

func runScore(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("score", "MODEL --calib DATA.npz [flags]",
		`Score every unit of the model's prunable groups on the calibration data: per group
the score of each unit (higher: more important), and for spectral the top
generalized eigenvalues and the graph statistics (k used, edges, connectivity).
The text summary goes to stdout; --report writes every score as JSON or CSV.`, stderr)
	calibPath := fs.String("calib", "", "calibration data (.npz)")
	cf := addCritFlags(fs)
	var groups multiFlag
	fs.Var(&groups, "group", "only groups whose name matches this glob (repeatable)")
	samples := fs.Int("samples", 1024, 1, "calibration samples M (seeded subset)")
	seed := fs.Int64("seed", 0, "seed")
	out := fs.String("report", "", "write all scores to this .json or .csv file")
	c := addCommon(fs)
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	crit, err := cf.criterion()
	if err != nil {
		return err
	}
	if ext := strings.ToLower(filepath.Ext(*out)); *out != "" && ext != ".json" && ext != ".csv" {
		return usagef("--report %s: want a .json or .csv file", *out)
	}
	m, err := onnxio.Load(pos[0])
	if err != nil {
		return err
	}
	var files runFiles
	if err := files.readModel("model", m); err != nil {
		return err
	}
	files.read("calibration data", *calibPath)
	files.write("scores file", *out)
	if err := files.check(); err != nil {
		return err
	}
	calib, err := loadData(*calibPath)
	if err != nil {
		return err
	}
	if calib == nil && crit.NeedsStates() {
		return errors.New(noCalibHelp)
	}
	if err := c.start(); err != nil {
		return err
	}
	u := newUI(stderr, *c.quiet)
	cfg := shrink.Config{Criterion: crit, Samples: *samples, Seed: *seed, Batch: *c.batch, Runtime: c.rt, Progress: u.progressFunc()}
	_, scored, err := shrink.Score(m, calib, cfg)
	u.end()
	if err != nil {
		return shrinkError(err, pos[0])
	}
	res := scoreJSON{Model: pos[0], Criterion: crit.Name(), Seed: *seed}
	if calib != nil {
		n, _ := calib.N()
		res.Samples = min(n, *samples)
	}
	if d, ok := crit.(interface{ Options() any }); ok {
		res.Options = d.Options()
	}
	var names []string
	for _, gs := range scored {
		g := gs.Group
		names = append(names, g.Name)
		if len(groups) > 0 && !matchAny(groups, g.Name) {
			continue
		}
		j := groupScoresJSON{Name: g.Name, Kind: g.Kind, Width: g.Width, Scores: gs.Scored.Scores}
		if g.Observe != nil {
			j.Pre, j.Post = g.Observe.Pre, g.Observe.Post
		}
		if d := gs.Scored.Detail; d != nil {
			if ev, ok := d["eigenvalues"].([]float64); ok {
				j.Eigenvalues = ev
			}
			j.GraphX, j.GraphY, j.Solver, j.Cluster = d["graph_x"], d["graph_y"], d["solver"], d["cluster"]
		}
		res.Groups = append(res.Groups, j)
	}
	if len(groups) > 0 && len(res.Groups) == 0 {
		return fmt.Errorf("no scored group matches --group %s; the groups are: %s", strings.Join(groups, ", "), strings.Join(names, ", "))
	}
	if *out != "" {
		if err := writeScores(*out, &res); err != nil {
			return err
		}
	}
	if *c.json {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "%s: criterion %s, %d samples, seed %d\n", res.Model, res.Criterion, res.Samples, res.Seed)
	fmt.Fprintf(stdout, "%-34s %-10s %6s  %-28s %s\n", "group", "kind", "width", "scores min/median/max", "eigenvalues / graphs")
	for _, g := range res.Groups {
		lo, med, hi := summary(g.Scores)
		extra := ""
		if len(g.Eigenvalues) > 0 {
			extra = fmt.Sprintf("zeta %s  X %s  Y %s", floats(g.Eigenvalues), graphText(g.GraphX), graphText(g.GraphY))
			if c, ok := g.Cluster.(map[string]any); ok {
				extra += fmt.Sprintf("  cluster of %v equal to %.4g", c["pairs"], c["value"])
			}
		}
		fmt.Fprintf(stdout, "%-34s %-10s %6d  %8.4f %8.4f %8.4f   %s\n", g.Name, g.Kind, g.Width, lo, med, hi, extra)
	}
	return nil
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
	}
	return false
}

func summary(v []float64) (lo, med, hi float64) {
	if len(v) == 0 {
		return
	}
	s := append([]float64(nil), v...)
	slices.Sort(s)
	return s[0], s[len(s)/2], s[len(s)-1]
}

func floats(v []float64) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, strconv.FormatFloat(x, 'g', 4, 64))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func graphText(g any) string {
	if st, ok := g.(spectral.GraphStats); ok {
		c := "connected"
		if !st.Connected {
			c = fmt.Sprintf("%d components", st.Components)
		}
		return fmt.Sprintf("k=%d %d edges %s", st.K, st.Edges, c)
	}
	return fmt.Sprint(g)
}

func writeScores(path string, res *scoreJSON) error {
	var b strings.Builder
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	case ".csv":
		w := csv.NewWriter(&b)
		w.Write([]string{"group", "kind", "unit", "score"})
		for _, g := range res.Groups {
			for u, s := range g.Scores {
				w.Write([]string{g.Name, g.Kind, strconv.Itoa(u), strconv.FormatFloat(s, 'g', -1, 64)})
			}
		}
		w.Flush()
		if err := w.Error(); err != nil {
			return err
		}
	default:
		return usagef("--report %s: want a .json or .csv file", path)
	}
	return onnxio.WriteFileAtomic(path, []byte(b.String()))
}
