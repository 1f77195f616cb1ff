package dataset

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// Set is the arrays of one file, in file order. Path is the file they were
// read from ("" for a set built in memory); errors name it.
type Set struct {
	Path   string
	Arrays []*Array
}

// Get returns the array with the given name, or nil.
func (s *Set) Get(name string) *Array {
	for _, a := range s.Arrays {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Names returns the array names in file order.
func (s *Set) Names() []string {
	names := make([]string, len(s.Arrays))
	for i, a := range s.Arrays {
		names[i] = a.Name
	}
	return names
}

func (s *Set) where() string {
	if s.Path == "" {
		return "(in-memory set)"
	}
	return s.Path
}

// N returns the number of rows: the leading dimension shared by every array.
// It is an error if the set is empty, an array is 0-d, or an array's leading
// dimension differs from the first array's (the error names both).
func (s *Set) N() (int, error) {
	if len(s.Arrays) == 0 {
		return 0, fmt.Errorf("%s: holds no arrays", s.where())
	}
	return commonRows(s.where(), s.Arrays)
}

func commonRows(where string, arrays []*Array) (int, error) {
	first := arrays[0]
	for _, a := range arrays {
		if a.Rank() == 0 {
			return 0, fmt.Errorf("%s: array %q is 0-d (a scalar) and has no rows", where, a.Name)
		}
		if a.Len() != first.Len() {
			return 0, fmt.Errorf("%s: array %q has %d rows (leading dimension), array %q has %d", where, a.Name, a.Len(), first.Name, first.Len())
		}
	}
	return first.Len(), nil
}

// Subset returns a new set holding n rows of every array, chosen by
// SubsetIndices(N, n, seed): the same seed always picks the same rows, each
// at most once, kept in file order. When n >= N it holds all rows in order.
// The arrays are copies; s is not changed.
func (s *Set) Subset(n int, seed int64) (*Set, error) {
	total, err := s.N()
	if err != nil {
		return nil, err
	}
	rows, err := SubsetIndices(total, n, seed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.where(), err)
	}
	out := &Set{Path: s.Path, Arrays: make([]*Array, len(s.Arrays))}
	for i, a := range s.Arrays {
		if out.Arrays[i], err = a.Take(rows); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SubsetIndices chooses n distinct row indices from [0, total) and returns
// them in ascending order; n >= total gives 0..total-1.
//
// The algorithm is fixed, so a subset can be reproduced in any language:
// a SplitMix64 generator whose state starts at uint64(seed) drives the first
// n steps of a Fisher–Yates shuffle of 0..total-1 (step i swaps position i
// with position i + u, u uniform in [0, total-i) by Lemire's multiply-shift
// with rejection); the first n positions are then sorted.
func SubsetIndices(total, n int, seed int64) ([]int, error) {
	if total < 0 || n < 0 {
		return nil, errors.New("subset: negative row count")
	}
	if n >= total {
		idx := make([]int, total)
		for i := range idx {
			idx[i] = i
		}
		return idx, nil
	}
	g := splitMix64(uint64(seed))
	// Sparse Fisher–Yates: moved holds only positions that differ from identity,
	// so memory is O(n) however large total is.
	moved := make(map[int]int, 2*n)
	at := func(i int) int {
		if v, ok := moved[i]; ok {
			return v
		}
		return i
	}
	idx := make([]int, n)
	for i := range n {
		j := i + int(g.below(uint64(total-i)))
		idx[i] = at(j)
		moved[j] = at(i)
	}
	slices.Sort(idx)
	return idx, nil
}

type splitMix64 uint64

func (s *splitMix64) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// below returns a uniform value in [0, bound) without modulo bias.
func (s *splitMix64) below(bound uint64) uint64 {
	hi, lo := bits.Mul64(s.next(), bound)
	if lo < bound {
		threshold := -bound % bound
		for lo < threshold {
			hi, lo = bits.Mul64(s.next(), bound)
		}
	}
	return hi
}

// Range is the half-open row range [Start, End).
type Range struct{ Start, End int }

// Len is the number of rows in r.
func (r Range) Len() int { return r.End - r.Start }

// Ranges splits rows [0, n) into consecutive ranges of size rows; the last
// may be shorter. size <= 0 means one range holding every row; n == 0 gives none.
func Ranges(n, size int) []Range {
	if n <= 0 {
		return nil
	}
	if size <= 0 || size > n {
		size = n
	}
	out := make([]Range, 0, (n+size-1)/size)
	for i := 0; i < n; i += size {
		out = append(out, Range{i, min(i+size, n)})
	}
	return out
}

// Batches returns the row ranges of batches of size rows over the set
// (see Ranges); it fails when the arrays do not share a leading dimension.
func (s *Set) Batches(size int) ([]Range, error) {
	n, err := s.N()
	if err != nil {
		return nil, err
	}
	return Ranges(n, size), nil
}
