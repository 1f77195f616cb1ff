package ort

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/onnx-cria/onnx-cria/onnxio"
	ortapi "github.com/yalue/onnxruntime_go"
)

// Session is an ORT inference session for one model. Run may be called from
// several goroutines at once. Destroy releases the ORT session.
type Session struct {
	name    string
	inputs  []Info
	byName  map[string]int
	outputs []Info
	plans   []outPlan
	outs    []ortOut

	mu   sync.RWMutex // Run holds it shared, Destroy exclusively
	sess *ortapi.DynamicAdvancedSession
}

// NewSession creates a session from a serialized model. outputs names the
// tensors Run returns, in order: graph outputs or any hidden tensor of the
// main graph (see NewSessionForModel); nil means the graph outputs. Models
// with external data must be loaded with onnxio.Load and passed to
// NewSessionForModel.
func NewSession(model []byte, outputs []string, cfg Config) (*Session, error) {
	m, err := onnxio.Decode(model)
	if err != nil {
		return nil, fmt.Errorf("ort: new session: %w", err)
	}
	if m.HasExternalData() {
		return nil, fmt.Errorf("ort: new session for %s: the model keeps tensors in external data files, which bytes cannot locate; load it with onnxio.Load and use NewSessionForModel", modelLabel(m))
	}
	if outputs == nil {
		outputs = graphOutputs(m)
	}
	return newSession(m, model, outputs, cfg)
}

// NewSessionForModel creates a session whose Run returns the graph outputs
// of m followed by extraOutputs, which may name any tensor of the main
// graph. ORT only returns declared graph outputs, so hidden tensors are
// added to graph.output of a copy of m, typed from onnxio.InferShapes or
// value_info; m is not modified. Declaring a tensor as an output keeps ORT
// from fusing it away, so other outputs can differ from an unmodified
// session's in the last bits.
func NewSessionForModel(m *onnxio.Model, extraOutputs []string, cfg Config) (*Session, error) {
	return newSession(m, nil, append(graphOutputs(m), extraOutputs...), cfg)
}

func graphOutputs(m *onnxio.Model) []string {
	var names []string
	for _, v := range m.Graph().GetOutput() {
		names = append(names, v.GetName())
	}
	return names
}

// modelLabel names a model in messages.
func modelLabel(m *onnxio.Model) string {
	if m.Path != "" {
		return m.Path
	}
	if n := m.Graph().GetName(); n != "" {
		return fmt.Sprintf("model (graph %q)", n)
	}
	return "model"
}

