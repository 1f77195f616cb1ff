"""Graphs built with onnx.helper for the export zoo (see generate.py).

Not a script. Torch 1.13 does not emit ONNX Runtime's fused transformer ops
(domain com.microsoft) nor quantized weights, so these graphs are written
from the operator specifications (ONNX Runtime's ContribOperators.md for the
com.microsoft ops, the ONNX operator specification for QuantizeLinear and
DequantizeLinear), with seeded random weights. Each builder returns the
model and its calibration arrays.
"""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

MS = "com.microsoft"


class Graph:
    """A small graph builder: named initializers, nodes with generated output
    names, typed inputs and outputs with symbolic dims."""

    def __init__(self, name, rng, opset=17, contrib=False):
        self.name, self.rng, self.opset, self.contrib = name, rng, opset, contrib
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.count = 0

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.array(array, order="C"), name))  # keeps 0-d arrays 0-d
        return name

    def weight(self, name, shape, std=None):
        std = std if std is not None else 1.0 / np.sqrt(shape[0])
        return self.init(name, (self.rng.standard_normal(shape) * std).astype(np.float32))

    def vec(self, name, n, mean=0.0, std=0.02):
        return self.init(name, (mean + self.rng.standard_normal(n) * std).astype(np.float32))

    def ints(self, name, values):
        return self.init(name, np.array(values, dtype=np.int64))

    def node(self, op, inputs, outputs=1, domain="", name=None, unused=(), **attrs):
        """Adds a node with `outputs` generated output names (those at the
        indices in unused left out, as optional outputs) and returns them."""
        self.count += 1
        name = name or "%s_%d" % (op, self.count)
        outputs = ["" if k in unused else "%s_out%d" % (name, k) for k in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def input(self, name, elem, shape):
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, value, name, elem, shape):
        """Declares value, renamed to name, as a graph output."""
        for n in self.nodes:
            for k, v in enumerate(n.output):
                if v == value:
                    n.output[k] = name
            for k, v in enumerate(n.input):
                if v == value:
                    n.input[k] = name
        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))

    def model(self):
        g = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        imports = [helper.make_opsetid("", self.opset)]
        if self.contrib:
            imports.append(helper.make_opsetid(MS, 1))
        m = helper.make_model(g, opset_imports=imports, producer_name="onnx-cria testdata/exports")
        m.ir_version = 8
        return m


def tokens_and_mask(rng, n, t, vocab, min_len):
    """Token ids [n, t] and a right-padded attention mask (1 = token); the
    first row is full, so the widest shape is always seen."""
    ids = rng.integers(1, vocab, size=(n, t), dtype=np.int64)
    lens = rng.integers(min_len, t + 1, size=n)
    lens[0] = t
    mask = (np.arange(t)[None, :] < lens[:, None]).astype(np.int64)
    ids[mask == 0] = 0
    return ids, mask


# --- (e) ONNX Runtime contrib ops -------------------------------------------------


def _embed(g, vocab, d, max_len):
    """Token plus learned position embeddings for input_ids [batch, sequence],
    then LayerNormalization (opset 17)."""
    ids = g.input("input_ids", TensorProto.INT64, ["batch", "sequence"])
    shape = g.node("Shape", [ids])
    t = g.node("Gather", [shape, g.ints("one", 1)], axis=0)
    t1 = g.node("Unsqueeze", [t, g.ints("axes0", [0])])
    pos = g.node("Slice", [g.weight("pos_embed", [max_len, d], 0.02), g.ints("zero1", [0]), t1, g.ints("axes0b", [0])])
    x = g.node("Add", [g.node("Gather", [g.weight("word_embed", [vocab, d], 0.1), ids], axis=0), pos])
    return ids, g.node("LayerNormalization", [x, g.vec("embed_ln.weight", d, 1.0), g.vec("embed_ln.bias", d)], axis=-1, epsilon=1e-5)


def _masked_mean_head(g, x, mask, d, classes):
    m = g.node("Unsqueeze", [g.node("Cast", [mask], to=TensorProto.FLOAT), g.ints("axes2", [2])])
    s = g.node("ReduceSum", [g.node("Mul", [x, m]), g.ints("axes1", [1])], keepdims=0)
    c = g.node("ReduceSum", [m, g.ints("axes1b", [1])], keepdims=0)
    pooled = g.node("Div", [s, g.node("Max", [c, g.init("one_f", np.array(1.0, np.float32))])])
    logits = g.node("Gemm", [pooled, g.weight("classifier.weight", [classes, d]), g.vec("classifier.bias", classes)], transB=1)
    g.output(logits, "logits", TensorProto.FLOAT, ["batch", classes])


