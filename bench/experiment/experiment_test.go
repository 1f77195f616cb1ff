package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The quick mode must keep working: it is how CI keeps the experiment from
// rotting. It runs the whole pipeline on the MLP fixture and checks that
// RESULTS.md carries the numbers of results.json.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the quick experiment takes a minute or two")
	}
	out := t.TempDir()
	if err := run([]string{"--quick", "--root", "../..", "--out", out}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "results", "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != len(res.Config.Criteria) || len(res.Originals) != 1 || len(res.Ablations) != 1 {
		t.Fatalf("quick run: %d records, %d originals, %d ablations", len(res.Records), len(res.Originals), len(res.Ablations))
	}
	md, err := os.ReadFile(filepath.Join(out, "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Records {
		if r.Error != "" {
			t.Errorf("%s: %s", r.Criterion, r.Error)
		}
		if r.Reduction < 0.5 {
			t.Errorf("%s: reduction %.4f below the 0.5 target", r.Criterion, r.Reduction)
		}
	}
	if !strings.Contains(string(md), res.Originals[0].Metric.Metric) || !strings.Contains(string(md), "--quick") {
		t.Errorf("RESULTS.md does not describe the run:\n%s", md)
	}
	for _, p := range []string{"mlp_metric.png", "mlp_latency.png"} {
		if st, err := os.Stat(filepath.Join(out, "results", p)); err != nil || st.Size() == 0 {
			t.Errorf("plot %s missing", p)
		}
	}
}

// docs/RESULTS.md must be exactly what the committed results.json renders
// to, so that every published number traces back to the run's JSON, and
// each fixture's section must show its own plots only.
func TestPublishedResults(t *testing.T) {
	b, err := os.ReadFile("../../docs/results/results.json")
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	var plots []string
	for _, o := range res.Originals {
		plots = append(plots, o.Fixture+"_metric.png", o.Fixture+"_latency.png")
	}
	md := Markdown(&res, plots)
	want, err := os.ReadFile("../../docs/RESULTS.md")
	if err != nil {
		t.Fatal(err)
	}
	if md != string(want) {
		t.Errorf("docs/RESULTS.md differs from what docs/results/results.json renders to; run go run ./bench/experiment --render docs/results/results.json --out docs")
	}
	for _, sec := range strings.Split(md, "\n## ")[1:] {
		name := strings.Fields(sec)[0]
		for _, line := range strings.Split(sec, "\n") {
			if strings.HasPrefix(line, "![") && !strings.HasPrefix(line, "!["+name+"_") {
				t.Errorf("section %s shows %s", name, line)
			}
		}
	}
}

// Merge keeps the earlier run's records except those the later run redid,
// adds the later criteria to the table columns and says what was added.
func TestMerge(t *testing.T) {
	earlier := &Results{Config: Config{Criteria: []string{"spectral", "random"}},
		Records: []Record{{Fixture: "mlp", Target: 0.5, Criterion: "spectral", Seed: 0, Pruned: 0.1}, {Fixture: "mlp", Target: 0.5, Criterion: "random", Seed: 0, Pruned: 0.2}}}
	later := &Results{Config: Config{Criteria: []string{"taylor", "random"}, Fixtures: []string{"mlp"}, Command: "go run ./bench/experiment --criteria taylor,random"},
		Records: []Record{{Fixture: "mlp", Target: 0.5, Criterion: "taylor", Seed: 0, Pruned: 0.3}, {Fixture: "mlp", Target: 0.5, Criterion: "random", Seed: 0, Pruned: 0.4}}, Seconds: 60}
	earlier.Merge(later)
	got := map[string]float64{}
	for _, r := range earlier.Records {
		got[r.Criterion] = r.Pruned
	}
	if len(earlier.Records) != 3 || got["spectral"] != 0.1 || got["random"] != 0.4 || got["taylor"] != 0.3 {
		t.Errorf("records after merge: %+v", earlier.Records)
	}
	if !slices.Equal(earlier.Config.Criteria, []string{"spectral", "random", "taylor"}) {
		t.Errorf("criteria %v", earlier.Config.Criteria)
	}
	if len(earlier.Added) != 1 || !strings.Contains(Markdown(earlier, nil), "Added later: criteria [taylor random] on [mlp] by `go run ./bench/experiment --criteria taylor,random`") {
		t.Errorf("the merge is not reported: %+v", earlier.Added)
	}
}

// The default-criterion rule reads the validation metric only, counts 50%
// wins over every baseline before recovery, checks random after the refit,
// and ranks lower perplexity as better.
func TestChoose(t *testing.T) {
	res := &Results{Config: Config{Criteria: []string{"spectral", "magnitude", "random", "taylor"}}}
	add := func(f, metric string, c string, validBefore, validAfter, evalBefore float64) {
		res.Records = append(res.Records, Record{Fixture: f, Metric: metric, Target: 0.5, Criterion: c, Rounding: "1",
			ValidPruned: validBefore, ValidRecovered: validAfter, Pruned: evalBefore})
	}
	for _, f := range []string{"a", "b", "c"} {
		res.Originals = append(res.Originals, Original{Fixture: f})
		// spectral wins before recovery on validation; the evaluation
		// column says the opposite and must not count.
		add(f, "accuracy", "spectral", 0.9, 0.8, 0.1)
		add(f, "accuracy", "magnitude", 0.8, 0.9, 0.9)
		add(f, "accuracy", "random", 0.7, 0.85, 0.9)
		add(f, "accuracy", "taylor", 0.95, 0.95, 0.9)
	}
	res.Originals = append(res.Originals, Original{Fixture: "lm"})
	add("lm", "perplexity", "spectral", 5, 4, 9)
	add("lm", "perplexity", "magnitude", 6, 3.5, 1)
	add("lm", "perplexity", "random", 7, 3.9, 1)
	add("lm", "perplexity", "taylor", 6.5, 3, 1)
	ch, ok := choose(res)
	if !ok {
		t.Fatal("no choice")
	}
	// taylor is a baseline too and beats spectral on a, b and c: only lm
	// is a win.
	if ch.Variant != "spectral" || ch.Wins != 1 || ch.Fixtures != 4 || ch.Adopted {
		t.Errorf("variant %q wins %d of %d adopted %v", ch.Variant, ch.Wins, ch.Fixtures, ch.Adopted)
	}
	// spectral after the refit is below random on a, b, c and above it
	// (worse perplexity) on lm.
	if len(ch.LosesRandom) != 4 {
		t.Errorf("loses to random at %v", ch.LosesRandom)
	}
	// taylor needs labels: the default is magnitude, rank 1 on every cell.
	if ch.Default != "magnitude" || ch.MeanRank["magnitude"] != 1 || ch.Cells != 4 {
		t.Errorf("default %q ranks %v over %d cells", ch.Default, ch.MeanRank, ch.Cells)
	}
	if _, ok := ch.MeanRank["taylor"]; ok {
		t.Error("taylor ranked for the default")
	}
}
