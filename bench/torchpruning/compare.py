"""onnx-cria against Torch-Pruning on the same Fashion-MNIST models and budgets.

Run from the repository root (see README.md beside this file for the setup):

    PYTHONPATH=/path/to/Torch-Pruning OMP_NUM_THREADS=1 GOMAXPROCS=1 \
        nice -n 10 /usr/bin/python3 bench/torchpruning/compare.py --cria /tmp/onnx-cria

Stages (all by default, in this order; each is skipped for results already in
OUT/results.json, so an interrupted run resumes):
  prepare  the three torch models (cnn and mlp with the fixtures' exact weights,
           vgg trained with the fixtures' recipe), their ONNX exports, train.npz
  cria     onnx-cria shrink for every model, target and variant
  tp       Torch-Pruning for every model, target and variant, with the pruning
           ratio searched so that the exported file reaches the same parameter
           reduction; then the same one-epoch fine-tune as onnx-cria's
  frozen   every pruned cnn and vgg file (onnx-cria's after lsq) fine-tuned by
           onnx-cria with BatchNorm frozen (--bn frozen)
  crossft  onnx-cria's cnn and mlp files after lsq fine-tuned by the PyTorch loop
  latency  ORT latency of every ONNX file by one Go code path (./latency)
  report   OUT/results.md, and RESULTS.md and results.json (paths relative to the
           repository) beside this script

Every parameter count is `onnx-cria inspect --json` of an exported file, and
every accuracy `onnx-cria eval` of one (or, for onnx-cria's unrecovered model,
which shrink does not write, the report of the same evaluation code inside
shrink). Python is not part of onnx-cria: this is a cross-check.
"""

import argparse
import copy
import json
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "testdata", "models"))
import common  # noqa: E402
import fmnist_models as fm  # noqa: E402

CALIB = os.path.join(ROOT, "testdata", "data", "fmnist_calib.npz")
EVAL = os.path.join(ROOT, "testdata", "data", "fmnist_eval.npz")
TARGETS = [0.3, 0.5, 0.7]
FT = dict(epochs=1, lr=1e-4, batch=64, n=10000)  # onnx-cria's fine-tuning defaults, 10k images

# onnx-cria variants: name -> extra shrink flags. round-to only changes Conv
# channel steps, so the MLP skips an r1 variant whose auto twin is there.
CRIA_VARIANTS = {
    "default": [],  # whatever the command line's defaults are (obs since 2026-12-07)
    "spectral": ["--criterion", "spectral"],
    "spectral r1": ["--round-to", "1"],
    "magnitude": ["--criterion", "magnitude"],
    "magnitude r1": ["--criterion", "magnitude", "--round-to", "1"],
    "taylor": ["--criterion", "taylor"],
    "taylor r1": ["--criterion", "taylor", "--round-to", "1"],
    "spectral global r1": ["--ranking", "global", "--round-to", "1"],
    "magnitude global r1": ["--criterion", "magnitude", "--ranking", "global", "--round-to", "1"],
}

# Torch-Pruning variants: name -> (importance, global_pruning, iterative_steps, round_to).
TP_VARIANTS = {
    "mag local s5": ("magnitude", False, 5, None),
    "mag local s1": ("magnitude", False, 1, None),
    "mag global s5": ("magnitude", True, 5, None),
    "mag global s1": ("magnitude", True, 1, None),
    "taylor local s5": ("taylor", False, 5, None),
    "taylor local s1": ("taylor", False, 1, None),
    "taylor global s5": ("taylor", True, 5, None),
    "taylor global s1": ("taylor", True, 1, None),
    "mag local s5 r16": ("magnitude", False, 5, 16),
}


