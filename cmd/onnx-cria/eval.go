package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/onnxio"
)

func runEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("eval", "[flags] MODEL DATA.npz",
		"Run MODEL through ONNX Runtime on DATA and report accuracy (classifiers: argmax of\nthe first output against the \"labels\" array) or perplexity (language models:\nnext-token loss over a 2-D int64 token id input), and throughput. Arrays are\nmatched to model inputs by name.", stderr)
	rt := rtFlags(fs)
	batch := fs.Int("batch", 64, "rows per run")
	labels := fs.String("labels", "", "name of the labels array (default \"labels\")")
	task := fs.String("task", "", "classification or lm (default: classification when labels exist)")
	output := fs.String("output", "", "model output to score (default: the first)")
	asJSON := fs.Bool("json", false, "print JSON")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
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
	if err := startRuntime(rt); err != nil {
		return err
	}
	opts := evaluate.Options{Task: *task, Labels: *labels, Output: *output, Batch: *batch, Runtime: *rt}
	p := newProgress(stderr, "eval")
	if !*quiet {
		opts.Progress = p.update
	}
	res, err := evaluate.Run(m, data, opts)
	p.done()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "%s on %s: %s, %d samples, %.1f samples/s\n", pos[0], pos[1], res, res.Samples, res.Throughput)
	return nil
}
