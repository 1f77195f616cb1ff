package evaluate

import (
	"fmt"
	"math"
	"time"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// Agreement compares a model's predictions with a reference model's on the
// same rows: at every scored position (each row of a classifier; each
// token position of a language model that predicts a real next token) the
// distributions the two models' first outputs give by softmax over their
// last axis. It needs no labels, so it measures what pruning changed even
// for a model that was never trained.
type Agreement struct {
	Rows      int     `json:"rows"`
	Positions int64   `json:"positions"`
	Top1      float64 `json:"top1_agreement"` // fraction of positions where both rank the same class first
	MeanKL    float64 `json:"mean_kl_nats"`   // mean KL(reference || model)
	Seconds   float64 `json:"seconds"`
}

func (a *Agreement) String() string {
	return fmt.Sprintf("top-1 agreement %.4f, mean KL %.4f nats (%d positions of %d rows)", a.Top1, a.MeanKL, a.Positions, a.Rows)
}

// MaxAgreeBytes bounds the reference's log-probabilities that Agree keeps
// between a chunk's two passes.
const MaxAgreeBytes = 64 << 20

// chunkBytes is the bound Agree applies; tests lower it.
var chunkBytes int64 = MaxAgreeBytes

// Agree runs ref and then m on data (one session at a time, so that the
// two models' weights are never mapped together) and compares their
// predictions. The rows go in chunks whose reference log-probabilities
// fit MaxAgreeBytes, each chunk a pass of ref and then of m: memory stays
// bounded whatever the vocabulary and the number of rows, at the cost of
// opening both sessions once per chunk.
func Agree(ref, m *onnxio.Model, data *dataset.Set, opts Options) (*Agreement, error) {
	if opts.Batch <= 0 {
		opts.Batch = 64
	}
	n, err := data.N()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	res := &Agreement{}
	var agree int64
	var kl float64
	for from := 0; from < n; {
		rows, err := agreeChunk(ref, m, data, opts, from, res, &agree, &kl)
		if err != nil {
			return nil, err
		}
		if rows == 0 {
			break
		}
		from += rows
	}
	if res.Positions == 0 {
		return nil, fmt.Errorf("%s: no positions to compare", data.Path)
	}
	res.Top1 = float64(agree) / float64(res.Positions)
	res.MeanKL = kl / float64(res.Positions)
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// agreeChunk compares the models on the rows from from on whose reference
// log-probabilities fit MaxAgreeBytes (at least one batch), adds to res,
// agree and kl, and returns how many rows it compared.
func agreeChunk(ref, m *onnxio.Model, data *dataset.Set, opts Options, from int, res *Agreement, agree *int64, kl *float64) (int, error) {
	var kept [][]float32 // per batch: the reference's log-probabilities at scored positions
	var bytes int64
	rows := 0
	err := eachBatch(ref, data, opts, from, 0, false, func(lp []float32, width int, r int) (bool, error) {
		if len(kept) > 0 && bytes+int64(len(lp))*4 > chunkBytes {
			return false, nil
		}
		kept = append(kept, lp)
		bytes += int64(len(lp)) * 4
		rows += r
		return true, nil
	})
	if err != nil || rows == 0 {
		if err != nil {
			err = fmt.Errorf("reference: %w", err)
		}
		return 0, err
	}
	k := 0
	err = eachBatch(m, data, opts, from, from+rows, true, func(lq []float32, width int, _ int) (bool, error) {
		lp := kept[k]
		kept[k] = nil
		k++
		if len(lp) != len(lq) {
			return false, fmt.Errorf("the models' outputs differ in size (%d and %d values)", len(lp), len(lq))
		}
		for i := 0; i+width <= len(lp); i += width {
			p, q := lp[i:i+width], lq[i:i+width]
			if argmax(p) == argmax(q) {
				*agree++
			}
			var d float64
			for c := range p {
				d += math.Exp(float64(p[c])) * float64(p[c]-q[c])
			}
			*kl += d
			res.Positions++
		}
		return true, nil
	})
	res.Rows += rows
	return rows, err
}

// eachBatch runs m on the rows of data from row from on (up to row limit
// when limit is positive; from is a multiple of the batch) and passes use
// the log-softmax of its first output at the scored positions, width
// values each, batch by batch, until use returns false or an error. With reuse, every batch's log-softmax is written into
// the same memory, which use must not keep.
func eachBatch(m *onnxio.Model, data *dataset.Set, opts Options, from, limit int, reuse bool, use func(lp []float32, width, rows int) (bool, error)) error {
	s, err := ort.NewSessionForModel(m, nil, opts.Runtime)
	if err != nil {
		return err
	}
	defer s.Destroy()
	b, err := s.Bind(data, opts.Labels)
	if err != nil {
		return err
	}
	var mask *dataset.Array
	for k, spec := range b.Specs {
		if spec.Name == "attention_mask" {
			mask = b.Inputs[k]
		}
	}
	// After the first batch shows the output's shape, ORT writes every
	// batch into one buffer (single-output models), so that no batch's
	// logits are left for the collector.
	var buf, lpBuf []float32
	var rowShape []int64
	for batch := range b.Batches(opts.Batch) {
		if batch.Start < from {
			continue
		}
		if limit > 0 && batch.Start >= limit {
			break
		}
		in, err := ort.Feed(b, batch)
		if err != nil {
			return err
		}
		var out ort.Tensor
		if buf == nil {
			outs, err := s.Run(in...)
			if err != nil {
				return fmt.Errorf("rows %d-%d: %w", batch.Start, batch.End, err)
			}
			out = outs[0]
			if x, ok := out.Data.([]float32); ok && len(outs) == 1 && len(out.Shape) > 0 && out.Shape[0] == int64(batch.Len()) {
				buf, rowShape = x, out.Shape[1:]
			}
		} else {
			shape := append([]int64{int64(batch.Len())}, rowShape...)
			out = ort.Tensor{Name: s.Outputs()[0].Name, DType: onnxio.Float, Shape: shape, Data: buf[:onnxio.NumElements(shape)]}
			if err := s.RunInto([]ort.Tensor{out}, in...); err != nil {
				return fmt.Errorf("rows %d-%d: %w", batch.Start, batch.End, err)
			}
		}
		lp, width, err := logSoftmax(out, mask, batch.Start, lpBuf)
		if err != nil {
			return err
		}
		if reuse {
			lpBuf = lp
		}
		more, err := use(lp, width, batch.Len())
		if err != nil {
			return err
		}
		if !more {
			break
		}
		if opts.Progress != nil && reuse { // the second pass of a chunk: rows compared
			opts.Progress(batch.End, b.N)
		}
	}
	return nil
}

// logSoftmax is the log-softmax over the last axis of out at the scored
// positions: every row of [N, C]; of [N, T, V] the positions 0..T-2 whose
// next token is real (mask, from row first on, marks real tokens). It
// appends to dst[:0].
func logSoftmax(out ort.Tensor, mask *dataset.Array, first int, dst []float32) ([]float32, int, error) {
	x, ok := out.Data.([]float32)
	if !ok || len(out.Shape) < 2 || len(out.Shape) > 3 {
		return nil, 0, fmt.Errorf("output %q: %s %v, want float32 [N, C] or [N, T, V]", out.Name, out.DType, out.Shape)
	}
	width := int(out.Shape[len(out.Shape)-1])
	var starts []int
	if len(out.Shape) == 2 {
		for i := 0; i < int(out.Shape[0]); i++ {
			starts = append(starts, i*width)
		}
	} else {
		n, t := int(out.Shape[0]), int(out.Shape[1])
		for i := 0; i < n; i++ {
			for p := 0; p+1 < t; p++ {
				if mask != nil {
					real, err := maskAt(mask, (first+i)*mask.Shape[1]+p+1)
					if err != nil {
						return nil, 0, err
					}
					if !real {
						continue
					}
				}
				starts = append(starts, (i*t+p)*width)
			}
		}
	}
	lp := dst[:0]
	if cap(lp) < len(starts)*width {
		lp = make([]float32, 0, len(starts)*width)
	}
	for _, s := range starts {
		row := x[s : s+width]
		lse, bad, ok := LogSumExp(row)
		if !ok {
			return nil, 0, fmt.Errorf("output %q is %v", out.Name, bad)
		}
		for _, v := range row {
			lp = append(lp, float32(float64(v)-lse))
		}
	}
	return lp, width, nil
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
