package shrink

import (
	"fmt"
	"math"

	"github.com/onnx-cria/onnx-cria/capture"
	"github.com/onnx-cria/onnx-cria/spectral"
)

// DefaultSpectralOptions are the defaults of docs/METHOD.md §9 (k = 10, s = 2, ...).
func DefaultSpectralOptions() spectral.Options { return spectral.DefaultOptions() }

// Spectral scores units by spectral structural importance (docs/METHOD.md §2-§4):
// how much each neuron takes part in the dominant distortion between the
// kNN graph of its pre-activation signals and that of its post-activation
// signals.
type Spectral struct{ opts spectral.Options }

// NewSpectral returns the criterion with the given solver options.
func NewSpectral(o spectral.Options) *Spectral { return &Spectral{opts: o} }

func (*Spectral) Name() string      { return "spectral" }
func (*Spectral) NeedsStates() bool { return true }

// NeedsNonlinearity: the score measures what the nonlinearity does to the
// units' neighbourhoods, which a linear group does not have.
func (*Spectral) NeedsNonlinearity() bool { return true }

// Options returns the settings for the report.
func (c *Spectral) Options() any { return c.opts }

func (c *Spectral) Score(r *Round) (map[string]*Scored, error) { return EachGroup(r, c.group) }

func (c *Spectral) group(in Input) (*Scored, error) {
	if in.Z == nil || in.A == nil {
		return nil, fmt.Errorf("group %s: no captured states", in.Group.Name)
	}
	o := c.opts
	o.Seed = uint64(in.Seed)
	r, err := spectral.Score(in.Z, in.A, o)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", in.Group.Name, err)
	}
	// A unit whose output is the same for every sample passes nothing on
	// that the next layer's bias could not; its column ties with every
	// other such unit's in the graphs, which can score it high. It goes
	// first (docs/METHOD.md §4, dead units).
	dead := 0
	for _, p := range constantColumns(in.A) {
		r.Scores[p] = 0
		dead++
	}
	d := map[string]any{
		"eigenvalues": r.Eigenvalues,
		"graph_x":     r.GraphX,
		"graph_y":     r.GraphY,
		"solver":      r.Solver,
		"dead_units":  dead,
	}
	if r.Clustered {
		// A cluster of equal eigenvalues can hold hundreds (dead or constant
		// units): the report lists the first S and describes the cluster.
		ev, keep := r.Eigenvalues, max(o.S, 1)
		last := ev[len(ev)-1]
		size := 0
		for _, v := range ev {
			if math.Abs(v-last) <= 1e-6*math.Max(math.Abs(v), math.Abs(last))+1e-12 {
				size++
			}
		}
		if len(ev) > keep {
			d["eigenvalues"] = ev[:keep]
		}
		d["cluster"] = map[string]any{"value": last, "pairs": size, "cut": r.ClusterCut}
	}
	return &Scored{Scores: r.Scores, Detail: d}, nil
}

// constantColumns lists the columns of a that hold one value in every row.
func constantColumns(a *capture.Matrix) []int {
	rows, n := a.Dims()
	var out []int
	for p := 0; p < n; p++ {
		v0, same := a.At(0, p), true
		for i := 1; i < rows && same; i++ {
			same = a.At(i, p) == v0
		}
		if same {
			out = append(out, p)
		}
	}
	return out
}