// newSession creates the session; raw, if not nil, is m serialized.
func newSession(m *onnxio.Model, raw []byte, requested []string, cfg Config) (*Session, error) {
	s := &Session{name: modelLabel(m), byName: map[string]int{}}
	fail := func(op string, err error) (*Session, error) {
		return nil, s.wrap(op, err)
	}
	if m.Graph() == nil {
		return fail("new session", errors.New("model has no graph"))
	}
	if cfg.Threads < 0 {
		return fail("new session", fmt.Errorf("negative thread count %d", cfg.Threads))
	}
	provider := strings.ToLower(cfg.Provider)
	if provider == "" {
		provider = ProviderCPU
	}
	if provider != ProviderCPU && provider != ProviderCUDA {
		return fail("new session", fmt.Errorf("unknown execution provider %q (known: %s)", cfg.Provider, strings.Join(Providers, ", ")))
	}
	if len(requested) == 0 {
		return fail("new session", errors.New("no outputs requested"))
	}

	// Inputs are the graph inputs that no initializer provides.
	inits := map[string]bool{}
	for _, t := range m.Graph().GetInitializer() {
		inits[t.GetName()] = true
	}
	var errs onnxio.ErrorList
	for _, v := range m.Graph().GetInput() {
		if inits[v.GetName()] {
			continue
		}
		dt, shape, ok := onnxio.TensorType(v)
		switch {
		case !ok:
			errs.Add(&onnxio.Error{Tensor: v.GetName(), Msg: "graph input is not a tensor"})
			continue
		case !supported(dt):
			errs.Add(&onnxio.Error{Tensor: v.GetName(), Msg: fmt.Sprintf("graph input of element type %s cannot be passed from Go", dt)})
			continue
		}
		info := Info{Name: v.GetName(), DType: dt}
		if shape != nil {
			info.Shape = onnxio.StaticDims(shape)
		}
		s.byName[info.Name] = len(s.inputs)
		s.inputs = append(s.inputs, info)
	}
	if len(s.inputs) == 0 && len(errs) == 0 {
		errs.Add(&onnxio.Error{Msg: "the graph has no inputs to feed; such models are not supported"})
	}
	if err := errs.Err(); err != nil {
		return fail("inputs", err)
	}
	plans, outs, edited, err := planOutputs(m, requested)
	if err != nil {
		return fail("outputs", err)
	}
	s.plans, s.outs = plans, outs
	for _, p := range plans {
		s.outputs = append(s.outputs, p.info)
	}
	if edited != nil {
		m, raw = edited, nil
	}
	dataDir := ""
	if raw == nil {
		if raw, dataDir, err = serialize(m); err != nil {
			return fail("serialize", err)
		}
	}

	if err := s.create(raw, dataDir, provider, cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// wrap names the model and the step in an error of newSession's.
func (s *Session) wrap(op string, err error) error {
	return fmt.Errorf("ort: %s: %s: %w", s.name, op, err)
}

// create makes the ORT session from raw, the serialized model (dataDir:
// where its external data lives, or ""), with s's inputs and outputs.
func (s *Session) create(raw []byte, dataDir, provider string, cfg Config) error {
	// Count the session before it exists, so that Shutdown cannot unload
	// the library while it is being created.
	env.mu.Lock()
	err := initLocked(cfg)
	if err == nil {
		env.sessions++
	}
	libPath := env.path
	env.mu.Unlock()
	if err != nil {
		return err
	}
	created := false
	defer func() {
		if !created {
			env.mu.Lock()
			env.sessions--
			env.mu.Unlock()
		}
	}()

	opts, err := sessionOptions(cfg, provider, libPath)
	if err != nil {
		return s.wrap("session options", err)
	}
	defer opts.Destroy()
	if dataDir != "" {
		// ORT maps the data files; prepacking would copy every weight
		// into a packed buffer of its own, doubling the weights in memory
		// (and keeping the copy in its heap after the session ends).
		for _, kv := range [][2]string{{configDataDir, dataDir}, {configNoPrepack, "1"}} {
			if err := opts.AddSessionConfigEntry(kv[0], kv[1]); err != nil {
				return s.wrap("session options", err)
			}
		}
	}
	inNames := make([]string, len(s.inputs))
	for i, in := range s.inputs {
		inNames[i] = in.Name
	}
	outNames := make([]string, len(s.outs))
	for i, o := range s.outs {
		outNames[i] = o.name
	}
	sess, err := ortapi.NewDynamicAdvancedSessionWithONNXData(raw, inNames, outNames, opts)
	if err != nil {
		return s.wrap("creating ORT session", err)
	}
	s.sess = sess
	created = true
	return nil
}

// configDataDir is the session option that tells ORT where the external
// data of a model given as bytes lives.
const configDataDir = "session.model_external_initializers_file_folder_path"

// configNoPrepack turns off ORT's copying of constant weights into
// kernel-specific layouts when the session is created.
const configNoPrepack = "session.disable_prepacking"

// serialize encodes m for ORT. Tensors stored in external data files stay
// there: the bytes hold only their references, and dataDir is the
// directory ORT resolves them in (m.Dir, made absolute), where ORT maps the
// files into memory rather than reading them. So a model whose weights
// exceed the 2 GiB protobuf limit runs, and no copy of its weights passes
// through Go. dataDir is "" for a model without external data.
func serialize(m *onnxio.Model) (raw []byte, dataDir string, err error) {
	if !m.HasExternalData() {
		raw, err = m.Encode()
		return raw, "", err
	}
	// A missing file or a short one is reported by tensor here rather
	// than by ORT.
	if err := m.CheckExternalData(); err != nil {
		return nil, "", err
	}
	if dataDir, err = filepath.Abs(m.Dir); err != nil {
		return nil, "", err
	}
	raw, err = m.EncodeGraph()
	return raw, dataDir, err
}

// sessionOptions builds ORT session options; the caller destroys them.
func sessionOptions(cfg Config, provider, libPath string) (*ortapi.SessionOptions, error) {
	opts, err := ortapi.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	err = func() error {
		if cfg.Threads > 0 {
			if err := opts.SetIntraOpNumThreads(cfg.Threads); err != nil {
				return fmt.Errorf("setting %d intra-op threads: %w", cfg.Threads, err)
			}
		}
		if cfg.ShortLived {
			if err := opts.SetMemPattern(false); err != nil {
				return err
			}
			if err := opts.AddSessionConfigEntry(configNoPrepack, "1"); err != nil {
				return err
			}
		}
		if cfg.NoSpin {
			if err := opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
				return err
			}
		}
		if cfg.Profile != "" {
			if err := opts.EnableProfiling(cfg.Profile); err != nil {
				return fmt.Errorf("profiling to %s: %w", cfg.Profile, err)
			}
		}
		if provider == ProviderCUDA {
			return appendCUDA(opts, cfg.DeviceID, libPath)
		}
		return nil
	}()
	if err != nil {
		opts.Destroy()
		return nil, err
	}
	return opts, nil
}

// cudaLib is the provider library ORT loads for CUDA, from the directory of
// libonnxruntime itself.
const cudaLib = "libonnxruntime_providers_cuda.so"

func appendCUDA(opts *ortapi.SessionOptions, device int, libPath string) error {
	dirs := []string{filepath.Dir(libPath)}
	if real, err := filepath.EvalSymlinks(libPath); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	found := false
	for _, d := range dirs {
		if isFile(filepath.Join(d, cudaLib)) {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("provider cuda: the CUDA execution provider library %s was not found next to the ONNX Runtime library (in %s); this installation can only run on the CPU provider, which is the default (provider %q)",
			cudaLib, strings.Join(dirs, " or "), ProviderCPU)
	}
	co, err := ortapi.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("provider cuda: creating CUDA provider options: %w", err)
	}
	defer co.Destroy()
	if err := co.Update(map[string]string{"device_id": strconv.Itoa(device)}); err != nil {
		return fmt.Errorf("provider cuda: setting CUDA provider options (device %d): %w", device, err)
	}
	if err := opts.AppendExecutionProviderCUDA(co); err != nil {
		return fmt.Errorf("provider cuda: appending the CUDA execution provider (device %d): %w", device, err)
	}
	return nil
}

// Name identifies the session's model in messages.
func (s *Session) Name() string { return s.name }

// Inputs describes the tensors Run needs, in graph order. Graph inputs that
// an initializer provides are not among them.
func (s *Session) Inputs() []Info { return cloneInfos(s.inputs) }

// Outputs describes the tensors Run returns, in order. Shapes come from the
// model's declarations or from onnxio shape inference; Run's results carry
// the actual shapes.
func (s *Session) Outputs() []Info { return cloneInfos(s.outputs) }

func cloneInfos(in []Info) []Info {
	out := make([]Info, len(in))
	for i, v := range in {
		out[i] = v
		if v.Shape != nil {
			out[i].Shape = append([]int64{}, v.Shape...)
		}
	}
	return out
}

// Destroy releases the ORT session. It waits for running calls of Run and
// is safe to call more than once.
func (s *Session) Destroy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return nil
	}
	err := s.sess.Destroy()
	s.sess = nil
	env.mu.Lock()
	env.sessions--
	env.mu.Unlock()
	if err != nil {
		return fmt.Errorf("ort: %s: destroy: %w", s.name, err)
	}
	return nil
}

