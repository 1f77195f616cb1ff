package onnxio

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/onnx-cria/onnx-cria/internal/inputfile"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Model is a loaded ONNX model: the protobuf message plus where it came from,
// which external data locations are relative to.
type Model struct {
	Proto *onnxpb.ModelProto
	Path  string // file it was loaded from; "" for a model decoded from bytes
	Dir   string // directory that external data locations are relative to
	Size  int64  // size in bytes of the serialized model it was decoded from
	Hash  string // hex SHA-256 of those bytes
	// Scratch, if set, is where Offload and Spill put large edited tensors
	// (see NewScratch); Clone and Derive keep it.
	Scratch *Scratch
}

// maxProtoSize is the largest message protobuf implementations accept.
const maxProtoSize = math.MaxInt32

// Load reads and decodes the ONNX model in path. External data stays on disk
// and is read when a tensor's values are requested.
//
// Only regular files are read (a named pipe or a device is an error, not a
// wait or an endless read), and a file over the 2 GiB protobuf limit is
// refused before it is read.
func Load(path string) (*Model, error) {
	b, err := inputfile.ReadAll(path, maxProtoSize, "model",
		"the 2 GiB protobuf limit of the ONNX format (models this large keep their weights in external data files)")
	if err != nil {
		return nil, err
	}
	m, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.Path = path
	m.Dir = filepath.Dir(path)
	return m, nil
}

// Decode parses a serialized ONNX model. Unknown fields are kept.
func Decode(b []byte) (*Model, error) {
	if len(b) == 0 {
		return nil, errors.New("empty file: not an ONNX model")
	}
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(b, mp); err != nil {
		return nil, fmt.Errorf("not a valid ONNX model, or a truncated one: protobuf decoding failed: %v", err)
	}
	// Many byte strings decode as some protobuf message; a model must at
	// least say its IR version and hold a graph.
	if mp.IrVersion == nil || mp.Graph == nil {
		var missing []string
		if mp.IrVersion == nil {
			missing = append(missing, "ir_version")
		}
		if mp.Graph == nil {
			missing = append(missing, "graph")
		}
		return nil, fmt.Errorf("not an ONNX model: no %s", strings.Join(missing, " and no "))
	}
	sum := sha256.Sum256(b)
	return &Model{Proto: mp, Size: int64(len(b)), Hash: hex.EncodeToString(sum[:])}, nil
}

// Clone returns a deep copy that shares nothing with m.
func (m *Model) Clone() *Model {
	c := *m
	c.Proto = proto.Clone(m.Proto).(*onnxpb.ModelProto)
	return &c
}

// Derive returns a copy of m for adding to its main graph: the model and
// graph messages and the graph's lists (nodes, initializers, inputs,
// outputs, value_info) are new, their elements are shared with m. The caller
// may append, drop or reorder list entries but must not change a shared
// node or tensor. It saves the deep copy of every weight that Clone makes.
func (m *Model) Derive() *Model {
	c := *m
	g := shallow(m.Proto.GetGraph().ProtoReflect(), nil).(*onnxpb.GraphProto)
	c.Proto = shallow(m.Proto.ProtoReflect(), g).(*onnxpb.ModelProto)
	return &c
}

// shallow copies a message one level deep: scalars and sub-messages are
// shared, lists are new lists of the same elements. A non-nil graph replaces
// the graph field of a ModelProto.
func shallow(src protoreflect.Message, graph *onnxpb.GraphProto) proto.Message {
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case graph != nil && fd.Name() == "graph":
			dst.Set(fd, protoreflect.ValueOfMessage(graph.ProtoReflect()))
		case fd.IsMap():
			mp := dst.Mutable(fd).Map()
			v.Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool { mp.Set(k, e); return true })
		case fd.IsList():
			l := dst.Mutable(fd).List()
			for i := 0; i < v.List().Len(); i++ {
				l.Append(v.List().Get(i))
			}
		default:
			dst.Set(fd, v)
		}
		return true
	})
	if u := src.GetUnknown(); len(u) > 0 {
		dst.SetUnknown(append(protoreflect.RawFields(nil), u...))
	}
	return dst.Interface()
}

// Graph is the main graph.
func (m *Model) Graph() *onnxpb.GraphProto { return m.Proto.GetGraph() }

