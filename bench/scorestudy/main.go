// Command scorestudy asks why the spectral criterion loses to magnitude,
// Taylor and random pruning on the fixture zoo (issue 17). For every
// observed prunable group of every fixture it computes, on a calibration
// subset, the spectral score, the shrink package's baselines and unit
// statistics (activation level, how often the unit is in the linear part of
// its nonlinearity, outgoing weight norm), plus a few prototype variants;
// then, on the rest of the calibration data, the damage (increase of the
// loss) of removing units one at a time, in random sets, and the
// lowest-scored fractions by each score, before and after the
// least-squares refit. It writes every number as JSON and the tables of
// docs/RESEARCH.md as Markdown.
//
//	go run ./bench/scorestudy --out /tmp/scorestudy            # all fixtures
//	go run ./bench/scorestudy --fixtures mlp --out /tmp/s-mlp  # one
//
// Nothing is chosen on the evaluation sets: each fixture's calibration file
// is split, by a seeded choice, into a scoring part (--samples rows, what
// the criteria see) and a validation part (the rest, where damage is
// measured).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/onnx-cria/onnx-cria/ort"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "scorestudy:", err)
		os.Exit(1)
	}
}

// Config is one study's settings; it is recorded in the output.
type Config struct {
	Fixtures   []string  `json:"fixtures"`
	Samples    int       `json:"samples"`     // scoring rows; the rest of the calibration file validates
	Seed       int64     `json:"seed"`        // the split and every random choice
	Single     int       `json:"single"`      // at most this many single-unit removals per group
	Sets       int       `json:"sets"`        // random sets per group
	SetFrac    float64   `json:"set_frac"`    // size of a random set, as a fraction of the width
	Fractions  []float64 `json:"fractions"`   // lowest-scored fractions removed
	MinWidth   int       `json:"min_width"`   // narrower groups are left out
	LSQSamples int       `json:"lsq_samples"` // scoring rows the least-squares refit uses (0: all)
	Loop       float64   `json:"loop"`        // if > 0, run the shrink loop to this target per score
	LoopCrit   []string  `json:"loop_crit"`   // scores run in the loop
	Threads    int       `json:"threads"`     // ORT intra-op threads
	Command    string    `json:"command"`     // how this run was started
	Started    time.Time `json:"started_at"`  // when
	Root       string    `json:"-"`
	Out        string    `json:"-"`
}

func run(args []string) error {
	fs := flag.NewFlagSet("scorestudy", flag.ContinueOnError)
	fixtures := fs.String("fixtures", "mlp,cnn,dwcnn,transformer,llama", "fixtures (directories under testdata/models)")
	samples := fs.Int("samples", 768, "calibration rows the scores see; the rest validate")
	seed := fs.Int64("seed", 0, "seed of the split and of every random choice")
	single := fs.Int("single", 128, "at most this many single-unit removals per group (a seeded sample)")
	sets := fs.Int("sets", 48, "random unit sets removed per group")
	setFrac := fs.Float64("set-frac", 0.1, "size of each random set as a fraction of the group's width")
	fracs := fs.String("fractions", "0.25,0.5", "lowest-scored fractions of a group removed at once")
	minWidth := fs.Int("min-width", 8, "leave out groups narrower than this (attention heads: too few units to rank)")
	loop := fs.Float64("loop", 0, "if > 0, also run the whole shrink loop to this reduction with each --loop-crit score")
	loopCrit := fs.String("loop-crit", "spectral,spectral-live,magnitude,activation,random,taylor,flap,spectral*flap,obs,nbr-recon", "scores run in the loop")
	lsqSamples := fs.Int("lsq-samples", 0, "scoring rows the least-squares refit uses, a seeded subset (0: all; fewer make the LM's refits affordable)")
	threads := fs.Int("threads", 1, "ORT intra-op threads")
	root := fs.String("root", ".", "repository root (where testdata/ is)")
	out := fs.String("out", "", "directory for study.json and tables.md (required)")
	render := fs.String("render", "", "only write tables.md to --out from these study.json files (comma-separated; their fixtures are concatenated)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("--out is required")
	}
	if *render != "" {
		st, err := readStudies(split(*render))
		if err != nil {
			return err
		}
		return writeAtomic(filepath.Join(*out, "tables.md"), []byte(Markdown(st)))
	}
	cfg := Config{Fixtures: split(*fixtures), Samples: *samples, Seed: *seed, Single: *single, Sets: *sets,
		SetFrac: *setFrac, MinWidth: *minWidth, LSQSamples: *lsqSamples, Loop: *loop, LoopCrit: split(*loopCrit), Threads: *threads,
		Command: "go run ./bench/scorestudy " + strings.Join(anonymous(args), " "), Started: time.Now().UTC(), Root: *root, Out: *out}
	for _, f := range split(*fracs) {
		var v float64
		if _, err := fmt.Sscan(f, &v); err != nil || v <= 0 || v >= 1 {
			return fmt.Errorf("--fractions: %q is not a fraction in (0, 1)", f)
		}
		cfg.Fractions = append(cfg.Fractions, v)
	}
	if err := ort.Init(ort.Config{Threads: cfg.Threads}); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}
	st := &Study{Config: cfg}
	for _, name := range cfg.Fixtures {
		t0 := time.Now()
		fr, err := studyFixture(name, &cfg, os.Stderr)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fr.Seconds = time.Since(t0).Seconds()
		st.Fixtures = append(st.Fixtures, fr)
		// Written after every fixture, so that a long run leaves what it did.
		if err := st.write(cfg.Out); err != nil {
			return err
		}
	}
	return nil
}

func (st *Study) write(dir string) error {
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, "study.json"), b); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "tables.md"), []byte(Markdown(st)))
}

func readStudy(path string) (*Study, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st Study
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	// A run stopped early holds fewer fixtures than it was asked for: the
	// tables name those it holds.
	st.Config.Fixtures = nil
	for _, f := range st.Fixtures {
		st.Config.Fixtures = append(st.Config.Fixtures, f.Name)
	}
	return &st, nil
}

// readStudies reads several runs' study.json files as one study: the
// fixtures of all, the first run's settings, the others' in Merged. Runs
// must agree on the fractions and the loop target, which the tables share.
func readStudies(paths []string) (*Study, error) {
	var st *Study
	for _, p := range paths {
		s, err := readStudy(p)
		if err != nil {
			return nil, err
		}
		if st == nil {
			st = s
			continue
		}
		if !slices.Equal(s.Config.Fractions, st.Config.Fractions) || s.Config.Loop != st.Config.Loop {
			return nil, fmt.Errorf("%s: fractions %v and loop %v differ from the first run's %v and %v", p, s.Config.Fractions, s.Config.Loop, st.Config.Fractions, st.Config.Loop)
		}
		st.Merged = append(st.Merged, s.Config)
		st.Fixtures = append(st.Fixtures, s.Fixtures...)
	}
	if st == nil {
		return nil, fmt.Errorf("no study to render")
	}
	return st, nil
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// anonymous replaces the output directory in args by DIR, so that the
// recorded command names no directory of the machine that ran it.
func anonymous(args []string) []string {
	out := append([]string(nil), args...)
	for k, a := range out {
		switch {
		case (a == "--out" || a == "-out") && k+1 < len(out):
			out[k+1] = "DIR"
		case strings.HasPrefix(a, "--out="), strings.HasPrefix(a, "-out="):
			out[k] = a[:strings.Index(a, "=")+1] + "DIR"
		}
	}
	return out
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