// Run feeds inputs, matched to the model's inputs by name, and returns the
// session's outputs (see Outputs) in Go memory. Every input must be given
// once, with the model's element type, rank and fixed dimensions; all
// mismatches are reported together before ORT is called. Inputs are read,
// never modified.
func (s *Session) Run(inputs ...Tensor) ([]Tensor, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.sess == nil {
		return nil, fmt.Errorf("ort: %s: run: session already destroyed", s.name)
	}
	in, err := s.inputValues(inputs)
	defer func() { destroyAll(in) }()
	if err != nil {
		return nil, err
	}
	out := make([]ortapi.Value, len(s.outs))
	defer func() { destroyAll(out) }()
	for i, o := range s.outs {
		if o.scalar {
			if out[i], err = newScalarOutput(o.dtype); err != nil {
				return nil, fmt.Errorf("ort: %s: run: output %q: %w", s.name, o.name, err)
			}
		}
	}
	if err := s.sess.Run(in, out); err != nil {
		if errors.Is(err, ortapi.ZeroShapeLengthError) {
			// Rank-0 outputs are preallocated only when their rank is known.
			return nil, fmt.Errorf("ort: %s: run: an output of unknown rank is a scalar, which needs a declared shape (add value_info with an empty shape): %w", s.name, err)
		}
		return nil, fmt.Errorf("ort: %s: run: %w", s.name, err)
	}
	res := make([]Tensor, len(s.plans))
	for i, p := range s.plans {
		data, shape, err := fromValue(out[p.ort])
		if err != nil {
			return nil, fmt.Errorf("ort: %s: run: output %q: %w", s.name, p.info.Name, err)
		}
		if p.widen {
			data = narrow(data.([]float32), p.info.DType)
		} else if p.shared {
			data = copyData(data)
		}
		if got, _, _ := goDType(data); got != p.info.DType && !(got == onnxio.Uint16 && isHalf(p.info.DType)) {
			return nil, fmt.Errorf("ort: %s: run: output %q: ORT returned %s, the model declares %s", s.name, p.info.Name, got, p.info.DType)
		}
		res[i] = Tensor{Name: p.info.Name, DType: p.info.DType, Shape: shape, Data: data}
	}
	return res, nil
}

