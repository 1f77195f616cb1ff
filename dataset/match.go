package dataset

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
)

// InputSpec describes one model input, as the caller reads it from the model.
type InputSpec struct {
	Name  string
	DType DType
	Shape []int64 // -1 or 0 for a dynamic dimension
}

// shapeString shows the shape the way errors do: a dynamic leading dimension is
// N (the rows), other dynamic dimensions are ?.
func (in InputSpec) shapeString() string {
	parts := make([]string, len(in.Shape))
	for i, d := range in.Shape {
		switch {
		case d > 0:
			parts[i] = strconv.FormatInt(d, 10)
		case i == 0:
			parts[i] = "N"
		default:
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// MatchError is one disagreement between a set and a model's inputs.
// Array and Input are empty when not relevant.
type MatchError struct {
	Path   string
	Array  string
	Input  string
	Reason string // full sentence, without the path
}

func (e *MatchError) Error() string { return e.Path + ": " + e.Reason }

// MatchErrors is every disagreement Match found, in input order.
type MatchErrors []*MatchError

// Error lists every disagreement, one a line.
func (l MatchErrors) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As reach the individual *MatchError values.
func (l MatchErrors) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Bound is a set matched to a model's inputs.
type Bound struct {
	Path   string
	N      int         // rows
	Specs  []InputSpec // the model inputs, as given to Match
	Inputs []*Array    // Inputs[i] feeds Specs[i]
	Labels *Array      // 1-D int64 or int32, or nil
	Extra  []string    // arrays used neither as input nor as labels, in file order
	// FixedBatch is the batch size the model fixes on axis 0 of its inputs,
	// or 0 when that axis is dynamic. Batches then always has this size.
	FixedBatch int
}

// Match pairs the set's arrays with the model inputs by name. Each input
// needs an array of the same name and dtype, the same rank and the same size
// on every static axis after the first. Axis 0 is the row axis: all bound
// arrays share it; when the model fixes it to B, any row count that is a
// multiple of B is accepted and batches have size B.
//
// labels names a 1-D int64 or int32 array with one entry per row; "" takes
// the array "labels" if there is one. Arrays that are neither inputs nor
// labels are listed in Bound.Extra.
//
// On failure the error is a MatchErrors listing every problem found, each
// naming the file, the array and the input, and what was expected and found.
// The set is not changed; the Bound shares its arrays.
func (s *Set) Match(inputs []InputSpec, labels string) (*Bound, error) {
	var errs MatchErrors
	fail := func(array, input, format string, args ...any) {
		errs = append(errs, &MatchError{Path: s.where(), Array: array, Input: input, Reason: fmt.Sprintf(format, args...)})
	}
	b := &Bound{Path: s.Path, Specs: slices.Clone(inputs)}
	used := map[string]bool{}
	var bound []*Array // arrays whose rows must agree
	specOf := map[string]bool{}
	for _, in := range inputs {
		if specOf[in.Name] {
			fail("", in.Name, "model input %q is listed twice", in.Name)
			continue
		}
		specOf[in.Name] = true
		a := s.Get(in.Name)
		b.Inputs = append(b.Inputs, a)
		if a == nil {
			fail("", in.Name, "model input %q has no array of that name (arrays: %s)", in.Name, quoteList(s.Names()))
			continue
		}
		used[a.Name] = true
		if a.DType != in.DType {
			fail(a.Name, in.Name, "array %q has dtype %v, model input %q wants %v", a.Name, a.DType, in.Name, in.DType)
		}
		if len(in.Shape) == 0 {
			fail(a.Name, in.Name, "model input %q is a scalar, so array %q (shape %v) cannot feed it row by row", in.Name, a.Name, a.Shape)
			continue
		}
		if !shapeFits(a.Shape, in.Shape) {
			fail(a.Name, in.Name, "array %q has shape %v, model input %q wants %s", a.Name, a.Shape, in.Name, in.shapeString())
			continue
		}
		bound = append(bound, a)
		if fixed := int(in.Shape[0]); fixed > 0 {
			switch {
			case b.FixedBatch != 0 && b.FixedBatch != fixed:
				fail(a.Name, in.Name, "model input %q fixes the batch dimension to %d, another input to %d", in.Name, fixed, b.FixedBatch)
			case a.Len()%fixed != 0:
				fail(a.Name, in.Name, "array %q has %d rows, model input %q fixes the batch dimension to %d and %d is not a multiple of it", a.Name, a.Len(), in.Name, fixed, a.Len())
			default:
				b.FixedBatch = fixed
			}
		}
	}

	if labels == "" && s.Get("labels") != nil {
		labels = "labels"
	}
	if labels != "" {
		l := s.Get(labels)
		switch {
		case l == nil:
			fail("", "", "labels array %q not found (arrays: %s)", labels, quoteList(s.Names()))
		case l.DType != Int64 && l.DType != Int32:
			fail(l.Name, "", "labels array %q has dtype %v, want int64 or int32", l.Name, l.DType)
		case l.Rank() != 1:
			fail(l.Name, "", "labels array %q has shape %v, want 1-D [N]", l.Name, l.Shape)
		default:
			b.Labels = l
			used[l.Name] = true
			bound = append(bound, l)
		}
	}

	// Rows: every bound array must agree with the first one.
	if len(bound) > 0 {
		first := bound[0]
		b.N = first.Len()
		for _, a := range bound[1:] {
			if a.Len() != first.Len() {
				fail(a.Name, "", "array %q has %d rows (leading dimension), array %q has %d", a.Name, a.Len(), first.Name, first.Len())
			}
		}
	}
	for _, a := range s.Arrays {
		if !used[a.Name] {
			b.Extra = append(b.Extra, a.Name)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return b, nil
}

// shapeFits: same rank, and every static axis after the row axis agrees.
func shapeFits(have []int, want []int64) bool {
	if len(have) != len(want) {
		return false
	}
	for i := 1; i < len(want); i++ {
		if want[i] > 0 && int64(have[i]) != want[i] {
			return false
		}
	}
	return true
}

func quoteList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// Input returns the array bound to the named model input, or nil.
func (b *Bound) Input(name string) *Array {
	for i, in := range b.Specs {
		if in.Name == name {
			return b.Inputs[i]
		}
	}
	return nil
}

// LabelValues returns the labels as a new []int64, or nil when there are none.
func (b *Bound) LabelValues() []int64 {
	if b.Labels == nil {
		return nil
	}
	v, _ := b.Labels.AsInt64() // Match admitted only integer labels
	return v
}

// Batch is one batch of rows: copies of the input rows, in model input
// order, and their labels (nil when the set has none).
type Batch struct {
	Range
	Inputs []*Array
	Labels []int64
}

// Batches yields batches of size rows in order; the last may be shorter.
// size <= 0 gives one batch of every row. When the model fixes the batch
// dimension (FixedBatch > 0) that size is used whatever size says, since the
// model accepts no other.
func (b *Bound) Batches(size int) iter.Seq[Batch] {
	if b.FixedBatch > 0 {
		size = b.FixedBatch
	}
	return func(yield func(Batch) bool) {
		for _, r := range Ranges(b.N, size) {
			bt := Batch{Range: r, Inputs: make([]*Array, len(b.Inputs))}
			for i, a := range b.Inputs {
				bt.Inputs[i], _ = a.Slice(r.Start, r.End) // r is within [0, N)
			}
			if b.Labels != nil {
				l, _ := b.Labels.Slice(r.Start, r.End)
				bt.Labels, _ = l.AsInt64()
			}
			if !yield(bt) {
				return
			}
		}
	}
}

// Subset returns a Bound over n rows chosen as Set.Subset chooses them
// (SubsetIndices with the same seed); extra arrays are not copied. A fixed
// batch size rounds n down to a multiple of it (at least one batch).
func (b *Bound) Subset(n int, seed int64) (*Bound, error) {
	if n < 0 {
		return nil, errors.New("subset: negative row count")
	}
	if b.FixedBatch > 0 && n < b.N {
		n = max(n/b.FixedBatch, 1) * b.FixedBatch
	}
	rows, err := SubsetIndices(b.N, n, seed)
	if err != nil {
		return nil, err
	}
	out := *b
	out.N = len(rows)
	out.Specs = slices.Clone(b.Specs)
	out.Extra = slices.Clone(b.Extra)
	out.Inputs = make([]*Array, len(b.Inputs))
	for i, a := range b.Inputs {
		if out.Inputs[i], err = a.Take(rows); err != nil {
			return nil, err
		}
	}
	if b.Labels != nil {
		if out.Labels, err = b.Labels.Take(rows); err != nil {
			return nil, err
		}
	}
	return &out, nil
}
