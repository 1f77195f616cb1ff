package autodiff

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// builder appends nodes and constants to a graph. It emits each op in the
// form the graph's opset defines (axes as attribute or input, and so on).
type builder struct {
	m     *onnxio.Model
	g     *onnxpb.GraphProto
	opset int64
	sh    *onnxio.Shapes // forward shapes and dtypes
	taken map[string]bool
	seq   int
	scope string            // label of the node whose rule is running
	memo  map[string]string // constants and Shape/Size nodes, by content
	ix    *onnxio.Index     // of the forward graph; node indices stay valid as nodes are appended
	// spread maps a gradient that is a small tensor expanded to a larger
	// shape (the gradient of a mean or a sum) to the small tensor: where
	// it meets a tensor of the full shape (in a product, or in the sum of
	// a tensor's gradients) broadcasting does the expansion, which saves
	// the pass that writes it out.
	spread map[string]string
	// bnBatch holds the batch-mode BatchNormalizations by output name.
	bnBatch map[string]bnBatch
	// premasked maps a gradient that a tiled MaxPool's rule computed for
	// the Relu in front of it, already masked, to that Relu's output.
	premasked map[string]string
	wrt       map[string]bool // the tensors backward returns gradients of
}

func newBuilder(m *onnxio.Model) *builder {
	b := &builder{m: m, g: m.Graph(), opset: m.Opset(""), taken: map[string]bool{}, memo: map[string]string{}}
	for _, v := range b.g.GetInput() {
		b.taken[v.GetName()] = true
	}
	for _, t := range b.g.GetInitializer() {
		b.taken[t.GetName()] = true
	}
	for _, n := range b.g.GetNode() {
		b.taken[n.GetName()] = true
		for _, o := range n.GetOutput() {
			b.taken[o] = true
		}
	}
	b.sh = onnxio.InferShapes(m, true)
	b.ix = onnxio.NewIndex(b.g)
	return b
}

// fresh returns an unused tensor or node name.
func (b *builder) fresh(base string) string {
	for {
		b.seq++
		name := fmt.Sprintf("grad/%s/%s_%d", b.scope, base, b.seq)
		if b.scope == "" {
			name = fmt.Sprintf("grad/%s_%d", base, b.seq)
		}
		if !b.taken[name] {
			b.taken[name] = true
			return name
		}
	}
}

// dims returns the statically inferred shape of a forward tensor (-1 for
// unknown sizes) and whether its rank is known.
func (b *builder) dims(t string) ([]int64, bool) { return b.sh.Shape(t) }

// rank returns the rank of a forward tensor, or an error naming it.
func (b *builder) rank(t string) (int, error) {
	d, ok := b.dims(t)
	if !ok {
		return 0, fmt.Errorf("the rank of tensor %q is not known statically", t)
	}
	return len(d), nil
}

func (b *builder) dtype(t string) onnxio.DataType { return b.sh.DTypes[t] }

// values returns the statically known integer values of t (constants and
// shape arithmetic folded by onnxio.InferShapes).
func (b *builder) values(t string) ([]int64, bool) {
	v, ok := b.sh.Values[t]
	if !ok {
		return nil, false
	}
	for _, x := range v {
		if x == onnxio.Unknown {
			return nil, false
		}
	}
	return v, true
}

// floatConst returns the values of a constant float tensor, if t is one.
func (b *builder) floatConst(t string) ([]float64, bool) {
	c := b.ix.Const(t)
	if c == nil || !onnxio.DataType(c.GetDataType()).IsFloat() {
		return nil, false
	}
	v, err := b.m.Float64s(c)
	return v, err == nil
}

func attrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_INT.Enum(), I: &v}
}

func attrInts(name string, v []int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_INTS.Enum(), Ints: append([]int64{}, v...)}
}

func attrFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_FLOAT.Enum(), F: &v}
}

func attrString(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

func attrTensor(name string, t *onnxpb.TensorProto) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_TENSOR.Enum(), T: t}
}

// opN appends a node with n outputs and returns the output names.
func (b *builder) opN(typ string, ins []string, n int, attrs ...*onnxpb.AttributeProto) []string {
	outs := make([]string, n)
	for k := range outs {
		outs[k] = b.fresh(strings.ToLower(typ))
	}
	name := b.fresh(typ)
	node := &onnxpb.NodeProto{Name: &name, OpType: &typ, Input: append([]string{}, ins...), Output: outs, Attribute: attrs}
	b.g.Node = append(b.g.Node, node)
	return outs
}

// op appends a node with one output.
func (b *builder) op(typ string, ins []string, attrs ...*onnxpb.AttributeProto) string {
	return b.opN(typ, ins, 1, attrs...)[0]
}

func (b *builder) addInit(t *onnxpb.TensorProto) { b.g.Initializer = append(b.g.Initializer, t) }

