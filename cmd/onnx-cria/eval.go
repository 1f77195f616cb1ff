package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/onnxio"
)

func runEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("eval", "[flags] MODEL DATA.npz",
		`Run MODEL through ONNX Runtime on DATA and report accuracy (classifiers: argmax of
the first output against the "labels" array) or perplexity (language models:
next-token loss over a 2-D int64 token id input), and throughput. Arrays are
matched to model inputs by name.`, stderr)
	labels := fs.String("labels", "", "name of the labels array (default \"labels\")")
	task := fs.String("task", "", "classification or lm (default: classification when the data has labels)")
	output := fs.String("output", "", "model output to score (default: the first)")
	c := addCommon(fs)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	m, err := onnxio.Load(pos[0])
	if err != nil {
		return err
	}
	data, err := dataset.Load(pos[1])
	if err != nil {
		return err
	}
	if err := c.start(); err != nil {
		return err
	}
	u := newUI(stderr, *c.quiet)
	opts := evaluate.Options{Task: *task, Labels: *labels, Output: *output, Batch: *c.batch, Runtime: c.rt}
	if !*c.quiet {
		opts.Progress = func(done, total int) { u.progress("eval", done, total) }
	}
	res, err := evaluate.Run(m, data, opts)
	u.end()
	var nl *evaluate.NoLabelsError
	if errors.As(err, &nl) {
		return fmt.Errorf("%w: name the array \"labels\", pass --labels NAME, or --task lm for a language model", err)
	}
	if err != nil {
		return err
	}
	if *c.json {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "%s on %s: %s, %d samples, %.1f samples/s\n", pos[0], pos[1], res, res.Samples, res.Throughput)
	return nil
}
