#!/usr/bin/python3
"""Generates the small ONNX models that the onnxio tests read.

Run from anywhere with Debian's torch and onnx (the python3 first on PATH may
have neither):

    OMP_NUM_THREADS=1 /usr/bin/python3 onnxio/testdata/make_models.py

It writes into the directory that holds this script:

  conv_bn.onnx      Conv + BatchNormalization (kept as nodes, TrainingMode.PRESERVE)
                    + ReLU + MaxPool + Flatten + Gemm, opset 13, dynamic batch
  constant.onnx     Constant nodes (no constant folding) and a view() whose shape is
                    computed through Shape -> Gather -> Unsqueeze -> Concat -> Reshape
  ops11.onnx        one module exported at opset 11 and at opset 17: grouped,
  ops17.onnx        strided, dilated Conv; AveragePool/MaxPool with ceil_mode;
                    Split, Concat, Slice with negative bounds and steps,
                    Transpose, ReduceMean keepdims, Flatten, Gemm, Unsqueeze,
                    MatMul broadcasting, Squeeze, Where, Pad, Expand, Range
  external.onnx     conv_bn saved by onnx.save_model with all tensors in
  external.data     one external file (size_threshold=0)
  halfs.onnx        float16 (raw_data) and bfloat16 (int32_data) initializers
  typed.onnx        initializers in the typed fields (float_data, int32_data,
                    int64_data, double_data, uint64_data) rather than raw_data
  rawtypes.onnx     the same values in raw_data
  unknown.onnx      fields this onnx (1.12) does not know, appended as raw bytes:
                    NodeProto.device_configurations (10) and
                    ModelProto.configuration (26)

  shapes.json       for every torch export: the shapes that onnx's own shape
                    inference gives (-1 for a dimension without a value)
  tensors.json      for halfs/typed/rawtypes: every initializer's dtype, dims and
                    values as onnx.numpy_helper reads them
  unknown.json      the bytes of the unknown fields, hex, for the Go test to find

Everything is seeded; the outputs are small (well under 1 MB together).
"""

import json
import os
import struct

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def out(name):
    return os.path.join(HERE, name)


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 2 * 2, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn2(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc(x)


class WithConstants(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 3)

    def forward(self, x):  # x: [N, 3, 4]
        scale = torch.tensor([0.5, 2.0, -1.0, 4.0])
        y = x * scale + torch.tensor(1.0)
        y = y.view(y.size(0), -1)  # Shape -> Gather -> Unsqueeze -> Concat -> Reshape
        return self.fc(y) * 3


class Ops(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=(1, 2), dilation=(1, 2), groups=2)
        self.fc = nn.Linear(2 * 4 * 8, 6)
        self.register_buffer("mat", torch.randn(6, 4))

    def forward(self, x):  # x: [N, 4, 11, 13]
        y = self.conv(x)  # [N, 8, 6, 7]
        y = F.avg_pool2d(y, 3, stride=2, ceil_mode=True)  # [N, 8, 3, 3]
        y = F.max_pool2d(y, 2, stride=1, ceil_mode=True, padding=1)  # [N, 8, 4, 4]
        a, b = torch.split(y, [3, 5], dim=1)
        z = torch.cat([b, a], dim=1)  # [N, 8, 4, 4]
        z = z[:, :, 1:-1, -9:]  # [N, 8, 2, 4]: -9 clamps to 0
        z = z.permute(0, 2, 3, 1)  # [N, 2, 4, 8]
        z = z - z.mean(dim=-1, keepdim=True)
        z = torch.flatten(z, 1)  # [N, 64]
        z = self.fc(z)  # Gemm [N, 6]
        w = torch.matmul(z.unsqueeze(1), self.mat)  # [N, 1, 4]
        w = w.squeeze(1)  # [N, 4]
        w = torch.where(w > 0, w, w * 0.1)
        w = F.pad(w, (1, 2))  # [N, 7]
        w = w + torch.arange(w.shape[1], dtype=torch.float32)
        e = w.unsqueeze(2).expand(-1, -1, 3)  # [N, 7, 3]
        return e, torch.flip(w, [1])[:, ::2]  # Slice steps -1, then 2


def export(model, args, name, opset, dynamic, outputs=("y",), **kw):
    model.eval()
    names = list(outputs)
    axes = {"x": {0: "N"}}
    for o in names:
        axes[o] = {0: "N"}
    torch.onnx.export(
        model, args, out(name), opset_version=opset, input_names=["x"],
        output_names=names, dynamic_axes=axes if dynamic else None, **kw)


def dims_of(vi):
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]


