"""LLM-scale decoders for the scale benchmarks (issue 20): random init, external data.

Usage (from the repository root; the big one writes 4.4 GB, peaks at about
5.5 GiB of memory and takes minutes, so run it niced):

    OMP_NUM_THREADS=1 nice -n 10 /usr/bin/python3 testdata/exports/llm.py --size 128m|tinyllama [--dir DIR]

Needs Debian's python3-torch, python3-onnx and numpy. Writes, in the export
cache (DIR, default $ONNX_CRIA_EXPORTS or ~/.cache/onnx-cria/exports), the
entry llama_128m or tinyllama_1b:

  model.onnx        the graph (opset 17), input "input_ids" int64 [batch, sequence],
                    output "logits" float32 [batch, sequence, 32000]
  model_seq128.onnx the same graph with the sequence axis fixed at 128 (for
                    work that precedes dynamic sequence support; issue 18 item 1)
  model.onnx.data   every initializer, in one external data file that both graphs use
  calib.npz         input_ids [32, 128]: 32 calibration sequences of 128 tokens
  eval.npz          input_ids [8, 128]: held-out sequences
  meta.json         shapes, parameter count, file sizes, and the generation's
                    time per phase and peak resident memory

The graph is torch.onnx.export's, made with export_params=False from a
model whose projection weights were never written; the weights are then
generated and written tensor by tensor. The exporter still touches every
parameter once (a transient copy the size of the weights), so the peak
resident memory is about 1.3x the data file: 5.5 GiB for tinyllama, 1 GiB
for 128m.
Architecture (torch_models.Llama): token embedding, RMSNorm, rotate-half RoPE,
grouped-query attention, SwiGLU, untied LM head, no biases. tinyllama has
TinyLlama-1.1B's shape (22 layers, hidden 2048, FFN 5632, 32 query heads over
4 KV heads, vocabulary 32000: 1.1B parameters, a 4.4 GB data file); 128m is
a 12-layer sibling (hidden 768, FFN 2048, 12 query heads over 4 KV heads,
125M parameters). The weights are random (normal, std 0.02; norm weights
near 1) and the token ids uniform: the models carry no language, so compare
outputs before and after pruning rather than perplexity. Entries are kept
when their stamp matches (see cache.py); nothing here is committed.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cache  # noqa: E402

SOURCES = ["llm.py", "torch_models.py", "onnx_graphs.py", "cache.py"]

SIZES = {
    "128m": ("llama_128m", {"vocab": 32000, "d": 768, "layers": 12, "heads": 12, "kv_heads": 4, "ffn": 2048}),
    "tinyllama": ("tinyllama_1b", {"vocab": 32000, "d": 2048, "layers": 22, "heads": 32, "kv_heads": 4, "ffn": 5632}),
}
DATA = "model.onnx.data"
SEQ = 128
STATIC = "model_seq%d.onnx" % SEQ


def attach_weights(path, shapes, data_name, seed, placed=None):
    """Turns the parameter inputs of an export made with export_params=False
    into initializers in one external data file. Without placed, their data
    (seeded normal, std 0.02; 1-D norm weights near 1) is written tensor by
    tensor, in chunks, never all in memory at once; with placed
    (what the first call returned: name -> (offset, length)) the model
    refers to the data already written. Returns that placement."""
    import onnx
    from onnx import TensorProto
    m = onnx.load(path)
    keep, out = [], None
    if placed is None:
        placed = {}
        out = open(os.path.join(os.path.dirname(path), data_name), "wb")
    try:
        for v in m.graph.input:
            if v.name not in shapes:
                keep.append(v)
                continue
            dims = shapes[v.name]
            if out is not None:
                rng = np.random.default_rng([seed, list(shapes).index(v.name)])
                n, offset = int(np.prod(dims)), out.tell()
                for lo in range(0, n, 1 << 24):
                    x = rng.standard_normal(min(1 << 24, n - lo), dtype=np.float32) * np.float32(0.02)
                    if len(dims) == 1:
                        x += np.float32(1.0)
                    out.write(x.tobytes())
                placed[v.name] = (offset, out.tell() - offset)
            t = m.graph.initializer.add()
            t.name, t.data_type = v.name, TensorProto.FLOAT
            t.dims.extend(dims)
            offset, length = placed[v.name]
            for key, val in (("location", data_name), ("offset", str(offset)), ("length", str(length))):
                e = t.external_data.add()
                e.key, e.value = key, val
            t.data_location = TensorProto.EXTERNAL
    finally:
        if out is not None:
            out.close()
    del m.graph.input[:]
    m.graph.input.extend(keep)
    onnx.save(m, path + ".tmp")
    os.replace(path + ".tmp", path)
    return placed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", required=True, choices=sorted(SIZES))
    ap.add_argument("--dir", default=cache.default_dir())
    args = ap.parse_args()
    import torch
    import torch_models as tm
    torch.set_num_threads(1)
    name, cfg = SIZES[args.size]
    st = cache.stamp(SOURCES)
    with cache.locked(args.dir):
        meta = cache.current(args.dir, name, st)
        if meta is not None:
            print("%s is current (%s)" % (name, os.path.join(args.dir, name)))
            return
        phases = {}

        def make(tmp):
            # The traced model's projection weights are torch.empty and never
            # written (their pages stay unmapped); the export takes them as
            # graph inputs and attach_weights fills them in, streaming.
            t0 = time.time()
            torch.manual_seed(20)
            model = tm.Llama(cfg, linear=tm.InOut).eval()
            with torch.no_grad():  # one distinct element each, or the exporter merges the equal tensors
                for k, p in enumerate(model.parameters()):
                    p.view(-1)[0] = k + 2.0
            shapes = {n: list(p.shape) for n, p in model.named_parameters()}
            phases["params"] = int(sum(p.numel() for p in model.parameters()))
            graphs = {}
            for fname, t, axes in (("model.onnx", 8, {0: "batch", 1: "sequence"}), (STATIC, SEQ, {0: "batch"})):
                graphs[fname] = os.path.join(tmp, fname)
                tm.export(model, (torch.randint(0, cfg["vocab"], (1, t)),), graphs[fname], 17, ["input_ids"], ["logits"],
                          {"input_ids": axes, "logits": axes}, export_params=False)
            phases["export_s"] = round(time.time() - t0, 1)
            del model
            t0 = time.time()
            placed = attach_weights(graphs["model.onnx"], shapes, DATA, 20)
            attach_weights(graphs[STATIC], shapes, DATA, 20, placed)
            phases["data_bytes"] = os.path.getsize(os.path.join(tmp, DATA))
            phases["weights_s"] = round(time.time() - t0, 1)
            rng = np.random.default_rng(20)
            np.savez_compressed(os.path.join(tmp, "eval.npz"), input_ids=rng.integers(0, cfg["vocab"], size=(8, 128), dtype=np.int64))
            phases["peak_rss_mib"] = round(cache.peak_rss_mib())
            if args.size == "tinyllama" and phases["data_bytes"] <= 2 ** 31:
                raise RuntimeError("the data file is %d bytes, not over 2 GiB" % phases["data_bytes"])
            return {"input_ids": rng.integers(0, cfg["vocab"], size=(32, 128), dtype=np.int64)}

        info = {"exercises": "Llama decoder at %s scale, random init, external data" % args.size, "config": cfg,
                "issue20": True, "torch": torch.__version__, "generator": "testdata/exports/llm.py",
                "extra_files": [DATA, STATIC, "eval.npz"], "generation": phases}
        t0 = time.time()
        meta = cache.build(args.dir, name, st, make, info)
        print("built %s: %d parameters, data file %.2f GiB, %.0f s, peak RSS %.0f MiB (%s)" % (
            name, phases["params"], phases["data_bytes"] / 2**30, time.time() - t0, phases["peak_rss_mib"],
            os.path.join(args.dir, name)))


if __name__ == "__main__":
    main()