// scalar is a 0-d constant of element type dt.
func (b *builder) scalar(dt onnxio.DataType, v float64) string {
	key := fmt.Sprintf("scalar/%d/%v", dt, math.Float64bits(v))
	if name, ok := b.memo[key]; ok {
		return name
	}
	name := b.fresh("const")
	raw, err := onnxio.EncodeFloat64s(dt, []float64{v})
	if err != nil {
		panic(err) // dt is a float type chosen by the caller
	}
	t, _ := onnxio.NewTensor(name, dt, nil, raw)
	b.addInit(t)
	b.memo[key] = name
	return name
}

// floats is a constant tensor of element type dt.
func (b *builder) floats(dt onnxio.DataType, dims []int64, v []float64) string {
	name := b.fresh("const")
	raw, err := onnxio.EncodeFloat64s(dt, v)
	if err != nil {
		panic(err)
	}
	t, err := onnxio.NewTensor(name, dt, dims, raw)
	if err != nil {
		panic(err)
	}
	b.addInit(t)
	return name
}

// ints is a 1-D int64 constant.
func (b *builder) ints(v ...int64) string {
	key := "ints/" + fmt.Sprint(v)
	if name, ok := b.memo[key]; ok {
		return name
	}
	name := b.fresh("ints")
	b.addInit(onnxio.NewInt64Tensor(name, []int64{int64(len(v))}, v))
	b.memo[key] = name
	return name
}

// int0 is a 0-d int64 constant.
func (b *builder) int0(v int64) string {
	key := "int0/" + strconv.FormatInt(v, 10)
	if name, ok := b.memo[key]; ok {
		return name
	}
	name := b.fresh("int")
	b.addInit(onnxio.NewInt64Tensor(name, nil, []int64{v}))
	b.memo[key] = name
	return name
}

// shape is Shape(x), shared by every rule that asks.
func (b *builder) shape(x string) string {
	key := "shape/" + x
	if name, ok := b.memo[key]; ok {
		return name
	}
	name := b.op("Shape", []string{x})
	b.memo[key] = name
	return name
}

// sizeAs is the element count of x as a 0-d tensor of type dt.
func (b *builder) sizeAs(x string, dt onnxio.DataType) string {
	key := fmt.Sprintf("size/%d/%s", dt, x)
	if name, ok := b.memo[key]; ok {
		return name
	}
	name := b.cast(b.op("Size", []string{x}), dt)
	b.memo[key] = name
	return name
}

func (b *builder) cast(x string, dt onnxio.DataType) string {
	return b.op("Cast", []string{x}, attrInt("to", int64(dt)))
}

func (b *builder) add(x, y string) string { return b.op("Add", []string{x, y}) }
func (b *builder) sub(x, y string) string { return b.op("Sub", []string{x, y}) }
func (b *builder) mul(x, y string) string { return b.op("Mul", []string{x, y}) }
func (b *builder) div(x, y string) string { return b.op("Div", []string{x, y}) }
func (b *builder) neg(x string) string    { return b.op("Neg", []string{x}) }

func (b *builder) where(c, x, y string) string { return b.op("Where", []string{c, x, y}) }

// masked is g (of element type dt) where the boolean mask holds and 0
// elsewhere, as a product with the mask cast to dt: ONNX Runtime's Where
// is about twice as slow as a Cast and a Mul together (a ReLU's gradient
// on the CNN fixture). Unlike Where it lets NaN and infinities in g
// through as NaN.
func (b *builder) masked(mask, g string, dt onnxio.DataType) string {
	return b.mul(b.unspread(g), b.cast(mask, dt)) // the mask has g's shape
}

func (b *builder) reshape(x, shape string) string { return b.op("Reshape", []string{x, shape}) }

// expandLike is small expanded to the run-time shape of like, recorded in
// spread.
func (b *builder) expandLike(small, like string) string {
	g := b.op("Expand", []string{small, b.shape(like)})
	if b.spread == nil {
		b.spread = map[string]string{}
	}
	b.spread[g] = small
	return g
}

// unspread is the tensor that g expands, or g itself; only for uses where
// g meets a tensor of its full shape, which makes broadcasting expand it.
func (b *builder) unspread(g string) string {
	if s, ok := b.spread[g]; ok {
		return s
	}
	return g
}

// pruneFrom removes nodes from index start on whose outputs nothing reads
// (no later node, no graph output and none of keep): expansions that
// unspread made unnecessary, and what only they read. Memoized tensors
// among them are forgotten.
func (b *builder) pruneFrom(start int, keep []string) {
	uses := map[string]int{}
	for _, t := range keep {
		uses[t]++
	}
	for _, o := range b.g.GetOutput() {
		uses[o.GetName()]++
	}
	for _, n := range b.g.Node {
		for _, in := range n.Input {
			uses[in]++
		}
	}
	dead := map[string]bool{}
	kept := make([]*onnxpb.NodeProto, 0, len(b.g.Node))
	for i := len(b.g.Node) - 1; i >= 0; i-- {
		n := b.g.Node[i]
		used := i < start
		for _, o := range n.Output {
			used = used || uses[o] > 0
		}
		if used {
			kept = append(kept, n)
			continue
		}
		for _, in := range n.Input {
			uses[in]--
		}
		for _, o := range n.Output {
			dead[o] = true
		}
	}
	if len(dead) == 0 {
		return
	}
	slices.Reverse(kept)
	b.g.Node = kept
	for k, v := range b.memo {
		if dead[v] {
			delete(b.memo, k)
		}
	}
}

