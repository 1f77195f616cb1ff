// Package evaluate measures a model on a dataset through ONNX Runtime:
// accuracy for classifiers (argmax of the first output against a labels
// array), perplexity for language models (next-token loss over token ids),
// and throughput. It is used by the eval command, by shrink for the metric
// before and after, and by recovery passes.
package evaluate

import (
	"fmt"
	"math"
	"time"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// Task names what is measured.
const (
	Classification = "classification"
	LanguageModel  = "lm"
)

// Options control an evaluation.
type Options struct {
	Task    string // "" chooses: labels present means classification, else lm
	Labels  string // labels array name; "" means "labels" if present
	Output  string // output to score; "" means the first
	Batch   int    // rows per run; default 64
	Runtime ort.Config
	// Progress, if set, is called after each batch.
	Progress func(done, total int)
}

// Result is what an evaluation measured.
type Result struct {
	Task       string  `json:"task"`
	Metric     string  `json:"metric"` // accuracy or perplexity
	Value      float64 `json:"value"`
	Correct    int     `json:"correct,omitempty"`
	Total      int     `json:"total,omitempty"`
	NLLSum     float64 `json:"nll_sum,omitempty"`
	Tokens     int64   `json:"tokens,omitempty"`
	Samples    int     `json:"samples"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"samples_per_second"`
}

func (r *Result) String() string {
	if r.Metric == "accuracy" {
		return fmt.Sprintf("accuracy %.4f (%d/%d)", r.Value, r.Correct, r.Total)
	}
	return fmt.Sprintf("perplexity %.4f (%d tokens)", r.Value, r.Tokens)
}

// Run evaluates m on data.
func Run(m *onnxio.Model, data *dataset.Set, opts Options) (*Result, error) {
	s, err := ort.NewSessionForModel(m, nil, opts.Runtime)
	if err != nil {
		return nil, err
	}
	defer s.Destroy()
	return RunSession(s, data, opts)
}

// RunSession evaluates with an existing session.
func RunSession(s *ort.Session, data *dataset.Set, opts Options) (*Result, error) {
	if opts.Batch <= 0 {
		opts.Batch = 64
	}
	b, err := s.Bind(data, opts.Labels)
	if err != nil {
		return nil, err
	}
	task := opts.Task
	if task == "" {
		if b.Labels != nil {
			task = Classification
		} else {
			task = LanguageModel
		}
	}
	outIdx := 0
	if opts.Output != "" {
		outIdx = -1
		for k, o := range s.Outputs() {
			if o.Name == opts.Output {
				outIdx = k
			}
		}
		if outIdx < 0 {
			return nil, fmt.Errorf("model has no output %q", opts.Output)
		}
	}
	res := &Result{Task: task}
	var ids, mask *dataset.Array
	switch task {
	case Classification:
		if b.Labels == nil {
			return nil, &NoLabelsError{Path: data.Path, Name: labelsName(opts.Labels)}
		}
		res.Metric = "accuracy"
	case LanguageModel:
		res.Metric = "perplexity"
		for k, spec := range b.Specs {
			switch {
			case spec.DType == dataset.Int64 && len(spec.Shape) == 2 && ids == nil && spec.Name != "attention_mask":
				ids = b.Inputs[k]
			case spec.Name == "attention_mask":
				mask = b.Inputs[k]
			}
		}
		if ids == nil {
			return nil, fmt.Errorf("%s: a language model needs a 2-D int64 token id input", data.Path)
		}
	default:
		return nil, fmt.Errorf("unknown task %q (want %s or %s)", task, Classification, LanguageModel)
	}
	if b.N == 0 {
		return nil, fmt.Errorf("%s: no rows to evaluate", data.Path)
	}
	start := time.Now()
	for batch := range b.Batches(opts.Batch) {
		in, err := ort.Feed(b, batch)
		if err != nil {
			return nil, err
		}
		outs, err := s.Run(in...)
		if err != nil {
			return nil, fmt.Errorf("rows %d-%d: %w", batch.Start, batch.End, err)
		}
		out := outs[outIdx]
		logits, ok := out.Data.([]float32)
		if !ok {
			return nil, fmt.Errorf("output %q is %s, want float32 scores", out.Name, out.DType)
		}
		switch task {
		case Classification:
			if err := scoreClasses(res, out, logits, batch); err != nil {
				return nil, err
			}
		case LanguageModel:
			if err := scoreTokens(res, out, logits, ids, mask, batch); err != nil {
				return nil, err
			}
		}
		res.Samples += batch.Len()
		if opts.Progress != nil {
			opts.Progress(batch.End, b.N)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.Throughput = float64(res.Samples) / res.Seconds
	}
	switch task {
	case Classification:
		if res.Total > 0 {
			res.Value = float64(res.Correct) / float64(res.Total)
		}
	case LanguageModel:
		if res.Tokens == 0 {
			return nil, fmt.Errorf("%s: no tokens to predict", data.Path)
		}
		res.Value = math.Exp(res.NLLSum / float64(res.Tokens))
	}
	return res, nil
}

func scoreClasses(res *Result, out ort.Tensor, logits []float32, batch dataset.Batch) error {
	n := batch.Len()
	if len(out.Shape) < 1 || out.Shape[0] != int64(n) || n == 0 {
		return fmt.Errorf("output %q has shape %v for %d rows", out.Name, out.Shape, n)
	}
	c := len(logits) / n
	for i := 0; i < n; i++ {
		if l := batch.Labels[i]; l < 0 || l >= int64(c) {
			return fmt.Errorf("label %d of row %d is outside the model's %d classes (output %q)", l, batch.Start+i, c, out.Name)
		}
		row := logits[i*c : (i+1)*c]
		best := 0
		for k, v := range row {
			if isBad(v) {
				return fmt.Errorf("output %q is %v for row %d", out.Name, v, batch.Start+i)
			}
			if v > row[best] {
				best = k
			}
		}
		if int64(best) == batch.Labels[i] {
			res.Correct++
		}
		res.Total++
	}
	return nil
}

func scoreTokens(res *Result, out ort.Tensor, logits []float32, ids, mask *dataset.Array, batch dataset.Batch) error {
	if len(out.Shape) != 3 {
		return fmt.Errorf("output %q has shape %v, a language model gives [N, T, vocab]", out.Name, out.Shape)
	}
	n, t, v := int(out.Shape[0]), int(out.Shape[1]), int(out.Shape[2])
	allIDs := ids.Int64s()
	tt := ids.Shape[1]
	if tt != t {
		return fmt.Errorf("output %q has %d positions, the input %d", out.Name, t, tt)
	}
	for i := 0; i < n; i++ {
		row := batch.Start + i
		for p := 0; p+1 < t; p++ {
			target := allIDs[row*tt+p+1]
			if mask != nil {
				mv, err := maskAt(mask, row*tt+p+1)
				if err != nil {
					return err
				}
				if !mv {
					continue
				}
			}
			if target < 0 || target >= int64(v) {
				return fmt.Errorf("token id %d at row %d position %d is outside the vocabulary of %d", target, row, p+1, v)
			}
			l := logits[(i*t+p)*v : (i*t+p+1)*v]
			lse, bad, ok := LogSumExp(l)
			if !ok {
				return fmt.Errorf("output %q is %v at row %d position %d", out.Name, bad, row, p)
			}
			res.NLLSum += lse - float64(l[target])
			res.Tokens++
		}
	}
	return nil
}

func maskAt(a *dataset.Array, k int) (bool, error) {
	switch a.DType {
	case dataset.Int64:
		return a.Int64s()[k] != 0, nil
	case dataset.Int32:
		return a.Int32s()[k] != 0, nil
	case dataset.Bool:
		return a.Bools()[k], nil
	case dataset.Float32:
		return a.Float32s()[k] != 0, nil
	}
	return false, fmt.Errorf("attention_mask has unsupported type %v", a.DType)
}

// LogSumExp is log(sum(exp(row))), taken against the row's maximum so that
// large logits do not overflow. ok is false, with the offending value and a
// NaN sum, when the row holds a NaN or an infinity.
func LogSumExp(row []float32) (lse float64, bad float32, ok bool) {
	mx := float64(row[0])
	for _, v := range row {
		if isBad(v) {
			return math.NaN(), v, false
		}
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range row {
		sum += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(sum), 0, true
}

func isBad(v float32) bool {
	f := float64(v)
	return math.IsNaN(f) || math.IsInf(f, 0)
}

// NoLabelsError: a classifier's data lacks its labels array.
type NoLabelsError struct{ Path, Name string }

func (e *NoLabelsError) Error() string {
	return fmt.Sprintf("%s: no %q array to measure accuracy against", e.Path, e.Name)
}

func labelsName(s string) string {
	if s == "" {
		return "labels"
	}
	return s
}