// RunInto is Run with the outputs written into memory the caller provides:
// outs holds one tensor per output (in Outputs order) with its exact shape
// and a Data slice of the output's Go type, which ORT fills in place. It
// spares the copy of every output into fresh Go memory, for callers that
// run many batches and consume each result at once. A rank-0 output takes
// a one-element slice with an empty Shape. float16/bfloat16 outputs are not
// supported here.
func (s *Session) RunInto(outs []Tensor, inputs ...Tensor) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.sess == nil {
		return fmt.Errorf("ort: %s: run: session already destroyed", s.name)
	}
	if len(outs) != len(s.plans) {
		return fmt.Errorf("ort: %s: run: %d output buffers for %d outputs", s.name, len(outs), len(s.plans))
	}
	in, err := s.inputValues(inputs)
	defer func() { destroyAll(in) }()
	if err != nil {
		return err
	}
	out := make([]ortapi.Value, len(s.outs))
	defer func() { destroyAll(out) }()
	var scalars []int // outputs of rank 0: ORT's own value, copied out after the run
	for i, p := range s.plans {
		t := outs[i]
		switch {
		case p.widen || p.shared:
			return fmt.Errorf("ort: %s: run: output %q cannot be written in place (%s, or asked for twice)", s.name, p.info.Name, p.info.DType)
		case len(t.Shape) == 0 && s.outs[p.ort].scalar:
			if out[p.ort], err = newScalarOutput(p.info.DType); err != nil {
				return fmt.Errorf("ort: %s: run: output %q: %w", s.name, p.info.Name, err)
			}
			scalars = append(scalars, i)
			continue
		case len(t.Shape) == 0:
			return fmt.Errorf("ort: %s: run: output %q: a buffer needs its shape", s.name, p.info.Name)
		}
		if err := checkInput(Tensor{Name: p.info.Name, DType: t.DType, Shape: t.Shape, Data: t.Data}, p.info); err != nil {
			return fmt.Errorf("ort: %s: run: buffer for output %q: %w", s.name, p.info.Name, err)
		}
		if out[p.ort], err = toValue(t, p.info.DType); err != nil {
			return fmt.Errorf("ort: %s: run: output %q: %w", s.name, p.info.Name, err)
		}
	}
	if err := s.sess.Run(in, out); err != nil {
		return fmt.Errorf("ort: %s: run: %w", s.name, err)
	}
	for _, i := range scalars {
		p := s.plans[i]
		data, _, err := fromValue(out[p.ort])
		if err == nil {
			err = copyScalar(outs[i].Data, data)
		}
		if err != nil {
			return fmt.Errorf("ort: %s: run: output %q: %w", s.name, p.info.Name, err)
		}
	}
	return nil
}

// copyScalar copies the one element of src into dst, a slice of the same
// Go type with room for it.
func copyScalar(dst, src any) error {
	d, s := reflect.ValueOf(dst), reflect.ValueOf(src)
	if d.Type() != s.Type() || d.Len() != 1 || s.Len() != 1 {
		return fmt.Errorf("the buffer of a scalar must be a %T of one element, not %T", src, dst)
	}
	d.Index(0).Set(s.Index(0))
	return nil
}

// inputValues matches inputs to the model's and wraps them as ORT values;
// the caller destroys them, also after an error.
func (s *Session) inputValues(inputs []Tensor) ([]ortapi.Value, error) {
	ordered, err := s.match(inputs)
	if err != nil {
		return nil, fmt.Errorf("ort: %s: run: %w", s.name, err)
	}
	in := make([]ortapi.Value, len(ordered))
	for i, t := range ordered {
		if in[i], err = toValue(t, s.inputs[i].DType); err != nil {
			return in, fmt.Errorf("ort: %s: run: input %q: %w", s.name, t.Name, err)
		}
	}
	return in, nil
}