def bert_contrib(rng, attention):
    """A BERT-style encoder classifier as ONNX Runtime's transformer optimizer
    leaves it. attention="Attention": the fused Attention op with a packed QKV
    weight [D, 3D] and bias, BiasGelu in the FFN. attention="MultiHeadAttention":
    separate q/k/v MatMuls feeding MultiHeadAttention with the packed bias,
    FastGelu (with bias) in the FFN. Both: SkipLayerNormalization after the
    attention and the FFN (the projections' biases fused into it), int32 mask."""
    vocab, d, heads, ffn, layers, classes = 1000, 64, 4, 128, 2, 2
    g = Graph("bert_" + attention, rng, contrib=True)
    _, x = _embed(g, vocab, d, 64)
    mask = g.input("attention_mask", TensorProto.INT64, ["batch", "sequence"])
    mask32 = g.node("Cast", [mask], to=TensorProto.INT32)
    for i in range(layers):
        p = "layer.%d." % i
        if attention == "Attention":
            a = g.node("Attention", [x, g.weight(p + "attention.qkv.weight", [d, 3 * d]), g.vec(p + "attention.qkv.bias", 3 * d), mask32],
                       domain=MS, num_heads=heads)
        else:
            q, k, v = (g.node("MatMul", [x, g.weight(p + "attention.%s.weight" % n, [d, d])]) for n in "qkv")
            a = g.node("MultiHeadAttention", [q, k, v, g.vec(p + "attention.qkv.bias", 3 * d), mask32], domain=MS, num_heads=heads)
        o = g.node("MatMul", [a, g.weight(p + "attention.output.weight", [d, d])])
        x = g.node("SkipLayerNormalization", [o, x, g.vec(p + "attention.ln.weight", d, 1.0), g.vec(p + "attention.ln.bias", d),
                                              g.vec(p + "attention.output.bias", d)], domain=MS, epsilon=1e-5)
        h = g.node("MatMul", [x, g.weight(p + "intermediate.weight", [d, ffn])])
        if attention == "Attention":
            h = g.node("BiasGelu", [h, g.vec(p + "intermediate.bias", ffn)], domain=MS)
        else:
            h = g.node("FastGelu", [h, g.vec(p + "intermediate.bias", ffn)], domain=MS)
        f = g.node("MatMul", [h, g.weight(p + "output.weight", [ffn, d])])
        x = g.node("SkipLayerNormalization", [f, x, g.vec(p + "output.ln.weight", d, 1.0), g.vec(p + "output.ln.bias", d),
                                              g.vec(p + "output.bias", d)], domain=MS, epsilon=1e-5)
    _masked_mean_head(g, x, mask, d, classes)
    ids, m = tokens_and_mask(rng, 64, 24, vocab, 6)
    return g.model(), {"input_ids": ids, "attention_mask": m}


