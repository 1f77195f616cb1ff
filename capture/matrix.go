package capture

import (
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/mat"
)

// Matrix is an M x n matrix of captured unit values, one row per sample,
// stored as float32: ORT computes the activations in float32, so float64
// storage would double the memory (and the page faults) for no precision.
// It satisfies mat.Matrix; RawMatrix32 gives readers the rows directly.
type Matrix struct {
	r, c int
	data []float32
}

// NewMatrix returns an r x c matrix over data (len r*c), or over new memory
// when data is nil.
func NewMatrix(r, c int, data []float32) *Matrix {
	if data == nil {
		data = make([]float32, r*c)
	}
	if len(data) != r*c {
		panic("capture: NewMatrix: data does not hold r*c values")
	}
	return &Matrix{r: r, c: c, data: data}
}

func (m *Matrix) Dims() (int, int)    { return m.r, m.c }
func (m *Matrix) At(i, j int) float64 { return float64(m.data[i*m.c+j]) }
func (m *Matrix) T() mat.Matrix       { return mat.Transpose{Matrix: m} }
func (m *Matrix) Row(i int) []float32 { return m.data[i*m.c : (i+1)*m.c] }
func (m *Matrix) RawMatrix32() blas32.General {
	return blas32.General{Rows: m.r, Cols: m.c, Stride: m.c, Data: m.data}
}

// Buffers recycles the memory of results that are no longer needed, so that
// the next capture (the next pruning round) writes into memory the process
// has already mapped instead of faulting in fresh pages. Not safe for
// concurrent use.
type Buffers struct{ free [][]float32 }

// Release hands r's matrices back; r and its matrices must not be used
// afterwards.
func (b *Buffers) Release(r *Result) {
	if b == nil || r == nil {
		return
	}
	for _, m := range r.Data {
		if m != nil {
			b.free = append(b.free, m.data[:cap(m.data)])
		}
	}
	r.Data = nil
}

// get returns n values, from the smallest free buffer that is large enough
// or new memory. The values are not zeroed.
func (b *Buffers) get(n int) []float32 {
	if b != nil {
		best := -1
		for k, f := range b.free {
			if cap(f) >= n && (best < 0 || cap(f) < cap(b.free[best])) {
				best = k
			}
		}
		if best >= 0 {
			f := b.free[best]
			b.free = append(b.free[:best], b.free[best+1:]...)
			return f[:n]
		}
	}
	return make([]float32, n)
}
