// Command experiment reproduces the paper's experiment shape on the fixture
// zoo: for every fixture, target reduction, criterion and seed it shrinks the
// model, measures the metric before and after the same recovery budget and
// the ORT latency, runs the ablation of docs/METHOD.md §7, times every stage, and
// writes the raw records as JSON and docs/RESULTS.md with tables and plots.
//
//	go run ./bench/experiment            # the full run (about two hours on 2 cores)
//	go run ./bench/experiment --quick    # minutes; what CI runs
//
// Every number in RESULTS.md is computed from the JSON written beside it.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/onnx-cria/onnx-cria/bench/internal/fixture"
	"github.com/onnx-cria/onnx-cria/ort"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "experiment:", err)
		os.Exit(1)
	}
}

// Config is one experiment's settings; it is recorded in the output.
type Config struct {
	Quick    bool      `json:"quick"`
	Fixtures []string  `json:"fixtures"`
	Targets  []float64 `json:"targets"`
	Criteria []string  `json:"criteria"`
	// Roundings are the width roundings each criterion runs with: "1"
	// (exact widths, the paper's budget) and/or "auto" (the command
	// line's default). LatencyAll times every run, not only the first seed.
	Roundings  []string `json:"roundings,omitempty"`
	LatencyAll bool     `json:"latency_all,omitempty"`
	Seeds      []int64  `json:"seeds"`
	Samples    int      `json:"samples"`
	Recovery   string   `json:"recovery"`
	Threads    int      `json:"threads"`
	Ablation   float64  `json:"ablation_fraction"`
	Trials     int      `json:"ablation_random_trials"`
	// NoAblation skips the ablation (a run merged into earlier results).
	NoAblation bool `json:"-"`
	// AblationCriteria are the criteria the ablation runs for.
	AblationCriteria []string  `json:"ablation_criteria,omitempty"`
	Root             string    `json:"-"`
	OutDir           string    `json:"-"`
	Markdown         string    `json:"-"`
	Command          string    `json:"command"`
	StartedAt        time.Time `json:"started_at"`
}

func run(args []string) error {
	fs := flag.NewFlagSet("experiment", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "a few minutes: one fixture, one target, one seed, few samples")
	fixtures := fs.String("fixtures", "mlp,cnn,dwcnn,transformer,llama", "fixtures (directories under testdata/models)")
	targets := fs.String("targets", "0.3,0.5,0.7", "effective parameter reductions")
	criteria := fs.String("criteria", "spectral,spectral-flap,magnitude,activation,random,taylor,wanda,flap,obs", "criteria (taylor needs labels or a language model)")
	seeds := fs.Int("seeds", 3, "seeds per setting")
	roundings := fs.String("roundings", "1", "width roundings: 1 (exact widths) and/or auto (the command line's default)")
	latencyAll := fs.Bool("latency-all", false, "time every run against the original, not only the first seed's")
	samples := fs.Int("samples", 1024, "calibration samples M")
	recovery := fs.String("recovery", "lsq", "recovery after pruning: none or lsq")
	threads := fs.Int("threads", 0, "ORT intra-op threads (0: ORT's default)")
	ablation := fs.Float64("ablation", 0.5, "fraction of one group removed in the ablation")
	trials := fs.Int("trials", 5, "random trials in the ablation")
	ablationCrits := fs.String("ablation-criteria", "spectral", "criteria whose scores the ablation removes by (with --merge, only when given)")
	root := fs.String("root", "", "repository root, where testdata/ is (default: the nearest directory above the working directory that has testdata/models)")
	out := fs.String("out", "", "directory for RESULTS.md, results/results.json and the plots (default: docs/ under the root)")
	render := fs.String("render", "", "only redraw RESULTS.md and the plots in --out from this results.json")
	finding := fs.String("finding", "", "a Markdown file whose text is the finding at the top of RESULTS.md (kept in results.json)")
	merge := fs.String("merge", "", "add this run's records to this results.json (for criteria run later); skips the ablation")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *root == "" {
		r, err := fixture.FindRoot()
		if err != nil {
			return err
		}
		*root = r
	}
	if *out == "" {
		*out = filepath.Join(*root, "docs")
	}
	if *render != "" {
		res, err := readResults(*render)
		if err != nil {
			return err
		}
		cfg := res.Config
		cfg.OutDir = *out
		if err := readFinding(*finding, res); err != nil {
			return err
		}
		return Write(res, cfg)
	}
	cfg := Config{
		Quick: *quick, Fixtures: split(*fixtures), Criteria: split(*criteria), Samples: *samples, Roundings: split(*roundings), LatencyAll: *latencyAll,
		Recovery: *recovery, Threads: *threads, Ablation: *ablation, Trials: *trials,
		Root: *root, OutDir: *out, AblationCriteria: split(*ablationCrits), Command: "cd bench && go run ./experiment " + strings.Join(args, " "), StartedAt: time.Now().UTC(),
	}
	for _, t := range split(*targets) {
		var v float64
		if _, err := fmt.Sscan(t, &v); err != nil {
			return fmt.Errorf("target %q: %v", t, err)
		}
		cfg.Targets = append(cfg.Targets, v)
	}
	for s := 0; s < *seeds; s++ {
		cfg.Seeds = append(cfg.Seeds, int64(s))
	}
	if cfg.Quick {
		cfg.Fixtures, cfg.Targets, cfg.Seeds, cfg.Samples, cfg.Trials = []string{"mlp"}, []float64{0.5}, []int64{0}, 128, 2
	}
	if err := ort.Init(ort.Config{}); err != nil {
		return err
	}
	var earlier *Results
	if *merge != "" {
		var err error
		if earlier, err = readResults(*merge); err != nil {
			return err
		}
		cfg.NoAblation = true
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "ablation-criteria" {
				cfg.NoAblation = false
			}
		})
	}
	res, err := Experiment(cfg, os.Stderr)
	if err != nil {
		return err
	}
	if earlier != nil {
		earlier.Merge(res)
		res = earlier
		cfg = res.Config
		cfg.OutDir = *out
	}
	if err := readFinding(*finding, res); err != nil {
		return err
	}
	return Write(res, cfg)
}

// readFinding puts the text of path, when given, into res.Finding.
func readFinding(path string, res *Results) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	res.Finding = string(b)
	return nil
}

func readResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &res, nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
