"""The export zoo: real-world export shapes, structure only, random weights.

Usage (from the repository root):

    OMP_NUM_THREADS=1 /usr/bin/python3 testdata/exports/generate.py [--dir DIR] [--only A,B] [--bench] [--list]

Needs Debian's python3-torch, python3-torchvision, python3-onnx and numpy.
Writes DIR/NAME/{model.onnx, calib.npz, meta.json} for every model below and
DIR/manifest.json (the small set) or DIR/manifest-bench.json (--bench: the
benchmark-only models). DIR defaults to $ONNX_CRIA_EXPORTS, else
~/.cache/onnx-cria/exports. Entries whose meta.json stamp matches the
generator sources and library versions are kept, so a second run does
nothing; a changed generator rebuilds them. Nothing here is committed.

Every model has seeded random weights and carries no accuracy: the zoo shows
whether the toolchain handles the structures real exports have (the issue
items each model exercises are in its meta.json), not how well it prunes.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cache  # noqa: E402

SOURCES = ["generate.py", "torch_models.py", "onnx_graphs.py", "cache.py"]


def torch_entry(name, builder, opset, exercises, items, bench=False):
    return {"name": name, "kind": "torch", "build": builder, "opset": opset,
            "exercises": exercises, "issue18": items, "bench": bench}


def onnx_entry(name, builder, exercises, items):
    return {"name": name, "kind": "onnx", "build": builder, "exercises": exercises, "issue18": items, "bench": False}


def entries():
    import onnx_graphs as og
    import torch_models as tm
    out = []
    for opset in (9, 10, 13):
        out.append(torch_entry("mlp_opset%d" % opset, tm.small_mlp, opset, "Linear-ReLU MLP 64-128-64-10 (Gemm), dynamic batch", [2] if opset < 11 else []))
        out.append(torch_entry("cnn_opset%d" % opset, tm.small_cnn, opset,
                               "Conv-BN(folded)-ReLU, MaxPool, residual Add, strided Conv, GlobalAveragePool, Linear; 3x32x32, dynamic batch",
                               [2] if opset < 11 else []))
    for opset in (13, 17):
        out.append(torch_entry("encoder_opset%d" % opset, lambda o, r: tm.encoder(o, False, r), opset,
                               "nn.TransformerEncoder (2 post-LN layers, d 64, 4 heads, FFN 128) with src_key_padding_mask, "
                               "learned positions, masked mean pooling; dynamic batch and sequence", [1]))
        out.append(torch_entry("encoder_cloned_opset%d" % opset, lambda o, r: tm.encoder(o, True, r), opset,
                               "the same with the layers left as nn.TransformerEncoder's deep copies: the export shares "
                               "their equal initializers between layers", [1, 8]))
        out.append(torch_entry("gpt2_opset%d" % opset, tm.gpt2, opset,
                               "GPT-2-style decoder (2 pre-LN blocks, d 64, 4 heads): packed QKV Linear split, causal and padding "
                               "masks, learned positions, tanh-GELU MLP, LM head tied to the embedding; dynamic batch and sequence", [1]))
        out.append(torch_entry("llama_kv_opset%d" % opset, tm.llama_kv, opset,
                               "Llama decoder with a KV cache as optimum exports it: input_ids, attention_mask [batch, total], "
                               "position_ids, past_key_values.N.key/value inputs and present.N.key/value outputs; RMSNorm, RoPE, "
                               "GQA (4 query / 2 KV heads), SwiGLU", [7]))
        out.append(torch_entry("shufflenet_v2_opset%d" % opset, lambda o, r: tm.torchvision_model("shufflenet_v2", o, r), opset,
                               "torchvision shufflenet_v2_x0_5, 10 classes, 3x64x64: channel shuffle (Reshape-Transpose-Reshape), "
                               "Split/Concat branches", [3]))
        out.append(torch_entry("mobilenet_v3_small_opset%d" % opset, lambda o, r: tm.torchvision_model("mobilenet_v3_small", o, r), opset,
                               "torchvision mobilenet_v3_small at half width, 10 classes, 3x64x64: hard-swish, squeeze-excite with hard-sigmoid, "
                               "depthwise Convs", [10]))
        out.append(torch_entry("vit_small_opset%d" % opset, lambda o, r: tm.torchvision_model("vit_small", o, r), opset,
                               "torchvision VisionTransformer shrunk: 4 layers, hidden 192, 3 heads, MLP 768, 64x64 image "
                               "(16 patches + class token); nn.MultiheadAttention's packed in_proj", [4]))
    out.append(onnx_entry("ort_attention", lambda r: og.bert_contrib(r, "Attention"),
                          "BERT-style encoder as ORT's optimizer fuses it: com.microsoft Attention (packed QKV weight), "
                          "SkipLayerNormalization, BiasGelu; int32 mask", [5]))
    out.append(onnx_entry("ort_mha", lambda r: og.bert_contrib(r, "MultiHeadAttention"),
                          "the same with q/k/v MatMuls into com.microsoft MultiHeadAttention (packed bias) and FastGelu with bias", [5]))
    out.append(onnx_entry("ort_gqa", og.gqa_decoder,
                          "Llama-style decoder as ORT's GenAI builder writes it: SimplifiedLayerNormalization, RotaryEmbedding, "
                          "GroupQueryAttention (4/2 heads), SkipSimplifiedLayerNormalization, SwiGLU", [5]))
    out.append(onnx_entry("ort_fused_acts", og.fused_activations,
                          "token MLP through com.microsoft Gelu, QuickGelu and FastGelu (no bias), residual Add", [5]))
    out.append(onnx_entry("qdq_mlp", og.qdq_mlp,
                          "QDQ MLP: uint8 activation Q/DQ pairs, int8 per-tensor and per-channel MatMul weights, uint8 "
                          "per-channel Gemm weight with zero points (opset 13)", [6]))
    out.append(onnx_entry("qdq_cnn", og.qdq_cnn,
                          "QDQ CNN: int8 per-channel Conv weights with an int32 dequantized bias, uint8 per-tensor Conv weight, "
                          "activation Q/DQ pairs (opset 13)", [6]))
    out.append(onnx_entry("matmulnbits_mlp", og.matmulnbits_mlp,
                          "MLP of com.microsoft MatMulNBits (4 bits, block 32 along K), with and without zero points", [6]))
    out.append(torch_entry("vit_b_16_opset17", lambda o, r: tm.torchvision_model("vit_b_16", o, r), 17,
                           "torchvision vit_b_16 at 224x224 (197 tokens x 768, 86M parameters): the issue-18 item-4 benchmark",
                           [4], bench=True))
    out.append(torch_entry("mobilenet_v3_small_full_opset17", lambda o, r: tm.torchvision_model("mobilenet_v3_small_full", o, r), 17,
                           "torchvision mobilenet_v3_small at full width, 1000 classes, 224x224: the issue-18 item-10 benchmark "
                           "(ties in the score stage)", [10], bench=True))
    return out


def make_torch(e):
    import torch
    import torch_models as tm

    def make(tmp):
        rng = np.random.default_rng(seed_of(e["name"]))
        model, calib, ins, outs, axes = e["build"](e["opset"], rng)
        tm.run(model, {n: calib[n][:2] for n in ins}, ins)  # the calibration arrays fit the model
        dummy = tuple(torch.from_numpy(calib[n][:2]) for n in ins)
        tm.export(model, dummy, os.path.join(tmp, "model.onnx"), e["opset"], ins, outs, axes)
        return calib
    return make


def make_onnx(e):
    import onnx

    def make(tmp):
        rng = np.random.default_rng(seed_of(e["name"]))
        model, calib = e["build"](rng)
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            onnx.checker.check_model(model)
        onnx.save(model, os.path.join(tmp, "model.onnx"))
        return calib
    return make


def seed_of(name):
    """A seed from the name, stable across runs (Python's hash() is not)."""
    return sum((k + 1) * ord(c) for k, c in enumerate(name))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=cache.default_dir(), help="cache directory (default $%s or %s)" % (cache.ENV_DIR, cache.default_dir()))
    ap.add_argument("--only", default="", help="comma-separated names")
    ap.add_argument("--bench", action="store_true", help="the benchmark-only models (vit_b_16 at 224) instead of the small set")
    ap.add_argument("--list", action="store_true", help="list the models and exit")
    args = ap.parse_args()
    all_entries = [e for e in entries() if e["bench"] == args.bench]
    if args.list:
        for e in all_entries:
            print("%-28s %s" % (e["name"], e["exercises"]))
        return
    only = set(filter(None, args.only.split(",")))
    unknown = only - {e["name"] for e in all_entries}
    if unknown:
        raise SystemExit("unknown model(s): %s (see --list)" % ", ".join(sorted(unknown)))
    import torch
    torch.set_num_threads(1)
    st = cache.stamp(SOURCES)
    root = args.dir
    manifest = []
    with cache.locked(root):
        t0 = time.time()
        built = 0
        for e in all_entries:
            if only and e["name"] not in only:
                continue
            meta = cache.current(root, e["name"], st)
            if meta is None:
                info = {"exercises": e["exercises"], "issue18_items": e["issue18"], "seed": seed_of(e["name"]),
                        "torch": torch.__version__, "generator": "testdata/exports/generate.py"}
                make = make_torch(e) if e["kind"] == "torch" else make_onnx(e)
                meta = cache.build(root, e["name"], st, make, info)
                built += 1
                print("built %-28s %8.1f KiB  %5.1f s" % (e["name"], meta["bytes"] / 1024, meta["gen_seconds"]), flush=True)
            manifest.append({k: meta[k] for k in ("name", "exercises", "issue18_items", "opsets", "inputs", "outputs", "float_params", "bytes")})
        if not only:
            cache.write_manifest(root, "manifest-bench.json" if args.bench else "manifest.json", {"stamp": st, "models": manifest})
        print("%s: %d models, %d built in %.1f s" % (root, len(manifest), built, time.time() - t0))


if __name__ == "__main__":
    main()
