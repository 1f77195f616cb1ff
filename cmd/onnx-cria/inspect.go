package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/onnx-cria/onnx-cria/internal/memstat"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

type valueJSON struct {
	Name  string   `json:"name"`
	DType string   `json:"dtype"`
	Shape []string `json:"shape"`
}

type inspectJSON struct {
	File       string         `json:"file"`
	Bytes      int64          `json:"bytes"`
	SHA256     string         `json:"sha256"`
	IRVersion  int64          `json:"ir_version"`
	Producer   string         `json:"producer"`
	Opsets     map[string]int `json:"opsets"`
	Inputs     []valueJSON    `json:"inputs"`
	Outputs    []valueJSON    `json:"outputs"`
	Ops        map[string]int `json:"ops"`
	Params     int64          `json:"params"`
	ParamBytes int64          `json:"param_bytes"`
	Valid      bool           `json:"valid"`
	Problems   []string       `json:"problems,omitempty"`
	Groups     []groupJSON    `json:"groups,omitempty"`
	Unpruned   []opJSON       `json:"ops_without_rule,omitempty"`
	Notes      []string       `json:"notes,omitempty"`
}

type groupJSON struct {
	Name          string   `json:"name"`
	Kind          string   `json:"kind"`
	Width         int      `json:"width"`
	ParamsPerUnit int64    `json:"params_per_unit"`
	Prunable      bool     `json:"prunable"`
	Blocked       []string `json:"blocked,omitempty"`
	Warnings      []string `json:"warnings,omitempty"`
	Pre           string   `json:"pre_activation,omitempty"`
	Post          string   `json:"post_activation,omitempty"`
	Nonlinearity  string   `json:"nonlinearity,omitempty"`
	// Linear: observed at the input of the layer that reads the units,
	// which meet no nonlinearity (spectral cannot score them).
	Linear  bool     `json:"linear,omitempty"`
	Sources []string `json:"sources"`
	Params  []string `json:"params"`
}

type opJSON struct {
	Op    string   `json:"op"`
	Nodes []string `json:"nodes"`
}