class VGG(nn.Module):
    """4 convs 32/32/64/64 with BatchNorm, two MaxPools, FC 128, FC 10."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            fm.conv_bn(1, 32), nn.ReLU(), fm.conv_bn(32, 32), nn.ReLU(), nn.MaxPool2d(2),
            fm.conv_bn(32, 64), nn.ReLU(), fm.conv_bn(64, 64), nn.ReLU(), nn.MaxPool2d(2))
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(self.flatten(self.features(x)))))


VGG_CFG = dict(epochs=2, batch=128, lr=3e-3, wd=1e-4)


# ---------------------------------------------------------------- tools

class Cria:
    def __init__(self, exe, threads):
        self.exe, self.threads = exe, str(threads)

    def run(self, *args, check=True):
        p = subprocess.run([self.exe] + list(args), cwd=ROOT, capture_output=True, text=True)
        if check and p.returncode != 0:
            raise RuntimeError("onnx-cria %s: %s" % (" ".join(args), p.stderr.strip() or p.stdout.strip()))
        return p

    def eval(self, path):
        out = self.run("eval", path, EVAL, "--json", "--quiet", "--threads", self.threads).stdout
        r = json.loads(out)
        return {"accuracy": r["value"], "correct": r["correct"]}

    def params(self, path):
        return json.loads(self.run("inspect", path, "--json").stdout)["params"]

    def version(self):
        return self.run("version").stdout.strip()


def load_npz(path):
    d = np.load(path)
    return d["input"], d["labels"]


def export(model, path):
    """ONNX opset 17, dynamic batch; BatchNormalization kept as inference nodes, as the fixtures."""
    model.eval()
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    mode = torch.onnx.TrainingMode.PRESERVE if has_bn else torch.onnx.TrainingMode.EVAL
    tmp = path + ".tmp"
    torch.onnx.export(model, (torch.zeros(2, 1, 28, 28),), tmp, opset_version=17, training=mode,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, do_constant_folding=True)
    os.replace(tmp, path)


def count_params(model):
    """What onnx-cria counts in the export: parameters and BatchNorm running statistics."""
    n = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n += m.running_mean.numel() + m.running_var.numel()
    return int(n)


def widths(model):
    return [m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
            for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def load_onnx_weights(model, path):
    m = onnx.load(path)
    sd = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in m.graph.initializer}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise SystemExit("%s does not match the torch module: missing %s, unexpected %s" % (path, missing, unexpected))
    return model.eval()


# ---------------------------------------------------------------- prepare

MODELS = ("cnn", "vgg", "mlp")
# Fixtures whose exact weights are loaded into their torch modules.
FIXTURES = {"cnn": fm.CNN, "mlp": fm.MLP, "dwcnn": fm.DWCNN}


def prepare(out, cria, res, names):
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    x_tr, y_tr, x_te, y_te = common.load_fmnist()
    train_npz = os.path.join(out, "train.npz")
    if not os.path.exists(train_npz):
        np.savez(train_npz + ".tmp.npz", input=x_tr[:FT["n"]], labels=y_tr[:FT["n"]])
        os.replace(train_npz + ".tmp.npz", train_npz)
    ex, ey = load_npz(EVAL)
    models = {}
    for name in names:
        pt = os.path.join(out, "models", name + ".pt")
        if name == "vgg":
            model = VGG()
            if os.path.exists(pt):
                model.load_state_dict(torch.load(pt))
            else:
                common.seed_everything(fm.SEED)
                model = VGG()
                secs = fm.train(model, VGG_CFG, x_tr, y_tr, x_te, y_te)
                torch.save(model.state_dict(), pt)
                res["vgg_training"] = dict(VGG_CFG, seconds=round(secs, 1),
                                           test_accuracy_full=float((fm.predict(model, x_te).argmax(1) == y_te).mean()))
        else:
            model = load_onnx_weights(FIXTURES[name](), os.path.join(ROOT, "testdata", "models", name, "model.onnx"))
        model.eval()
        path = os.path.join(out, "models", name + ".onnx")
        export(model, path)
        torch_correct = int((common.argmax_lowest(fm.predict(model, ex)) == ey).sum())
        ev = cria.eval(path)
        if ev["correct"] != torch_correct:
            raise SystemExit("%s: ORT %d correct, torch %d" % (name, ev["correct"], torch_correct))
        res["originals"].setdefault(name, {}).update(  # keeps a measured latency
            {"onnx": path, "params": cria.params(path), "torch_params": count_params(model),
             "widths": widths(model), **ev})
        print("%s: %s, %d params" % (name, ev, res["originals"][name]["params"]), flush=True)
        models[name] = model
    return models, train_npz


# ---------------------------------------------------------------- onnx-cria

def cria_one(cria, name, inp, target, variant, flags, out, train_npz):
    base = os.path.join(out, "cria", "%s-%d-%s" % (name, round(target * 100), variant.replace(" ", "-")))
    common_flags = ["--calib", CALIB, "--no-latency", "--quiet", "--threads", cria.threads] + flags
    rec = {"tool": "onnx-cria", "model": name, "target": target, "variant": variant}
    t0 = time.time()
    p = cria.run("shrink", inp, base + ".onnx", "--target", str(target), "--eval", EVAL,
                 "--report", base + ".json", *common_flags, check=False)
    rec["prune_seconds"] = round(time.time() - t0, 2)
    if p.returncode != 0:
        msg = p.stderr.strip()
        m = re.search(r"at most ([0-9.]+)", msg)
        if not m:
            raise RuntimeError(msg)
        rec["refused"] = msg
        target = math.floor(float(m.group(1)) * 1000) / 1000  # the reachable maximum
        rec["ran_at"] = target
        t0 = time.time()
        cria.run("shrink", inp, base + ".onnx", "--target", str(target), "--eval", EVAL,
                 "--report", base + ".json", *common_flags)
        rec["prune_seconds"] = round(time.time() - t0, 2)
    rep = json.load(open(base + ".json"))
    rec["none"] = {"accuracy": rep["eval_pruned"]["value"], "correct": rep["eval_pruned"]["correct"]}
    rec["lsq"] = cria.eval(base + ".onnx")
    assert rec["lsq"]["correct"] == rep["eval_after"]["correct"], base
    rec["onnx"] = base + ".onnx"
    rec["params"] = cria.params(base + ".onnx")
    rec["widths"] = [g["width_after"] for g in rep["groups"]]
    t0 = time.time()
    cria.run("shrink", inp, base + "-ft.onnx", "--target", str(target), "--finetune", train_npz,
             "--ft-epochs", str(FT["epochs"]), "--report", base + "-ft.json", *common_flags)
    rec["ft_total_seconds"] = round(time.time() - t0, 2)
    rec["ft"] = cria.eval(base + "-ft.onnx")
    rec["onnx_ft"] = base + "-ft.onnx"
    assert cria.params(base + "-ft.onnx") == rec["params"], base
    return rec


def run_cria(out, cria, res, train_npz, names, variants):
    os.makedirs(os.path.join(out, "cria"), exist_ok=True)
    for name in names:
        for target in TARGETS:
            for variant, flags in CRIA_VARIANTS.items():
                if variants and variant not in variants:
                    continue
                if name == "mlp" and variant.endswith(" r1") and variant[:-3] in CRIA_VARIANTS:
                    continue
                key = "cria|%s|%g|%s" % (name, target, variant)
                if key in res["runs"]:
                    continue
                rec = cria_one(cria, name, res["originals"][name]["onnx"], target, variant, flags, out, train_npz)
                res["runs"][key] = rec
                save(out, res)
                print(key, rec["params"], rec["none"]["accuracy"], rec["lsq"]["accuracy"], rec["ft"]["accuracy"],
                      "%.1fs" % rec["prune_seconds"], flush=True)


# ---------------------------------------------------------------- Torch-Pruning

def taylor_grads(model, x, y, batch=256):
    """Gradients of the mean cross-entropy on the calibration set (BatchNorm in eval mode)."""
    model.eval()
    model.zero_grad()
    for i in range(0, len(x), batch):
        loss = F.cross_entropy(model(x[i:i + batch]), y[i:i + batch], reduction="sum") / len(x)
        loss.backward()


def tp_prune(tp, model, spec, ratio, cx, cy):
    imp_name, global_, steps, round_to = spec
    model = copy.deepcopy(model).eval()
    imp = (tp.importance.GroupMagnitudeImportance(p=2) if imp_name == "magnitude"
           else tp.importance.GroupTaylorImportance())
    ignored = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 10]
    pruner = tp.pruner.BasePruner(model, cx[:2], importance=imp, pruning_ratio=ratio, global_pruning=global_,
                                  iterative_steps=steps, ignored_layers=ignored, round_to=round_to)
    for _ in range(steps):
        if imp_name == "taylor":
            taylor_grads(model, cx, cy)
        pruner.step()
    model.zero_grad(set_to_none=True)
    return model


def tp_search(tp, model, spec, target, p0, cx, cy, iters=8):
    """The smallest pruning ratio (to about 0.001) whose model reaches the target
    reduction, by bisection in a bracket around 1 - sqrt(1 - target) (channels pruned
    on both sides of a layer), and the reduction it gives; parameters are counted as
    onnx-cria counts them."""
    extra = p0 - count_params(model)  # the export's own float constants
    def reduction(r):
        return 1 - (count_params(tp_prune(tp, model, spec, r, cx, cy)) + extra) / p0
    guess = 1 - math.sqrt(1 - target)
    lo, hi = max(0.0, guess - 0.15), min(0.95, guess + 0.15)
    if lo > 0 and reduction(lo) >= target:
        lo = 0.0
    best = (hi, reduction(hi))
    if best[1] < target:
        hi = 0.95
        best = (hi, reduction(hi))
        if best[1] < target:
            return best
    for _ in range(iters):
        mid = (lo + hi) / 2
        red = reduction(mid)
        if red >= target:
            hi = mid
            if red <= best[1]:
                best = (mid, red)
        else:
            lo = mid
    return best


def finetune_loop(forward, params, x, y, seed=0):
    """onnx-cria's fine-tuning defaults in PyTorch: Adam, lr 1e-4 with a cosine decay to 0
    over the run, batch 64 (last batch partial), one epoch, seeded shuffle. The caller
    puts BatchNorm in train mode (batch statistics), as onnx-cria's default does."""
    opt = torch.optim.Adam(params, lr=FT["lr"])
    total = math.ceil(len(x) / FT["batch"]) * FT["epochs"]
    gen = torch.Generator().manual_seed(seed)
    k = 0
    t0 = time.time()
    for _ in range(FT["epochs"]):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), FT["batch"]):
            for g in opt.param_groups:
                g["lr"] = FT["lr"] * 0.5 * (1 + math.cos(math.pi * k / total))
            idx = perm[i:i + FT["batch"]]
            loss = F.cross_entropy(forward(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            k += 1
    return time.time() - t0


def finetune_torch(model, x, y):
    """A copy of model fine-tuned with every parameter trained."""
    model = copy.deepcopy(model).train()
    secs = finetune_loop(model, list(model.parameters()), x, y)
    return model.eval(), secs


def finetune_onnx_in_torch(path, out_path, x, y):
    """Fine-tune an ONNX file in PyTorch (bench/torchstep's op-by-op runner: the tensors
    onnx-cria trains, BatchNorm with batch statistics) and write the result as ONNX."""
    sys.path.insert(0, os.path.join(ROOT, "bench", "torchstep"))
    import torchstep
    g = torchstep.Graph(path, bn_train=True)
    secs = finetune_loop(g.forward, list(g.params.values()), x, y)
    for t in g.m.graph.initializer:
        v = g.params.get(t.name, g.inits[t.name])
        t.CopyFrom(numpy_helper.from_array(v.detach().numpy(), t.name))
    onnx.save(g.m, out_path + ".tmp")
    os.replace(out_path + ".tmp", out_path)
    return secs


def run_crossft(out, cria, res, train_npz):
    """onnx-cria's lsq outputs fine-tuned by the PyTorch loop that fine-tunes
    Torch-Pruning's models: separates the pruning from the trainer. The cnn and the
    mlp only (the op-by-op runner is slow on the vgg)."""
    tx, ty = (torch.from_numpy(a) for a in load_npz(train_npz))
    for key, rec in res["runs"].items():
        if rec["tool"] != "onnx-cria" or rec["model"] == "vgg" or "ft_torch" in rec:
            continue
        dst = rec["onnx"][:-len(".onnx")] + "-torchft.onnx"
        rec["ft_torch_seconds"] = round(finetune_onnx_in_torch(rec["onnx"], dst, tx, ty), 2)
        rec["ft_torch"] = cria.eval(dst)
        save(out, res)
        print(key, "lsq", rec["lsq"]["accuracy"], "onnx-cria ft", rec["ft"]["accuracy"],
              "torch ft", rec["ft_torch"]["accuracy"], flush=True)


def tp_one(tp, cria, name, model, target, variant, out, cx, cy, tx, ty, p0):
    spec = TP_VARIANTS[variant]
    base = os.path.join(out, "tp", "%s-%d-%s" % (name, round(target * 100), variant.replace(" ", "-")))
    t0 = time.time()
    ratio, red = tp_search(tp, model, spec, target, p0, cx, cy)
    search = time.time() - t0
    t0 = time.time()
    pruned = tp_prune(tp, model, spec, ratio, cx, cy)
    rec = {"tool": "torch-pruning", "model": name, "target": target, "variant": variant,
           "pruning_ratio": round(ratio, 5), "search_seconds": round(search, 2),
           "prune_seconds": round(time.time() - t0, 2), "widths": widths(pruned)}
    export(pruned, base + ".onnx")
    rec["onnx"], rec["params"], rec["none"] = base + ".onnx", cria.params(base + ".onnx"), cria.eval(base + ".onnx")
    # The export's own float constants (ReLU6's Clip bounds) count in ONNX and
    # not in torch: the original shows by how much.
    extra = p0 - count_params(model)
    if rec["params"] != count_params(pruned) + extra:
        raise RuntimeError("%s: onnx-cria counts %d, the torch module %d (+%d)" % (base, rec["params"], count_params(pruned), extra))
    tuned, secs = finetune_torch(pruned, tx, ty)
    rec["ft_seconds"] = round(secs, 2)
    export(tuned, base + "-ft.onnx")
    rec["onnx_ft"], rec["ft"] = base + "-ft.onnx", cria.eval(base + "-ft.onnx")
    return rec


def run_tp(out, cria, res, models, train_npz, variants):
    import torch_pruning as tp
    res["torch_pruning"] = {"version": getattr(tp, "__version__", "?"), "path": os.path.dirname(tp.__file__)}
    os.makedirs(os.path.join(out, "tp"), exist_ok=True)
    cx, cy = (torch.from_numpy(a) for a in load_npz(CALIB))
    tx, ty = (torch.from_numpy(a) for a in load_npz(train_npz))
    for name in models:
        for target in TARGETS:
            for variant in TP_VARIANTS:
                if variants and variant not in variants:
                    continue
                if name == "mlp" and "r16" in variant:
                    continue
                key = "tp|%s|%g|%s" % (name, target, variant)
                if key in res["runs"]:
                    continue
                rec = tp_one(tp, cria, name, models[name], target, variant, out, cx, cy, tx, ty,
                             res["originals"][name]["params"])
                res["runs"][key] = rec
                save(out, res)
                print(key, rec["params"], rec["none"]["accuracy"], rec["ft"]["accuracy"], rec["widths"],
                      "%.1fs" % rec["prune_seconds"], flush=True)


def run_frozen(out, cria, res, train_npz):
    """Both sides' pruned files (onnx-cria's after lsq) fine-tuned by onnx-cria with
    BatchNorm frozen (--bn frozen), the same trainer and settings otherwise. Only the
    models with BatchNorm: for the MLP it is the fine-tune above."""
    for key, rec in res["runs"].items():
        if rec["model"] == "mlp" or "ft_frozen" in rec:
            continue
        dst = rec["onnx"][:-len(".onnx")] + "-ftfrozen.onnx"
        t0 = time.time()
        cria.run("finetune", rec["onnx"], dst, "--data", train_npz, "--epochs", str(FT["epochs"]), "--bn", "frozen",
                 "--quiet", "--threads", cria.threads)
        rec["ft_frozen_seconds"] = round(time.time() - t0, 2)
        rec["ft_frozen"] = cria.eval(dst)
        save(out, res)
        print(key, "fine-tuned, BatchNorm frozen", rec["ft_frozen"]["accuracy"], flush=True)


# ---------------------------------------------------------------- latency and report

def run_latency(out, res, threads, passes):
    files = [o["onnx"] for o in res["originals"].values()] + [r["onnx"] for r in res["runs"].values()]
    cmd = ["go", "run", "./torchpruning/latency", "--data", CALIB, "--threads", str(threads),
           "--passes", str(passes)] + files
    p = subprocess.run(cmd, cwd=os.path.join(ROOT, "bench"), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    lat = {r["file"]: r["median_ms"] for r in json.loads(p.stdout)}
    for rec in list(res["originals"].values()) + list(res["runs"].values()):
        rec["latency_ms"] = lat[rec["onnx"]]
    res["latency"] = {"threads": threads, "passes": passes}
    save(out, res)


def save(out, res):
    path = os.path.join(out, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(res, f, indent=1)
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cria", default="/tmp/onnx-cria", help="the onnx-cria binary")
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "torchpruning"))
    ap.add_argument("--threads", type=int, default=1, help="ORT and torch threads")
    ap.add_argument("--passes", type=int, default=3, help="latency passes")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="models: cnn, vgg, mlp (the first comparison) and dwcnn, comma-separated")
    ap.add_argument("--cria-variants", default="", help="onnx-cria variants to run (default: all)")
    ap.add_argument("--tp-variants", default="", help="Torch-Pruning variants to run (default: all)")
    ap.add_argument("stages", nargs="*", default=["prepare", "cria", "tp", "frozen", "crossft", "latency", "report"])
    a = ap.parse_args()
    common.reexec_with_malloc_tunables()
    torch.set_num_threads(a.threads)
    cria = Cria(os.path.abspath(a.cria), a.threads)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "results.json")
    res = json.load(open(path)) if os.path.exists(path) else {"originals": {}, "runs": {}}
    res["onnx_cria"] = cria.version()
    res["torch"] = torch.__version__
    names = [m for m in a.models.split(",") if m]
    pick = lambda v: set(x for x in v.split(",") if x)  # noqa: E731
    models, train_npz = prepare(a.out, cria, res, names)
    save(a.out, res)
    if "cria" in a.stages:
        run_cria(a.out, cria, res, train_npz, names, pick(a.cria_variants))
    if "tp" in a.stages:
        run_tp(a.out, cria, res, models, train_npz, pick(a.tp_variants))
    if "frozen" in a.stages:
        run_frozen(a.out, cria, res, train_npz)
    if "crossft" in a.stages:
        run_crossft(a.out, cria, res, train_npz)
    if "latency" in a.stages:
        run_latency(a.out, res, a.threads, a.passes)
    if "report" in a.stages:
        import report
        report.write(a.out, res, publish=HERE, root=ROOT)


if __name__ == "__main__":
    main()
