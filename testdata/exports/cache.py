"""The export cache shared by generate.py and llm.py.

Not a script. Every entry is a directory DIR/NAME holding model.onnx (plus
its external data file, if any), calib.npz (arrays named after the model's
inputs) and meta.json. meta.json carries a stamp: a hash of the generator
sources and of the torch, torchvision, onnx and numpy versions. An entry
whose stamp matches is kept (edits to comments and docstrings keep the
stamp); any other is rebuilt, in a temporary directory
renamed into place, so an interrupted run leaves no half-written entry. A
lock file serialises concurrent runs (two test packages may start one each).
"""

import ast
import contextlib
import fcntl
import hashlib
import json
import os
import resource
import shutil
import tempfile
import time

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))

ENV_DIR = "ONNX_CRIA_EXPORTS"


def default_dir():
    """$ONNX_CRIA_EXPORTS, else ~/.cache/onnx-cria/exports (XDG_CACHE_HOME honoured)."""
    if os.environ.get(ENV_DIR):
        return os.environ[ENV_DIR]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "onnx-cria", "exports")


def code_of(path):
    """The code of a Python file without its comments and docstrings, so
    that editing prose does not rebuild multi-GB entries."""
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def stamp(sources):
    """Hash of the code of the given generator files (relative to this
    directory) and of the versions of the libraries that shape the exports."""
    import torch
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + code_of(os.path.join(HERE, name)).encode() + b"\0")
    versions = [torch.__version__, onnx.__version__, np.__version__]
    try:
        import torchvision
        versions.append(torchvision.__version__)
    except ImportError:
        versions.append("-")
    h.update("|".join(versions).encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def locked(root):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def current(root, name, st):
    """The meta.json of entry name when it is complete and its stamp is st."""
    path = os.path.join(root, name, "meta.json")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if meta.get("stamp") != st:
        return None
    for f in ("model.onnx", "calib.npz") + tuple(meta.get("extra_files", [])):
        if not os.path.exists(os.path.join(root, name, f)):
            return None
    return meta


def value_infos(values):
    out = []
    for v in values:
        t = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim] if t.HasField("shape") else None
        out.append({"name": v.name, "dtype": onnx.TensorProto.DataType.Name(t.elem_type).lower(), "shape": shape})
    return out


def describe(model_path):
    """Inputs, outputs, opsets, op histogram and parameter count of a model
    (without loading external data)."""
    m = onnx.load(model_path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    ops = {}
    for n in m.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else "%s.%s" % (n.domain, n.op_type)
        ops[key] = ops.get(key, 0) + 1
    params = 0
    for i in m.graph.initializer:
        if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
            params += int(np.prod(i.dims)) if len(i.dims) else 1
    return {
        "opsets": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
        "inputs": value_infos([v for v in m.graph.input if v.name not in inits]),
        "outputs": value_infos(m.graph.output),
        "ops": dict(sorted(ops.items())),
        "float_params": params,
        "initializers": len(m.graph.initializer),
    }


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build(root, name, st, make, info):
    """Runs make(tmpdir) -> calib arrays (make writes tmpdir/model.onnx and
    any extra files it lists in info["extra_files"]), writes calib.npz and
    meta.json, and renames the directory into place."""
    tmp = tempfile.mkdtemp(prefix=name + ".tmp-", dir=root)
    try:
        t0 = time.time()
        calib = make(tmp)
        np.savez_compressed(os.path.join(tmp, "calib.npz"), **calib)
        meta = dict(info)
        meta.update(describe(os.path.join(tmp, "model.onnx")))
        meta.update({
            "name": name, "stamp": st, "model": "model.onnx", "calib": "calib.npz",
            "calib_arrays": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in calib.items()},
            "bytes": sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)),
            "gen_seconds": round(time.time() - t0, 2),
        })
        missing = [i["name"] for i in meta["inputs"] if i["name"] not in calib]
        if missing:
            raise RuntimeError("%s: calibration data lacks inputs %s" % (name, missing))
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        dest = os.path.join(root, name)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.rename(tmp, dest)
        return meta
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_manifest(root, fname, entries):
    tmp = os.path.join(root, fname + ".tmp")
    with open(tmp, "w") as f:
        json.dump(entries, f, indent=1)
        f.write("\n")
    os.replace(tmp, os.path.join(root, fname))
