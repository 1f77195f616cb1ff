package main

import (
	"fmt"
	"io"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/shrink"
)

func runAblate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ablate", "MODEL --group G --fraction X --calib DATA.npz --eval DATA.npz [flags]",
		`The direct ablation of docs/METHOD.md: on one group, with no recovery, remove the
lowest-scored X of its units, then (from the original) the highest-scored X, then
random X (several seeded trials), and report the metric after each against the
original's.`, stderr)
	group := fs.String("group", "", "the group (see inspect --groups); required")
	fraction := fs.Float("fraction", 0.25, fraction01, "fraction of the group's units to remove")
	calibPath := fs.String("calib", "", "calibration data for scoring (.npz)")
	evalPath := fs.String("eval", "", "evaluation data (.npz); required")
	task := fs.String("task", "", "classification or lm (default: classification when the data has labels)")
	cf := addCritFlags(fs)
	trials := fs.Int("random-trials", 5, 1, "random removals to average")
	samples := fs.Int("samples", 1024, 1, "calibration samples M")
	seed := fs.Int64("seed", 0, "seed")
	c := addCommon(fs)
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *group == "" || *evalPath == "" {
		return usagef("--group and --eval are required")
	}
	crit, err := cf.criterion()
	if err != nil {
		return err
	}
	m, err := onnxio.Load(pos[0])
	if err != nil {
		return err
	}
	calib, err := loadData(*calibPath)
	if err != nil {
		return err
	}
	ev, err := dataset.Load(*evalPath)
	if err != nil {
		return err
	}
	if err := c.start(); err != nil {
		return err
	}
	u := newUI(stderr, *c.quiet)
	cfg := shrink.Config{Criterion: crit, Samples: *samples, Seed: *seed, Batch: *c.batch, Runtime: c.rt, EvalTask: *task,
		Log: u.logFunc(), Progress: u.progressFunc()}
	res, err := shrink.Ablate(m, calib, ev, *group, *fraction, *trials, cfg)
	u.end()
	if err != nil {
		return err
	}
	if *c.json {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "%s, group %s: remove %d of %d units (%s scores), no recovery\n", pos[0], res.Group, res.Removed, res.Width, res.Criterion)
	fmt.Fprintf(stdout, "  original           %s\n", res.Original)
	fmt.Fprintf(stdout, "  lowest-scored      %s\n", res.Lowest)
	fmt.Fprintf(stdout, "  highest-scored     %s\n", res.Highest)
	fmt.Fprintf(stdout, "  random (%d trials)  %s %.4f ± %.4f\n", len(res.Random), res.Original.Metric, res.RandMean, res.RandStd)
	return nil
}