func runInspect(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("inspect", "[--groups] [--json] MODEL",
		"Describe a model: IR and opset versions, producer, inputs and outputs with shapes,\nan op histogram, the parameter count, validation, and with --groups every prunable\ngroup (unit kind, width, parameters per unit, observation tensors) and everything\nleft unpruned with the reason.", stderr)
	groups := fs.Bool("groups", false, "analyse the prunable unit groups")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	cache := fs.Bool("prune-cache-heads", false, "with --groups: the groups as shrink --prune-cache-heads sees them (heads that a KV cache carries through the inputs and outputs are prunable)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	m, err := onnxio.Load(pos[0])
	if err != nil {
		return err
	}
	info := describe(m)
	if *groups {
		if names := onnxio.InputInitializers(m); len(names) > 0 {
			// As shrink does: weights that are also inputs are weights.
			info.Notes = append(info.Notes, fmt.Sprintf("%d initializers are also graph inputs; analysed as constants, as shrink treats them", len(names)))
			m = m.Clone()
			onnxio.DetachInputInitializers(m)
		}
		a, err := rewrite.Analyze(m, rewrite.Options{PruneCache: *cache})
		if err != nil {
			return err
		}
		info.Groups = groupsJSON(a)
		for _, s := range a.Skipped {
			info.Unpruned = append(info.Unpruned, opJSON{Op: s.Op, Nodes: s.Nodes})
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	printInspect(stdout, info)
	return nil
}

func describe(m *onnxio.Model) *inspectJSON {
	mp := m.Proto
	info := &inspectJSON{
		File: m.Path, Bytes: m.Size, SHA256: m.Hash, IRVersion: mp.GetIrVersion(),
		Producer: strings.TrimSpace(mp.GetProducerName() + " " + mp.GetProducerVersion()),
		Opsets:   map[string]int{}, Ops: map[string]int{}, Valid: true,
	}
	for _, o := range mp.GetOpsetImport() {
		d := o.GetDomain()
		if d == "" {
			d = "ai.onnx"
		}
		info.Opsets[d] = int(o.GetVersion())
	}
	g := m.Graph()
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	for _, v := range g.GetInput() {
		if !inits[v.GetName()] {
			info.Inputs = append(info.Inputs, valueOf(v))
		}
	}
	for _, v := range g.GetOutput() {
		info.Outputs = append(info.Outputs, valueOf(v))
	}
	for _, n := range g.GetNode() {
		op := n.GetOpType()
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			op = d + "::" + op
		}
		info.Ops[op]++
	}
	info.Params, info.ParamBytes = m.ParamCount()
	if err := onnxio.Validate(m); err != nil {
		info.Valid = false
		if l, ok := err.(onnxio.ErrorList); ok {
			for _, e := range l {
				info.Problems = append(info.Problems, e.Error())
			}
		} else {
			info.Problems = []string{err.Error()}
		}
	}
	return info
}

func valueOf(v *onnxpb.ValueInfoProto) valueJSON {
	dt, shape, ok := onnxio.TensorType(v)
	out := valueJSON{Name: v.GetName(), DType: dt.String()}
	if !ok {
		out.DType = "non-tensor"
	}
	for _, d := range shape {
		out.Shape = append(out.Shape, d.String())
	}
	return out
}

func groupsJSON(a *rewrite.Analysis) []groupJSON {
	var out []groupJSON
	for _, g := range a.Groups {
		j := groupJSON{
			Name: g.Name, Kind: g.Kind, Width: g.Width, ParamsPerUnit: g.ParamsPerUnit,
			Prunable: g.Prunable(), Blocked: g.Blocked, Warnings: g.Warnings, Sources: g.Sources,
		}
		if o := g.Observe; o != nil {
			j.Pre, j.Post, j.Nonlinearity, j.Linear = o.Pre, o.Post, o.Op, o.Linear
		}
		for _, p := range g.Params {
			j.Params = append(j.Params, fmt.Sprintf("%s[axis %d]", p.Tensor, p.Axis))
		}
		out = append(out, j)
	}
	return out
}

func printInspect(w io.Writer, info *inspectJSON) {
	fmt.Fprintf(w, "model:      %s (%s, sha256 %.16s)\n", info.File, humanBytes(info.Bytes), info.SHA256)
	var opsets []string
	for d, v := range info.Opsets {
		opsets = append(opsets, fmt.Sprintf("%s %d", d, v))
	}
	sort.Strings(opsets)
	fmt.Fprintf(w, "ir_version: %d   producer: %s   opsets: %s\n", info.IRVersion, info.Producer, strings.Join(opsets, ", "))
	fmt.Fprintf(w, "inputs:\n")
	for _, v := range info.Inputs {
		fmt.Fprintf(w, "  %-20s %-8s [%s]\n", v.Name, v.DType, strings.Join(v.Shape, ","))
	}
	fmt.Fprintf(w, "outputs:\n")
	for _, v := range info.Outputs {
		fmt.Fprintf(w, "  %-20s %-8s [%s]\n", v.Name, v.DType, strings.Join(v.Shape, ","))
	}
	fmt.Fprintf(w, "parameters: %s (%s)\n", commas(info.Params), humanBytes(info.ParamBytes))
	type kv struct {
		k string
		v int
	}
	var ops []kv
	total := 0
	for k, v := range info.Ops {
		ops = append(ops, kv{k, v})
		total += v
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].v > ops[j].v || (ops[i].v == ops[j].v && ops[i].k < ops[j].k) })
	var parts []string
	for _, o := range ops {
		parts = append(parts, fmt.Sprintf("%s %d", o.k, o.v))
	}
	fmt.Fprintf(w, "nodes:      %d: %s\n", total, strings.Join(parts, ", "))
	if info.Valid {
		// Say what was checked: a model can pass and still hold an op
		// that ONNX Runtime has no kernel for, which only a load finds.
		fmt.Fprintf(w, "validation: ok (format versions, graph structure, shapes, element types; not every op's kernel in ONNX Runtime)\n")
	} else {
		fmt.Fprintf(w, "validation: %d problem(s)\n", len(info.Problems))
		for _, p := range info.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	if info.Groups == nil {
		return
	}
	n, linear, blind := 0, 0, 0
	for _, g := range info.Groups {
		switch {
		case g.Prunable && g.Pre != "":
			n++
			if g.Linear {
				linear++
			}
		case g.Prunable:
			blind++
		}
	}
	// Groups without an observation are prunable only by criteria that
	// need no hidden states (and --all-groups), not by the default one.
	fmt.Fprintf(w, "\ngroups: %d, %d prunable", len(info.Groups), n)
	if linear > 0 {
		fmt.Fprintf(w, " (%d of them linear, which spectral cannot score)", linear)
	}
	if blind > 0 {
		fmt.Fprintf(w, " (and %d more whose states cannot be observed, which only --all-groups with a criterion that needs no hidden states prunes)", blind)
	}
	fmt.Fprintln(w)
	for _, note := range info.Notes {
		fmt.Fprintf(w, "  note: %s\n", note)
	}
	fmt.Fprintf(w, "  %-34s %-10s %6s %10s  %s\n", "name", "kind", "width", "params/u", "observe (Z -> A) or why not prunable")
	for _, g := range info.Groups {
		status := ""
		switch {
		case !g.Prunable:
			status = "blocked: " + strings.Join(g.Blocked, "; ")
		case g.Linear:
			status = fmt.Sprintf("%s (linear: the values the next layer reads)", g.Pre)
		case g.Pre != "":
			status = fmt.Sprintf("%s -> %s (%s)", g.Pre, g.Post, g.Nonlinearity)
		default:
			status = "prunable; its states cannot be observed"
		}
		fmt.Fprintf(w, "  %-34s %-10s %6d %10s  %s\n", g.Name, g.Kind, g.Width, commas(g.ParamsPerUnit), status)
		switch len(g.Warnings) {
		case 0:
		case 1:
			fmt.Fprintf(w, "  %-34s warning: %s\n", "", g.Warnings[0])
		default:
			fmt.Fprintf(w, "  %-34s warning: %s (and %d more like it; see --json)\n", "", g.Warnings[0], len(g.Warnings)-1)
		}
	}
	if len(info.Unpruned) > 0 {
		fmt.Fprintf(w, "\nops without a pruning rule (units stop there):\n")
		for _, o := range info.Unpruned {
			fmt.Fprintf(w, "  %s at %s\n", o.Op, strings.Join(o.Nodes, ", "))
		}
	}
}

func humanBytes(n int64) string { return memstat.Text(n) }

func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