// Name is the file name for messages, or "model" for a model from bytes.
func (m *Model) Name() string {
	if m.Path != "" {
		return m.Path
	}
	return "model"
}

// Opset returns the imported version of an operator set ("" or "ai.onnx" for
// the default domain), or 0 if it is not imported.
func (m *Model) Opset(domain string) int64 {
	if domain == "ai.onnx" {
		domain = ""
	}
	for _, o := range m.Proto.GetOpsetImport() {
		d := o.GetDomain()
		if d == "ai.onnx" {
			d = ""
		}
		if d == domain {
			return o.GetVersion()
		}
	}
	return 0
}

// HasExternalData reports whether any tensor is stored outside the model file.
func (m *Model) HasExternalData() bool {
	found := false
	walkTensors(m.Proto, func(t *onnxpb.TensorProto) {
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			found = true
		}
	})
	return found
}

// Encode serializes the model with all tensor data inline. It fails for a
// model over the 2 GiB protobuf limit; use Save with external data for those.
func (m *Model) Encode() ([]byte, error) {
	if m.HasExternalData() {
		c := m.Clone()
		var err error
		walkTensors(c.Proto, func(t *onnxpb.TensorProto) {
			if err != nil || t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
				return
			}
			var raw []byte
			if raw, err = m.RawData(t); err == nil {
				err = SetRawData(t, t.Dims, raw)
			}
		})
		if err != nil {
			return nil, err
		}
		m = c
	}
	if n := proto.Size(m.Proto); n > maxProtoSize {
		return nil, fmt.Errorf("model is %d bytes, over the 2 GiB protobuf limit: save it with external data", n)
	}
	return proto.MarshalOptions{}.Marshal(m.Proto)
}

// EncodeGraph serializes the model as it is: tensors stored in external
// data files stay there and only their references are written. Such bytes
// are a model only together with its data files, found relative to m.Dir.
func (m *Model) EncodeGraph() ([]byte, error) {
	if n := proto.Size(m.Proto); n > maxProtoSize {
		return nil, fmt.Errorf("model is %d bytes without its external data, over the 2 GiB protobuf limit: save it with external data", n)
	}
	return proto.MarshalOptions{}.Marshal(m.Proto)
}

// WriteFileAtomic writes b to a temporary file beside path, syncs it and
// renames it over path.
func WriteFileAtomic(path string, b []byte) error {
	tmp, err := writeTemp(path, b)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// writeTemp writes b to a new temporary file beside path with mode 0644,
// syncs and closes it, and returns its name. On error it leaves nothing.
func writeTemp(path string, b []byte) (string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return tmp, nil
}

// externalRef parses a tensor's external_data entries: the file (joined to
// m.Dir), the offset, and the length (-1 if absent). It refuses locations
// outside the model's directory and malformed or negative numbers.
func (m *Model) externalRef(t *onnxpb.TensorProto) (path string, offset, length int64, err error) {
	if m.Dir == "" {
		return "", 0, 0, fmt.Errorf("tensor %q: stored as external data, but the model was decoded from bytes: load it from its file so the data can be found", t.GetName())
	}
	var loc string
	offset, length = 0, -1
	for _, kv := range t.GetExternalData() {
		var err error
		switch kv.GetKey() {
		case "location":
			loc = kv.GetValue()
		case "offset":
			offset, err = strconv.ParseInt(kv.GetValue(), 10, 64)
			if offset < 0 {
				err = errors.New("negative")
			}
		case "length":
			length, err = strconv.ParseInt(kv.GetValue(), 10, 64)
			if length < 0 {
				err = errors.New("negative")
			}
		}
		if err != nil {
			return "", 0, 0, fmt.Errorf("tensor %q: bad external_data %s=%q", t.GetName(), kv.GetKey(), kv.GetValue())
		}
	}
	if loc == "" {
		return "", 0, 0, fmt.Errorf("tensor %q: external data without a location", t.GetName())
	}
	clean := filepath.Clean(filepath.FromSlash(loc))
	if filepath.IsAbs(clean) || outside(clean) {
		return "", 0, 0, fmt.Errorf("tensor %q: external data location %q is outside the model's directory", t.GetName(), loc)
	}
	path = filepath.Join(m.Dir, clean)
	// The same rule after symbolic links: a link beside the model must not
	// lead the reader elsewhere. A file that does not exist is reported by
	// whoever opens it.
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return path, offset, length, nil
	}
	dir, err := filepath.EvalSymlinks(m.Dir)
	if err != nil {
		return "", 0, 0, fmt.Errorf("tensor %q: external data: %w", t.GetName(), err)
	}
	if rel, err := filepath.Rel(dir, target); err != nil || outside(rel) {
		return "", 0, 0, fmt.Errorf("tensor %q: external data location %q leads through a symbolic link to %s, outside the model's directory %s: copy the file into that directory instead of linking it", t.GetName(), loc, target, dir)
	}
	return path, offset, length, nil
}