// destroyAll releases values; after a failed conversion the binding can
// leave a typed nil pointer in an interface, which is skipped.
func destroyAll(vs []ortapi.Value) {
	for _, v := range vs {
		if v == nil {
			continue
		}
		if r := reflect.ValueOf(v); r.Kind() == reflect.Pointer && r.IsNil() {
			continue
		}
		v.Destroy()
	}
}

// narrow converts float32 values that were widened from float16 or
// bfloat16 back to their bit patterns; the round trip is exact.
func narrow(f []float32, dt onnxio.DataType) []uint16 {
	out := make([]uint16, len(f))
	for i, v := range f {
		if dt == onnxio.BFloat16 {
			out[i] = onnxio.Float32ToBFloat16(v)
		} else {
			out[i] = onnxio.Float32ToFloat16(v)
		}
	}
	return out
}

func copyData(d any) any {
	switch x := d.(type) {
	case []float32:
		return append([]float32{}, x...)
	case []float64:
		return append([]float64{}, x...)
	case []int8:
		return append([]int8{}, x...)
	case []uint8:
		return append([]uint8{}, x...)
	case []int16:
		return append([]int16{}, x...)
	case []uint16:
		return append([]uint16{}, x...)
	case []int32:
		return append([]int32{}, x...)
	case []uint32:
		return append([]uint32{}, x...)
	case []int64:
		return append([]int64{}, x...)
	case []uint64:
		return append([]uint64{}, x...)
	case []bool:
		return append([]bool{}, x...)
	}
	return d
}

// match checks the inputs against the model and orders them as the session
// expects, reporting every problem at once.
func (s *Session) match(inputs []Tensor) ([]Tensor, error) {
	var errs []string
	ordered := make([]Tensor, len(s.inputs))
	given := make([]bool, len(s.inputs))
	for _, t := range inputs {
		k, ok := s.byName[t.Name]
		if !ok {
			errs = append(errs, fmt.Sprintf("input %q: the model has no such input (inputs: %s)", t.Name, s.inputList()))
			continue
		}
		if given[k] {
			errs = append(errs, fmt.Sprintf("input %q: given more than once", t.Name))
			continue
		}
		given[k] = true
		if err := checkInput(t, s.inputs[k]); err != nil {
			errs = append(errs, fmt.Sprintf("input %q: %v", t.Name, err))
		}
		ordered[k] = t
	}
	for k, ok := range given {
		if !ok {
			errs = append(errs, fmt.Sprintf("input %q (%s): missing", s.inputs[k].Name, s.inputs[k]))
		}
	}
	switch len(errs) {
	case 0:
		return ordered, nil
	case 1:
		return nil, errors.New(errs[0])
	}
	return nil, fmt.Errorf("%d input problems:\n\t%s", len(errs), strings.Join(errs, "\n\t"))
}

func (s *Session) inputList() string {
	var b strings.Builder
	for i, in := range s.inputs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(in.String())
	}
	return b.String()
}

func checkInput(t Tensor, want Info) error {
	gdt, n, ok := goDType(t.Data)
	if !ok {
		return fmt.Errorf("Data is %T, not a slice of a supported element type", t.Data)
	}
	dt := t.DType
	switch {
	case dt == onnxio.Undefined && gdt == onnxio.Uint16 && isHalf(want.DType):
		dt = want.DType // bit patterns for the model's 16-bit float type
	case dt == onnxio.Undefined:
		dt = gdt
	case dt != gdt && !(gdt == onnxio.Uint16 && isHalf(dt)):
		return fmt.Errorf("DType %s does not match Data of type %T", dt, t.Data)
	}
	if dt != want.DType {
		return fmt.Errorf("element type %s, the model wants %s", dt, want.DType)
	}
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("shape %v has a negative dimension", t.Shape)
		}
	}
	if ne := onnxio.NumElements(t.Shape); ne != int64(n) {
		return fmt.Errorf("shape %v holds %d elements, Data has %d", t.Shape, ne, n)
	}
	if want.Shape == nil {
		return nil
	}
	if len(t.Shape) != len(want.Shape) {
		return fmt.Errorf("shape %v has rank %d, the model wants rank %d %v", t.Shape, len(t.Shape), len(want.Shape), want.Shape)
	}
	for i, d := range want.Shape {
		if d >= 0 && t.Shape[i] != d {
			return fmt.Errorf("shape %v: dimension %d is %d, the model wants %d (%v)", t.Shape, i, t.Shape[i], d, want.Shape)
		}
	}
	return nil
}