def gqa_decoder(rng):
    """A Llama-style decoder LM as ONNX Runtime's generative-AI builder writes
    it: SimplifiedLayerNormalization (RMSNorm), q/k/v MatMuls, RotaryEmbedding
    on q and k, GroupQueryAttention (4 query heads over 2 KV heads) with
    seqlens_k and total_sequence_length computed from the input's shape,
    SkipSimplifiedLayerNormalization for the residual, a SwiGLU FFN."""
    vocab, d, heads, kv, ffn, layers, max_len = 256, 64, 4, 2, 160, 2, 64
    hd = d // heads
    g = Graph("gqa_decoder", rng, contrib=True)
    ids = g.input("input_ids", TensorProto.INT64, ["batch", "sequence"])
    shape = g.node("Shape", [ids])
    b = g.node("Gather", [shape, g.ints("zero1", [0])], axis=0)          # [1]
    t = g.node("Gather", [shape, g.ints("one", 1)], axis=0)             # scalar
    total = g.node("Cast", [t], to=TensorProto.INT32)
    seqlens = g.node("Expand", [g.node("Cast", [g.node("Sub", [t, g.ints("one_s", 1)])], to=TensorProto.INT32), b])
    pos = g.node("Expand", [g.node("Unsqueeze", [g.node("Range", [g.ints("zero_s", 0), t, g.ints("one_s2", 1)]), g.ints("axes0", [0])]),
                            g.node("Concat", [b, g.node("Unsqueeze", [t, g.ints("axes0b", [0])])], axis=0)])
    inv = 1.0 / (10000.0 ** (np.arange(0, hd, 2) / hd))
    ang = np.outer(np.arange(max_len), inv)
    cos, sin = g.init("cos_cache", np.cos(ang).astype(np.float32)), g.init("sin_cache", np.sin(ang).astype(np.float32))
    x = g.node("Gather", [g.weight("embed_tokens.weight", [vocab, d], 0.1), ids], axis=0)
    norm = g.node("SimplifiedLayerNormalization", [x, g.vec("layers.0.input_layernorm.weight", d, 1.0)], axis=-1, epsilon=1e-5)
    for i in range(layers):
        p = "layers.%d." % i
        q = g.node("MatMul", [norm, g.weight(p + "q_proj.weight", [d, heads * hd])])
        k = g.node("MatMul", [norm, g.weight(p + "k_proj.weight", [d, kv * hd])])
        v = g.node("MatMul", [norm, g.weight(p + "v_proj.weight", [d, kv * hd])])
        q = g.node("RotaryEmbedding", [q, pos, cos, sin], domain=MS)
        k = g.node("RotaryEmbedding", [k, pos, cos, sin], domain=MS)
        a = g.node("GroupQueryAttention", [q, k, v, "", "", seqlens, total], domain=MS, num_heads=heads, kv_num_heads=kv)
        o = g.node("MatMul", [a, g.weight(p + "o_proj.weight", [heads * hd, d])])
        n2, _, _, x = g.node("SkipSimplifiedLayerNormalization", [o, x, g.vec(p + "post_attention_layernorm.weight", d, 1.0)], 4,
                             domain=MS, unused=(1, 2), epsilon=1e-5)
        gate = g.node("MatMul", [n2, g.weight(p + "gate_proj.weight", [d, ffn])])
        up = g.node("MatMul", [n2, g.weight(p + "up_proj.weight", [d, ffn])])
        act = g.node("Mul", [g.node("Mul", [gate, g.node("Sigmoid", [gate])]), up])
        down = g.node("MatMul", [act, g.weight(p + "down_proj.weight", [ffn, d])])
        nxt = "layers.%d.input_layernorm.weight" % (i + 1) if i + 1 < layers else "norm.weight"
        norm, _, _, x = g.node("SkipSimplifiedLayerNormalization", [down, x, g.vec(nxt, d, 1.0)], 4, domain=MS, unused=(1, 2), epsilon=1e-5)
    logits = g.node("MatMul", [norm, g.weight("lm_head.weight", [d, vocab])])
    g.output(logits, "logits", TensorProto.FLOAT, ["batch", "sequence", vocab])
    return g.model(), {"input_ids": rng.integers(0, vocab, size=(64, 32), dtype=np.int64)}


def fused_activations(rng):
    """A token MLP over float inputs [batch, sequence, 32] through Gelu,
    QuickGelu and FastGelu (without bias), each after MatMul + Add, a
    residual Add back to the input width, mean pooling and Gemm. (BiasAdd,
    which would fuse that last bias and residual, has no CPU kernel in ONNX
    Runtime 1.30: a graph with it does not load on CPU.)"""
    d, h, classes = 32, 64, 4
    g = Graph("fused_activations", rng, contrib=True)
    x0 = g.input("input", TensorProto.FLOAT, ["batch", "sequence", d])
    x = g.node("Gelu", [g.node("Add", [g.node("MatMul", [x0, g.weight("fc1.weight", [d, h])]), g.vec("fc1.bias", h)])], domain=MS)
    x = g.node("QuickGelu", [g.node("Add", [g.node("MatMul", [x, g.weight("fc2.weight", [h, h])]), g.vec("fc2.bias", h)])], domain=MS, alpha=1.702)
    x = g.node("FastGelu", [g.node("Add", [g.node("MatMul", [x, g.weight("fc3.weight", [h, h])]), g.vec("fc3.bias", h)])], domain=MS)
    y = g.node("Add", [g.node("Add", [g.node("MatMul", [x, g.weight("fc4.weight", [h, d])]), g.vec("fc4.bias", d)]), x0])
    pooled = g.node("ReduceMean", [y], axes=[1], keepdims=0)
    logits = g.node("Gemm", [pooled, g.weight("head.weight", [classes, d]), g.vec("head.bias", classes)], transB=1)
    g.output(logits, "logits", TensorProto.FLOAT, ["batch", classes])
    return g.model(), {"input": rng.standard_normal((64, 16, d)).astype(np.float32)}


