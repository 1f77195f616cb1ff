package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/shrink"
)

func runAblate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ablate", "MODEL --group G --fraction X --calib DATA.npz --eval DATA.npz [flags]",
		"The direct ablation of METHOD.md §7: on one group, with no recovery, remove the\nlowest-scored X of its units, then (from the original) the highest-scored X, then\nrandom X (several seeded trials), and report the metric after each against the\noriginal's.", stderr)
	rt := rtFlags(fs)
	group := fs.String("group", "", "the group (see inspect --groups); required")
	fraction := fs.Float64("fraction", 0.25, "fraction of the group's units to remove")
	calibPath := fs.String("calib", "", "calibration data for scoring (.npz)")
	evalPath := fs.String("eval", "", "evaluation data (.npz); required")
	cf := addCritFlags(fs)
	trials := fs.Int("random-trials", 5, "random removals to average")
	samples := fs.Int("samples", 1024, "calibration samples M")
	seed := fs.Int64("seed", 0, "seed")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *group == "" || *evalPath == "" {
		return usagef("--group and --eval are required")
	}
	if *fraction <= 0 || *fraction >= 1 {
		return usagef("--fraction %v: want a fraction in (0, 1)", *fraction)
	}
	crit, err := cf.criterion()
	if err != nil {
		return err
	}
	m, err := onnxio.Load(pos[0])
	if err != nil {
		return err
	}
	var calib *dataset.Set
	if *calibPath != "" {
		if calib, err = dataset.Load(*calibPath); err != nil {
			return err
		}
	}
	ev, err := dataset.Load(*evalPath)
	if err != nil {
		return err
	}
	if err := startRuntime(rt); err != nil {
		return err
	}
	res, err := shrink.Ablate(m, calib, ev, *group, *fraction, *trials, shrink.Config{Criterion: crit, Samples: *samples, Seed: *seed, Runtime: *rt})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "%s, group %s: remove %d of %d units (%s scores), no recovery\n", pos[0], res.Group, res.Removed, res.Width, res.Criterion)
	fmt.Fprintf(stdout, "  original           %s\n", res.Original)
	fmt.Fprintf(stdout, "  lowest-scored      %s\n", res.Lowest)
	fmt.Fprintf(stdout, "  highest-scored     %s\n", res.Highest)
	fmt.Fprintf(stdout, "  random (%d trials)  %s %.4f ± %.4f\n", len(res.Random), res.Original.Metric, res.RandMean, res.RandStd)
	return nil
}
