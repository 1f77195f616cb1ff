// Package rewrite finds what can be pruned in an ONNX model and removes it
// physically: weights, constants, attributes and shapes are sliced, nothing
// is masked, and the result is a smaller model that passes the validator.
//
// Analyze reads a model and returns an Analysis: its prunable groups and
// what blocked the rest. A Plan names units of some groups; Apply returns a
// new model without them and ParamsAfter predicts its parameter count
// without building it. An Analysis belongs to one model: after Apply,
// analyse the result again. Neither function modifies its input.
//
// # Units and groups
//
// A unit is what pruning removes as one piece: a neuron of a fully
// connected layer, a channel of a convolution, an attention head, a whole
// key/value group of grouped-query attention with its query heads, a
// group of a grouped convolution, or one position of a residual stream's
// hidden width. A Group is an index of units that the graph ties
// together: unit u is one unit on every tensor axis the group reaches (both
// operands of a residual Add, the gate and up projections of a SwiGLU
// block, a squeeze-and-excitation gate and the channels it scales), and
// removing it removes it from all of them. Its Kind says which of the above it is
// (neurons, channels, heads, kv-groups, conv-groups, hidden, embedding, or
// mixed), its Name comes from the node that creates its units
// ("/layer1/conv1/Conv" gives "layer1/conv1:channels"), and its Width is
// the number of units.
//
// A group lists every constant tensor axis that loses positions with it
// (Params), each with a role: "in" for the weights that compute the units
// (a layer's rows or filters, a depthwise kernel the units pass through),
// "out" for the weights that read them (the next layer's columns), and
// "affine" for per-unit biases and normalisation parameters. Criteria use
// the roles: magnitude pruning measures the "in" weights, UnitRuns walks a
// parameter's elements unit by unit. A group that cannot be pruned keeps
// the reasons in Blocked, each naming the node or tensor at fault;
// Warnings note prunings that change more than the units (a LayerNorm over
// the pruned axis, whose statistics change).
//
// # Layouts
//
// Units sit on tensor axes, not always one position each. Internally a
// space is an index set of units (one per layer, head projection, ...) and
// each axis that carries units has a layout: a list of segments {S, R, B}
// placed one after the other. Unit u of space S owns positions
// r*size(S)*B + u*B + j for r < R and j < B: B is the block a unit owns
// (Flatten of an NCHW map gives each channel H*W features; a [H*D]
// projection gives each head D), R repeats the pattern (Flatten of NHWC),
// and Concat gives several segments. R may also be a run-time count: heads
// folded into the batch axis ([S, B, H*D] viewed as [S, B*H, D], as
// nn.MultiheadAttention's export does) sit at the positions congruent to
// their index modulo H, whatever B is; no constant has such an axis, and
// pruning rewrites the constant H of the fold's run-time size instead.
// Such heads are observed where the samples can be followed from the
// graph inputs (SampleAxis): in [B*H, S, D], sample b owns positions
// b*H to b*H + H - 1.
// Groups report the same thing as SegRef and TensorAxis values, and
// Positions lists a unit's positions.
//
// The analysis walks the nodes in graph order and looks each op up in an
// op-rule table keyed by (domain, op type, opset range). A rule says how
// the op moves unit axes from its inputs to its outputs, which operands it
// couples, which units it creates (Gemm, MatMul with a constant weight,
// Conv, embedding Gather) and which constants it slices. Coupled spaces are
// unified (union-find); a space can also be refined when the graph reveals
// its structure: a projection's [H*D] output reshaped into H heads becomes
// H units with blocks of D, query heads that share a key/value head become
// key/value groups. The spaces left at the end are the groups. An op
// without a rule is a barrier: the units that reach it are blocked and the
// op is listed in Analysis.Skipped. Units that reach a graph output or are
// read inside a subgraph are blocked too.
//
// # Shapes and provenance
//
// Pruning changes tensor sizes, so every place that states a size of a unit
// axis must change with it. The analysis traces each element of the small
// integer tensors that feed Reshape and Expand shapes to where it comes
// from: an element of a constant, which Apply rewrites; the
// run-time size of an axis read by a Shape node, which follows the units by
// itself (and is checked to name an axis with the same units); or a value
// computed some other way, which cannot be followed. Run-time sizes of unit
// axes are tracked through shape arithmetic too. Where such a size, known
// now, is the whole size of a reshape output axis without units (a head
// size computed as the hidden width over the head count), that axis keeps
// its size under every plan, so Apply replaces it by its present value. A
// unit axis whose size reaches anything else that cannot be kept consistent
// (a Range, arithmetic on data, a Slice bound) blocks its group rather than
// let the model change shape behind the rewriter's back.
//
// # Observation points
//
// Each group also gets an Observation: where capture records its hidden
// states for scoring (docs/METHOD.md §1). Pre (Z) is the input of the first
// nonlinearity the units go through and Post (A) the output of the chain of
// elementwise ops after it, up to the next layer (for a SwiGLU block, the
// gate projection and SiLU(gate) times up). Attention heads are observed
// across the softmax: the values the attention weights multiply and the
// per-head context, reduced by root mean square. A hidden width with no
// nonlinearity of its own is observed across its first LayerNorm or
// RMSNorm. A group with none of these has a nil Observation.
//
// # Applying a plan
//
// Apply works out every edit before it touches anything, on a clone: the
// positions each constant keeps (a constant read in several places is
// sliced per use, one tensor per distinct slicing), the shape constants to
// rewrite, new group counts of grouped and depthwise convolutions, and new
// Split sizes. It then applies them and validates the result. A plan that
// removes every unit of a group, names a unit twice or names a blocked
// group is an error.
package rewrite
