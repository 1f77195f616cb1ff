package main

import (
	"fmt"
	"math"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/recover"
)

// evaluator measures a model's loss on the validation rows and its KL
// divergence from the original model's outputs there.
type evaluator struct {
	data     *dataset.Set
	task     string
	rt       ort.Config
	base     [][]float32 // the original's log-probabilities, per batch
	baseLoss float64
}

const evalBatch = 64

func newEvaluator(m *onnxio.Model, data *dataset.Set, task string, rt ort.Config) (*evaluator, error) {
	e := &evaluator{data: data, task: task, rt: rt}
	loss, _, err := e.run(m, true)
	if err != nil {
		return nil, err
	}
	e.baseLoss = loss
	return e, nil
}

func (e *evaluator) eval(m *onnxio.Model) (loss, kl float64, err error) { return e.run(m, false) }

// afterLSQ refits pruned (pruned from orig, keeping kept) on calib and
// returns the loss increase and KL after the refit.
func (e *evaluator) afterLSQ(orig, pruned *onnxio.Model, kept map[string][]int, calib *dataset.Set, cfg *Config, rt ort.Config) (float64, float64, error) {
	fixed, _, err := recover.LSQ(orig, pruned, kept, calib, recover.LSQOptions{Samples: cfg.lsqSamples(calib), Seed: cfg.Seed, Runtime: rt})
	if err != nil {
		return 0, 0, fmt.Errorf("lsq: %w", err)
	}
	l, kl, err := e.eval(fixed)
	return l - e.baseLoss, kl, err
}

// run computes the mean loss (cross-entropy on labels, or next-token
// negative log-likelihood) and, unless record is set, the mean KL from the
// recorded original log-probabilities; with record it records them.
func (e *evaluator) run(m *onnxio.Model, record bool) (float64, float64, error) {
	s, err := ort.NewSessionForModel(m, nil, e.rt)
	if err != nil {
		return 0, 0, err
	}
	defer s.Destroy()
	b, err := s.Bind(e.data, "")
	if err != nil {
		return 0, 0, err
	}
	var ids []int64
	tt := 0
	if e.task == "lm" {
		for k, spec := range b.Specs {
			if spec.DType == dataset.Int64 && len(spec.Shape) == 2 && spec.Name != "attention_mask" {
				ids, _ = b.Inputs[k].AsInt64()
				tt = b.Inputs[k].Shape[1]
			}
		}
		if ids == nil {
			return 0, 0, fmt.Errorf("no token id input")
		}
	} else if b.Labels == nil {
		return 0, 0, fmt.Errorf("%s: no labels", e.data.Path)
	}
	var loss, kl float64
	var count int
	bi := 0
	for batch := range b.Batches(evalBatch) {
		feed, err := ort.Feed(b, batch)
		if err != nil {
			return 0, 0, err
		}
		outs, err := s.Run(feed...)
		if err != nil {
			return 0, 0, err
		}
		logits, ok := outs[0].Data.([]float32)
		if !ok {
			return 0, 0, fmt.Errorf("output %q is not float32", outs[0].Name)
		}
		shape := outs[0].Shape
		v := int(shape[len(shape)-1])
		rows := len(logits) / v
		lp := make([]float32, len(logits))
		for r := 0; r < rows; r++ {
			logSoftmax(lp[r*v:(r+1)*v], logits[r*v:(r+1)*v])
		}
		target := func(r int) int {
			if e.task != "lm" {
				return int(batch.Labels[r])
			}
			// Row r is position p of sample i; it predicts token p+1.
			i, p := r/tt, r%tt
			if p+1 >= tt {
				return -1
			}
			return int(ids[(batch.Start+i)*tt+p+1])
		}
		var base []float32
		if record {
			e.base = append(e.base, lp)
		} else {
			base = e.base[bi]
		}
		for r := 0; r < rows; r++ {
			t := target(r)
			if t < 0 {
				continue
			}
			row := lp[r*v : (r+1)*v]
			loss -= float64(row[t])
			if base != nil {
				for c, q := range base[r*v : (r+1)*v] {
					pq := math.Exp(float64(q))
					kl += pq * (float64(q) - float64(row[c]))
				}
			}
			count++
		}
		bi++
	}
	if count == 0 {
		return 0, 0, fmt.Errorf("nothing to score")
	}
	return loss / float64(count), kl / float64(count), nil
}

// logSoftmax writes the log-softmax of x into dst (NaN throughout when x
// holds a NaN or an infinity).
func logSoftmax(dst, x []float32) {
	ls, _, _ := evaluate.LogSumExp(x)
	for k, v := range x {
		dst[k] = float32(float64(v) - ls)
	}
}

// lsqSamples is how many scoring rows the least-squares refit uses.
func (c *Config) lsqSamples(calib *dataset.Set) int {
	n, _ := calib.N()
	if c.LSQSamples > 0 {
		return min(n, c.LSQSamples)
	}
	return n
}