// reshapeLike reshapes x to the run-time shape of like.
func (b *builder) reshapeLike(x, like string) string { return b.reshape(x, b.shape(like)) }

func (b *builder) transpose(x string, perm []int64) string {
	return b.op("Transpose", []string{x}, attrInts("perm", perm))
}

// zerosLike is a tensor of zeros of like's run-time shape and type dt.
func (b *builder) zerosLike(like string, dt onnxio.DataType) string {
	return b.zeros(b.shape(like), dt)
}

// zeros is ConstantOfShape(shape) filled with 0 of type dt.
func (b *builder) zeros(shape string, dt onnxio.DataType) string {
	raw, _ := onnxio.EncodeFloat64s(dt, []float64{0})
	t, _ := onnxio.NewTensor("value", dt, []int64{1}, raw)
	return b.op("ConstantOfShape", []string{shape}, attrTensor("value", t))
}

// reduce emits a Reduce* op over axes, with axes as an attribute before
// since and as an input from it.
func (b *builder) reduce(typ string, since int64, x string, axes []int64, keep bool) string {
	k := int64(0)
	if keep {
		k = 1
	}
	if b.opset >= since {
		return b.op(typ, []string{x, b.ints(axes...)}, attrInt("keepdims", k))
	}
	return b.op(typ, []string{x}, attrInts("axes", axes), attrInt("keepdims", k))
}

func (b *builder) reduceSum(x string, axes []int64, keep bool) string {
	return b.reduce("ReduceSum", 13, x, axes, keep)
}

func (b *builder) reduceMean(x string, axes []int64, keep bool) string {
	return b.reduce("ReduceMean", 18, x, axes, keep)
}

func (b *builder) unsqueeze(x string, axes []int64) string {
	if b.opset >= 13 {
		return b.op("Unsqueeze", []string{x, b.ints(axes...)})
	}
	return b.op("Unsqueeze", []string{x}, attrInts("axes", axes))
}

// slice takes [starts, ends) along axes, step 1.
func (b *builder) slice(x string, starts, ends, axes []int64) string {
	if b.opset >= 10 {
		return b.op("Slice", []string{x, b.ints(starts...), b.ints(ends...), b.ints(axes...)})
	}
	return b.op("Slice", []string{x}, attrInts("starts", starts), attrInts("ends", ends), attrInts("axes", axes))
}

// pad pads x with zeros: pads lists the begins of every axis, then the ends.
func (b *builder) pad(x string, pads []int64) string {
	if b.opset >= 11 {
		return b.op("Pad", []string{x, b.ints(pads...)})
	}
	return b.op("Pad", []string{x}, attrInts("pads", pads))
}

// sumTo reduces g, the gradient of a broadcast result of shape outDims, to
// the shape of x (numpy broadcasting in reverse): leading axes and axes
// where x has size 1 are summed, then g takes x's run-time shape.
func (b *builder) sumTo(g string, outDims []int64, x string) (string, error) {
	xd, ok := b.dims(x)
	if !ok {
		return "", fmt.Errorf("the rank of %q is not known statically, so its broadcast gradient cannot be reduced", x)
	}
	return b.sumToDims(g, outDims, xd, x)
}

// sumToDims is sumTo for an x of shape xd; like gives the run-time shape.
func (b *builder) sumToDims(g string, outDims, xd []int64, like string) (string, error) {
	lead := len(outDims) - len(xd)
	if lead < 0 {
		return "", fmt.Errorf("operand of rank %d is larger than the result of rank %d", len(xd), len(outDims))
	}
	var axes []int64
	for k := 0; k < lead; k++ {
		axes = append(axes, int64(k))
	}
	for k, d := range xd {
		o := outDims[lead+k]
		// A size-1 operand axis was broadcast unless the result's is 1 too;
		// summing over an axis of size 1 is harmless either way.
		if d == 1 && o != 1 {
			axes = append(axes, int64(lead+k))
		}
	}
	if len(axes) == 0 {
		return g, nil
	}
	r := b.reduceSum(g, axes, true)
	return b.reshapeLike(r, like), nil
}

// oneHot is OneHot(idx, depth) along a new last axis, of type dt. ORT
// implements OneHot for float32 values only, hence the Cast.
func (b *builder) oneHot(idx string, depth int64, dt onnxio.DataType) string {
	oh := b.op("OneHot", []string{idx, b.ints(depth), b.floats(onnxio.Float, []int64{2}, []float64{0, 1})}, attrInt("axis", -1))
	if dt != onnxio.Float {
		oh = b.cast(oh, dt)
	}
	return oh
}