// outside reports whether a clean relative path climbs out of its base.
func outside(rel string) bool {
	return rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// readExternal reads a tensor's bytes from the file its external_data names.
func (m *Model) readExternal(t *onnxpb.TensorProto) ([]byte, error) {
	p, offset, length, err := m.externalRef(t)
	if err != nil {
		return nil, err
	}
	f, size, err := inputfile.Open(p)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: external data: %w", t.GetName(), err)
	}
	defer f.Close()
	if length < 0 {
		length = size - offset
	}
	// Compared without adding offset and length, which may overflow.
	if offset > size || length < 0 || length > size-offset {
		return nil, fmt.Errorf("tensor %q: external data %s holds %d bytes, tensor wants %d at offset %d", t.GetName(), p, size, length, offset)
	}
	b := make([]byte, length)
	if _, err := f.ReadAt(b, offset); err != nil && !(err == io.EOF && length == 0) {
		return nil, fmt.Errorf("tensor %q: reading external data %s: %w", t.GetName(), p, err)
	}
	return b, nil
}

// walkTensors calls fn for every tensor that holds weights or constants:
// initializers, sparse initializers, tensor attributes (Constant nodes among
// them), in the main graph, subgraphs, functions and training graphs.
func walkTensors(mp *onnxpb.ModelProto, fn func(*onnxpb.TensorProto)) {
	var graph func(g *onnxpb.GraphProto)
	var nodes func(ns []*onnxpb.NodeProto)
	sparse := func(s *onnxpb.SparseTensorProto) {
		if s.GetValues() != nil {
			fn(s.Values)
		}
		if s.GetIndices() != nil {
			fn(s.Indices)
		}
	}
	attr := func(a *onnxpb.AttributeProto) {
		if a.T != nil {
			fn(a.T)
		}
		for _, t := range a.Tensors {
			fn(t)
		}
		if a.SparseTensor != nil {
			sparse(a.SparseTensor)
		}
		for _, s := range a.SparseTensors {
			sparse(s)
		}
		if a.G != nil {
			graph(a.G)
		}
		for _, g := range a.Graphs {
			graph(g)
		}
	}
	nodes = func(ns []*onnxpb.NodeProto) {
		for _, n := range ns {
			for _, a := range n.Attribute {
				attr(a)
			}
		}
	}
	graph = func(g *onnxpb.GraphProto) {
		if g == nil {
			return
		}
		for _, t := range g.Initializer {
			fn(t)
		}
		for _, s := range g.SparseInitializer {
			sparse(s)
		}
		nodes(g.Node)
	}
	graph(mp.GetGraph())
	for _, f := range mp.GetFunctions() {
		nodes(f.Node)
		for _, a := range f.AttributeProto {
			attr(a)
		}
	}
	for _, ti := range mp.GetTrainingInfo() {
		graph(ti.Initialization)
		graph(ti.Algorithm)
	}
}

// ParamCount counts the model's parameters the way onnx-cria budgets them:
// the elements and bytes of every floating-point constant tensor
// (initializers and Constant nodes, in all graphs), and the weights that
// quantized constants hold (QuantizedWeights).
func (m *Model) ParamCount() (elems, bytes int64) {
	q := QuantizedWeights(m)
	walkTensors(m.Proto, func(t *onnxpb.TensorProto) {
		dt := DataType(t.GetDataType())
		if w, ok := q[t]; ok {
			n := NumElements(t.GetDims())
			elems += int64(float64(n) * w)
			bytes += n * int64(dt.Size())
			return
		}
		if !dt.IsFloat() {
			return
		}
		n := NumElements(t.GetDims())
		if n > 0 {
			elems += n
			bytes += n * int64(dt.Size())
		}
	})
	return elems, bytes
}