def onnx_shapes(path):
    m = onnx.shape_inference.infer_shapes(onnx.load(path), strict_mode=True, data_prop=True)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.output):
        d = dims_of(vi)
        if d is not None:
            shapes[vi.name] = d
    return shapes


def tensor_record(t):
    """dtype, dims and values; floats as repr strings (JSON has no inf), integers exact."""
    rec = {"dtype": t.data_type, "dims": list(t.dims)}
    if t.data_type == TensorProto.BFLOAT16:
        # numpy has no bfloat16: widen the bit patterns here.
        bits = list(t.int32_data) if not t.raw_data else list(
            struct.unpack("<%dH" % (len(t.raw_data) // 2), t.raw_data))
        rec["floats"] = [repr(struct.unpack("<f", struct.pack("<I", b << 16))[0]) for b in bits]
        return rec
    a = numpy_helper.to_array(t).flatten()
    if a.dtype.kind == "f":
        rec["floats"] = [repr(float(v)) for v in a.tolist()]
    else:
        rec["ints"] = [int(v) for v in a.tolist()]
    return rec


def main():
    torch.manual_seed(0)
    np.random.seed(0)

    # conv_bn: BatchNormalization kept as a node.
    cb = ConvBN()
    with torch.no_grad():
        for bn in (cb.bn1, cb.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
    export(cb, torch.randn(2, 3, 8, 8), "conv_bn.onnx", 13, True,
           training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)

    export(WithConstants(), torch.randn(2, 3, 4), "constant.onnx", 13, True,
           do_constant_folding=False)

    ops = Ops()
    x = torch.randn(2, 4, 11, 13)
    export(ops, x, "ops11.onnx", 11, True, outputs=("e", "w"))
    export(ops, x, "ops17.onnx", 17, True, outputs=("e", "w"))

    shapes = {n: onnx_shapes(out(n)) for n in
              ("conv_bn.onnx", "constant.onnx", "ops11.onnx", "ops17.onnx")}
    with open(out("shapes.json"), "w") as f:
        json.dump(shapes, f, indent=1, sort_keys=True)

    # external data: every tensor in one file.
    m = onnx.load(out("conv_bn.onnx"))
    if os.path.exists(out("external.data")):
        os.remove(out("external.data"))
    onnx.save_model(m, out("external.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="external.data",
                    size_threshold=0)

    # float16 and bfloat16 initializers.
    h = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 6.1035156e-05, 5.9604645e-08,
                  np.inf, -np.inf, 0.333251953125], dtype=np.float16)
    f16 = numpy_helper.from_array(h, "f16")  # raw_data
    bvals = [1.0, -3.0, 0.5, 3.140625, 1e30, -1e-30, float("inf"), 0.0]
    bf16 = helper.make_tensor("bf16", TensorProto.BFLOAT16, [2, 4], bvals)  # int32_data
    f16typed = helper.make_tensor("f16typed", TensorProto.FLOAT16, [3],
                                  np.array([1.5, -0.25, 1000.0], dtype=np.float16))
    g = helper.make_graph(
        [helper.make_node("Cast", ["f16"], ["a"], to=TensorProto.FLOAT, name="cast_f16"),
         helper.make_node("Cast", ["bf16"], ["b"], to=TensorProto.FLOAT, name="cast_bf16"),
         helper.make_node("Cast", ["f16typed"], ["c"], to=TensorProto.FLOAT, name="cast_f16typed")],
        "halfs", [],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [10]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("c", TensorProto.FLOAT, [3])],
        initializer=[f16, bf16, f16typed])
    hm = helper.make_model(g, producer_name="make_models.py",
                           opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(hm)
    onnx.save_model(hm, out("halfs.onnx"))

    # typed fields and the same values in raw_data.
    specs = [
        ("f32", TensorProto.FLOAT, [2, 3], [0.0, -1.5, 3.25, 1e-8, -7e20, 0.1]),
        ("f64", TensorProto.DOUBLE, [3], [1.0 / 3.0, -2.0, 1e300]),
        ("i8", TensorProto.INT8, [4], [-128, -1, 0, 127]),
        ("u8", TensorProto.UINT8, [4], [0, 1, 200, 255]),
        ("i16", TensorProto.INT16, [3], [-32768, 5, 32767]),
        ("u16", TensorProto.UINT16, [2], [0, 65535]),
        ("i32", TensorProto.INT32, [2, 2], [-2147483648, -1, 7, 2147483647]),
        ("i64", TensorProto.INT64, [3], [-9007199254740993, 0, 9007199254740993]),
        ("u32", TensorProto.UINT32, [2], [0, 4294967295]),
        ("u64", TensorProto.UINT64, [2], [1, 12345678901234]),
        ("b", TensorProto.BOOL, [5], [True, False, False, True, True]),
        ("scalar", TensorProto.FLOAT, [], [42.0]),
        ("empty", TensorProto.FLOAT, [0, 3], []),
    ]
    np_types = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64,
                TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8,
                TensorProto.INT16: np.int16, TensorProto.UINT16: np.uint16,
                TensorProto.INT32: np.int32, TensorProto.INT64: np.int64,
                TensorProto.UINT32: np.uint32, TensorProto.UINT64: np.uint64,
                TensorProto.BOOL: np.bool_}
    records = {}
    for raw, fname in ((False, "typed.onnx"), (True, "rawtypes.onnx")):
        inits, outs, nodes = [], [], []
        for name, dt, dims, vals in specs:
            if raw:
                t = numpy_helper.from_array(np.array(vals, dtype=np_types[dt]).reshape(dims), name)
            else:
                t = helper.make_tensor(name, dt, dims, vals)
            inits.append(t)
            nodes.append(helper.make_node("Identity", [name], [name + "_out"], name="id_" + name))
            outs.append(helper.make_tensor_value_info(name + "_out", dt, dims))
        tm = helper.make_model(helper.make_graph(nodes, fname[:-5], [], outs, initializer=inits),
                               producer_name="make_models.py",
                               opset_imports=[helper.make_opsetid("", 13)])
        onnx.checker.check_model(tm)
        onnx.save_model(tm, out(fname))
        for t in onnx.load(out(fname)).graph.initializer:
            assert t.HasField("raw_data") == raw, (fname, t.name)
            records.setdefault(fname, {})[t.name] = tensor_record(t)
    for t in onnx.load(out("halfs.onnx")).graph.initializer:
        records.setdefault("halfs.onnx", {})[t.name] = tensor_record(t)
    with open(out("tensors.json"), "w") as f:
        json.dump(records, f, indent=1, sort_keys=True)

    # Unknown fields: device_configurations (NodeProto 10) and configuration
    # (ModelProto 26) from newer ONNX versions, as raw wire bytes.
    def ld(field, payload):
        key = (field << 3) | 2
        return bytes(varint(key)) + bytes(varint(len(payload))) + payload

    def varint(v):
        b = []
        while True:
            c = v & 0x7F
            v >>= 7
            if v:
                b.append(c | 0x80)
            else:
                b.append(c)
                return b

    node_cfg = ld(10, ld(1, b"cfg0") + ld(2, b"shard-a"))
    model_cfg = ld(26, ld(1, b"cfg0") + bytes(varint(2 << 3)) + bytes(varint(2)))
    base = onnx.load(out("constant.onnx"))
    node = base.graph.node[0]
    patched = onnx.NodeProto()
    patched.ParseFromString(node.SerializeToString() + node_cfg)
    node.CopyFrom(patched)
    data = base.SerializeToString() + model_cfg
    with open(out("unknown.onnx"), "wb") as f:
        f.write(data)
    # onnx itself reads the file back and keeps both fields.
    back = onnx.load(out("unknown.onnx"))
    assert node_cfg in back.graph.node[0].SerializeToString()
    again = back.SerializeToString()
    assert again == data, "onnx does not round-trip unknown.onnx byte for byte"
    with open(out("unknown.json"), "w") as f:
        json.dump({"node_field": node_cfg.hex(), "model_field": model_cfg.hex(),
                   "node": back.graph.node[0].name}, f, indent=1)

    total = sum(os.path.getsize(out(n)) for n in os.listdir(HERE) if n != "fuzz")
    print("wrote testdata, %d bytes" % total)


if __name__ == "__main__":
    main()