# --- (f) quantized weights ---------------------------------------------------------


def quantize(w, axis, dtype, symmetric):
    """Linear quantization of w: per-tensor when axis is None, else one scale
    (and zero point) per index along axis. Returns (q, scale, zero_point)."""
    info = np.iinfo(dtype)
    red = None if axis is None else tuple(k for k in range(w.ndim) if k != axis)
    if symmetric:
        amax = np.max(np.abs(w), axis=red)
        scale = np.maximum(amax, 1e-8) / ((info.max - info.min) / 2.0)
        zp = np.zeros_like(scale)
    else:
        lo = np.minimum(np.min(w, axis=red), 0.0)
        hi = np.maximum(np.max(w, axis=red), 0.0)
        scale = np.maximum(hi - lo, 1e-8) / float(info.max - info.min)
        zp = np.round(info.min - lo / scale)
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)) + zp.reshape(shape), info.min, info.max).astype(dtype)
    return q, scale.astype(np.float32), zp.astype(dtype)


def _dq_weight(g, name, w, axis, dtype, symmetric):
    q, s, z = quantize(w, axis, dtype, symmetric)
    attrs = {} if axis is None else {"axis": axis}
    return g.node("DequantizeLinear", [g.init(name + "_quantized", q), g.init(name + "_scale", s), g.init(name + "_zero_point", z)], **attrs)


def _qdq_act(g, x, name, scale=0.05, zp=128):
    """A QuantizeLinear -> DequantizeLinear pair on an activation (uint8, per
    tensor), as ONNX Runtime's static quantizer writes in QDQ format."""
    s, z = g.init(name + "_scale", np.array(scale, np.float32)), g.init(name + "_zero_point", np.array(zp, np.uint8))
    return g.node("DequantizeLinear", [g.node("QuantizeLinear", [x, s, z]), s, z])


def qdq_mlp(rng):
    """MLP 64-128-64-10 in QDQ format (opset 13): activations through uint8
    Q/DQ pairs; weights int8 per tensor (fc1), int8 per output channel of a
    MatMul weight (fc2, axis 1), uint8 asymmetric per output channel of a
    Gemm transB weight (fc3, axis 0)."""
    g = Graph("qdq_mlp", rng, opset=13)
    x = _qdq_act(g, g.input("input", TensorProto.FLOAT, ["batch", 64]), "input_q")
    w1 = _dq_weight(g, "fc1.weight", (rng.standard_normal((64, 128)) / 8).astype(np.float32), None, np.int8, True)
    x = _qdq_act(g, g.node("Relu", [g.node("Add", [g.node("MatMul", [x, w1]), g.vec("fc1.bias", 128)])]), "fc1_q", 0.02, 0)
    w2 = _dq_weight(g, "fc2.weight", (rng.standard_normal((128, 64)) / 11).astype(np.float32), 1, np.int8, True)
    x = _qdq_act(g, g.node("Relu", [g.node("Add", [g.node("MatMul", [x, w2]), g.vec("fc2.bias", 64)])]), "fc2_q", 0.02, 0)
    w3 = _dq_weight(g, "fc3.weight", (rng.standard_normal((10, 64)) / 8).astype(np.float32), 0, np.uint8, False)
    logits = g.node("Gemm", [x, w3, g.vec("fc3.bias", 10)], transB=1)
    g.output(logits, "logits", TensorProto.FLOAT, ["batch", 10])
    return g.model(), {"input": rng.standard_normal((128, 64)).astype(np.float32)}


