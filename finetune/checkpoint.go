package finetune

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
)

// A checkpoint is an .npz file (readable with numpy): "meta.json" is a
// uint8 array holding ckMeta as JSON; "param_NNN" are the weights in
// Meta.Params order, "buffer_NNN" the running statistics of batch-mode
// BatchNormalizations in Meta.Buffers order; "<state>_NNN" the optimizer's
// state tensors (Adam's m and v, SGD's momentum). Written through a temporary file and a rename.
const ckFormat = "onnx-cria finetune checkpoint 1"

// position is where a run is: the next step to take is Step of epoch
// Epoch (both from 0); Global steps are done in all. The row order of an
// epoch depends only on (seed, epoch), so this is the whole RNG position.
// LossSum accumulates the epoch's losses for its reported mean.
type position struct {
	Epoch   int     `json:"epoch"`
	Step    int     `json:"step"`
	Global  int     `json:"global_step"`
	LossSum float64 `json:"epoch_loss_sum"`
}

type ckMeta struct {
	Format     string           `json:"format"`
	Model      string           `json:"model_sha256"`
	Optimizer  string           `json:"optimizer"`
	Objective  string           `json:"objective"`
	Batch      int              `json:"batch"`
	Seed       int64            `json:"seed"`
	Samples    int              `json:"samples"`
	Params     []string         `json:"params"`
	Buffers    []string         `json:"buffers,omitempty"` // running statistics, "buffer_NNN"
	BatchNorm  string           `json:"batch_norm,omitempty"`
	OptSteps   int64            `json:"optimizer_steps"`
	OptState   []string         `json:"optimizer_state"`
	Pos        position         `json:"position"`
	RNG        string           `json:"rng"`
	History    []EpochStat      `json:"history,omitempty"`
	EvalBefore *evaluate.Result `json:"eval_before,omitempty"`
}

type checkpoint struct {
	Meta   ckMeta
	arrays map[string][]float32
}

func (c *checkpoint) save(path string, params, buffers [][]float32, opt Optimizer) error {
	state, steps := opt.State()
	c.Meta.OptSteps = steps
	c.Meta.OptState = slices.Sorted(maps.Keys(state))
	c.Meta.RNG = fmt.Sprintf("PCG(seed=%d, epoch=%d): Fisher-Yates order of the epoch's rows, batch %d next", c.Meta.Seed, c.Meta.Pos.Epoch, c.Meta.Pos.Step)
	js, err := json.Marshal(c.Meta)
	if err != nil {
		return err
	}
	meta, err := dataset.New("meta.json", []int{len(js)}, js)
	if err != nil {
		return err
	}
	arrays := []*dataset.Array{meta}
	add := func(prefix string, vs [][]float32) error {
		for k, v := range vs {
			a, err := dataset.New(fmt.Sprintf("%s_%03d", prefix, k), []int{len(v)}, v)
			if err != nil {
				return err
			}
			arrays = append(arrays, a)
		}
		return nil
	}
	if err := add("param", params); err != nil {
		return err
	}
	if err := add("buffer", buffers); err != nil {
		return err
	}
	for _, name := range c.Meta.OptState {
		if err := add(name, state[name]); err != nil {
			return err
		}
	}
	if err := dataset.SaveNPZ(path, arrays...); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	return nil
}

func loadCheckpoint(path string) (*checkpoint, error) {
	set, err := dataset.Load(path)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	c := &checkpoint{arrays: map[string][]float32{}}
	meta := set.Get("meta.json")
	if meta == nil || meta.DType != dataset.Uint8 {
		return nil, fmt.Errorf("%s: not a fine-tuning checkpoint (no meta.json array)", path)
	}
	if err := json.Unmarshal(meta.Uint8s(), &c.Meta); err != nil {
		return nil, fmt.Errorf("%s: checkpoint metadata: %w", path, err)
	}
	if c.Meta.Format != ckFormat {
		return nil, fmt.Errorf("%s: checkpoint format %q, want %q", path, c.Meta.Format, ckFormat)
	}
	for _, a := range set.Arrays {
		if a.DType == dataset.Float32 {
			c.arrays[a.Name] = a.Float32s()
		}
	}
	return c, nil
}

// compatible checks that a run configured as want can continue from c.
func (c *checkpoint) compatible(want *ckMeta) error {
	var diffs []string
	check := func(what string, got, w any) {
		if fmt.Sprint(got) != fmt.Sprint(w) {
			diffs = append(diffs, fmt.Sprintf("%s is %v in the checkpoint, %v now", what, got, w))
		}
	}
	check("the model (sha256)", c.Meta.Model, want.Model)
	check("the optimizer", c.Meta.Optimizer, want.Optimizer)
	check("the objective", c.Meta.Objective, want.Objective)
	check("the batch size", c.Meta.Batch, want.Batch)
	check("the seed", c.Meta.Seed, want.Seed)
	check("the number of training samples", c.Meta.Samples, want.Samples)
	check("the trained parameters", c.Meta.Params, want.Params)
	check("the batch norm mode", c.Meta.BatchNorm, want.BatchNorm)
	check("the running statistics", c.Meta.Buffers, want.Buffers)
	if len(diffs) > 0 {
		return fmt.Errorf("%s", strings.Join(diffs, "; "))
	}
	return nil
}

// restore copies the checkpoint's weights, running statistics and
// optimizer state into params, buffers and opt.
func (c *checkpoint) restore(params, buffers [][]float32, opt Optimizer) error {
	get := func(prefix string, k, n int) ([]float32, error) {
		name := fmt.Sprintf("%s_%03d", prefix, k)
		v, ok := c.arrays[name]
		if !ok {
			return nil, fmt.Errorf("array %s missing", name)
		}
		if len(v) != n {
			return nil, fmt.Errorf("array %s has %d values, want %d", name, len(v), n)
		}
		return v, nil
	}
	for k := range params {
		v, err := get("param", k, len(params[k]))
		if err != nil {
			return err
		}
		copy(params[k], v)
	}
	for k := range buffers {
		v, err := get("buffer", k, len(buffers[k]))
		if err != nil {
			return err
		}
		copy(buffers[k], v)
	}
	state := map[string][][]float32{}
	names := append([]string{}, c.Meta.OptState...)
	sort.Strings(names)
	for _, name := range names {
		for k := range params {
			v, err := get(name, k, len(params[k]))
			if err != nil {
				return err
			}
			state[name] = append(state[name], append([]float32{}, v...))
		}
	}
	return opt.SetState(state, c.Meta.OptSteps)
}