def qdq_cnn(rng):
    """CNN in QDQ format (opset 13): conv1 int8 per output channel with an
    int32 bias dequantized by input scale x weight scale; conv2 uint8 per
    tensor with zero point 128; conv3 (1x1) int8 per channel; Gemm head with
    a per-channel int8 weight."""
    g = Graph("qdq_cnn", rng, opset=13)
    in_scale = 0.05
    x = _qdq_act(g, g.input("input", TensorProto.FLOAT, ["batch", 3, 32, 32]), "input_q", in_scale)
    w1 = (rng.standard_normal((16, 3, 3, 3)) / 5).astype(np.float32)
    q1, s1, z1 = quantize(w1, 0, np.int8, True)
    w1d = g.node("DequantizeLinear", [g.init("conv1.weight_quantized", q1), g.init("conv1.weight_scale", s1),
                                      g.init("conv1.weight_zero_point", z1)], axis=0)
    bias_scale = (in_scale * s1).astype(np.float32)
    b1 = np.round((rng.standard_normal(16) * 0.05) / bias_scale).astype(np.int32)
    b1d = g.node("DequantizeLinear", [g.init("conv1.bias_quantized", b1), g.init("conv1.bias_scale", bias_scale),
                                      g.init("conv1.bias_zero_point", np.zeros(16, np.int32))], axis=0)
    x = _qdq_act(g, g.node("Relu", [g.node("Conv", [x, w1d, b1d], pads=[1, 1, 1, 1])]), "conv1_q", 0.02, 0)
    w2 = _dq_weight(g, "conv2.weight", (rng.standard_normal((32, 16, 3, 3)) / 12).astype(np.float32), None, np.uint8, False)
    x = g.node("Relu", [g.node("Conv", [x, w2, g.vec("conv2.bias", 32)], pads=[1, 1, 1, 1], strides=[2, 2])])
    x = _qdq_act(g, g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2]), "pool_q", 0.02, 0)
    w3 = _dq_weight(g, "conv3.weight", (rng.standard_normal((32, 32, 1, 1)) / 6).astype(np.float32), 0, np.int8, True)
    x = g.node("Relu", [g.node("Conv", [x, w3, g.vec("conv3.bias", 32)])])
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)
    w4 = _dq_weight(g, "fc.weight", (rng.standard_normal((10, 32)) / 6).astype(np.float32), 0, np.int8, True)
    logits = g.node("Gemm", [x, w4, g.vec("fc.bias", 10)], transB=1)
    g.output(logits, "logits", TensorProto.FLOAT, ["batch", 10])
    return g.model(), {"input": rng.standard_normal((64, 3, 32, 32)).astype(np.float32)}


def nbits_pack(w, block):
    """4-bit block quantization of a MatMul weight w [K, N] along K, as
    MatMulNBits stores it: B uint8 [N, K/block, block/2] (two values a byte,
    low nibble first), scales float [N, K/block], zero points packed uint8
    [N, ceil(K/block/2)]."""
    k, n = w.shape
    blocks = k // block
    wt = w.T.reshape(n, blocks, block)
    lo = np.minimum(wt.min(-1), 0.0)
    hi = np.maximum(wt.max(-1), 0.0)
    scale = np.maximum(hi - lo, 1e-8) / 15.0
    zp = np.clip(np.round(-lo / scale), 0, 15).astype(np.uint8)
    q = np.clip(np.round(wt / scale[..., None]) + zp[..., None], 0, 15).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    zpad = np.zeros((n, (blocks + 1) // 2 * 2), np.uint8)
    zpad[:, :blocks] = zp
    zpacked = (zpad[:, 0::2] | (zpad[:, 1::2] << 4)).astype(np.uint8)
    return packed, scale.astype(np.float32), zpacked


def matmulnbits_mlp(rng, block=32):
    """MLP 64-128-96-10 whose three weights are MatMulNBits (4 bits, blocks of
    32 along K); fc1 and fc3 with packed zero points, fc2 with the default
    zero point 8 (symmetric); biases as separate Adds."""
    g = Graph("matmulnbits_mlp", rng, contrib=True)
    x = g.input("input", TensorProto.FLOAT, ["batch", 64])
    dims = [64, 128, 96, 10]
    for i in range(3):
        k, n = dims[i], dims[i + 1]
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        name = "fc%d.weight" % (i + 1)
        if i != 1:
            b, s, z = nbits_pack(w, block)
            ins = [x, g.init(name + "_Q4", b), g.init(name + "_scales", s), g.init(name + "_zero_points", z)]
        else:  # symmetric: codes centred on the default zero point 8, no zero point input
            blocks = w.T.reshape(n, k // block, block)
            s = (np.maximum(np.abs(blocks).max(-1), 1e-8) / 7.0).astype(np.float32)
            q = np.clip(np.round(blocks / s[..., None]) + 8, 0, 15).astype(np.uint8)
            ins = [x, g.init(name + "_Q4", (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)), g.init(name + "_scales", s)]
        x = g.node("Add", [g.node("MatMulNBits", ins, domain=MS, K=k, N=n, bits=4, block_size=block), g.vec("fc%d.bias" % (i + 1), n)])
        if i < 2:
            x = g.node("Relu", [x])
    g.output(x, "logits", TensorProto.FLOAT, ["batch", 10])
    return g.model(), {"input": rng.standard_normal((128, 64)).astype(np.float32)}
