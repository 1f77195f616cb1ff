"""Fashion-MNIST fixtures for onnx-cria: mlp, cnn and dwcnn.

Rerun from the repository root with:

    OMP_NUM_THREADS=1 /usr/bin/python3 testdata/models/fmnist_models.py [mlp] [cnn] [dwcnn]

(no arguments: all three). Needs Debian's python3-torch, python3-onnx, numpy
and dataset-fashion-mnist (IDX gzip files; FMNIST_DIR overrides their folder).
Installing Debian's libopenblas0 makes torch much faster than the reference BLAS.

Writes, for each model NAME:
  testdata/models/NAME/model.onnx   opset 17, input "input" float32 [N,1,28,28],
                                    output "logits" float32 [N,10], batch axis dynamic
  testdata/models/NAME/meta.json    accuracy on the evaluation subset, structure facts
and the data shared by all three:
  testdata/data/fmnist_calib.npz    input [1024,1,28,28], labels [1024] (seeded training samples)
  testdata/data/fmnist_eval.npz     input [2000,1,28,28], labels [2000] (seeded test samples)
Pixels are uint8/255 as float32, with no other normalisation.

Models:
  mlp    Flatten -> Gemm 784-512 -> Relu -> Gemm 512-256 -> Relu -> Gemm 256-10
  cnn    Conv/BatchNormalization/Relu stem, MaxPool, residual blocks (Conv-BN-Relu-
         Conv-BN + identity Add, Relu), GlobalAveragePool, Flatten, Gemm; exported with
         TrainingMode.PRESERVE from eval mode, so BatchNormalization stays a node in
         inference form (one output, running statistics)
  dwcnn  MobileNetV2-style: inverted residual blocks (1x1 expand -> 3x3 depthwise,
         group = channels -> 1x1 project, Add when shapes match), ReLU6 (Clip),
         BatchNormalization nodes, squeeze-and-excitation blocks (GlobalAveragePool ->
         1x1 Conv reduce -> Relu -> 1x1 Conv expand -> Sigmoid -> Mul)
"""

import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SEED = 0
CALIB_N = 1024
EVAL_N = 2000
OPSET = 17
THREADS = int(os.environ.get("FMNIST_THREADS", 1))


# ---------------------------------------------------------------- models

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(784, 512)
        self.fc2 = nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.flatten(x)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def conv_bn(cin, cout, k=3, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a = conv_bn(c, c)
        self.b = conv_bn(c, c)

    def forward(self, x):
        y = F.relu(self.a(x))
        y = self.b(y)
        return F.relu(x + y)


class CNN(nn.Module):
    def __init__(self, c1=16, c2=32, c3=64):
        super().__init__()
        self.stem = conv_bn(1, c1)
        self.pool1 = nn.MaxPool2d(2)                  # 28 -> 14
        self.res1 = ResBlock(c1)
        self.down = conv_bn(c1, c2)
        self.pool2 = nn.MaxPool2d(2)                  # 14 -> 7
        self.res2 = ResBlock(c2)
        self.expand = conv_bn(c2, c3)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c3, 10)

    def forward(self, x):
        x = self.pool1(F.relu(self.stem(x)))
        x = self.res1(x)
        x = self.pool2(F.relu(self.down(x)))
        x = self.res2(x)
        x = F.relu(self.expand(x))
        return self.fc(self.flatten(self.gap(x)))


class SqueezeExcite(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(c, c // r, 1)
        self.expand = nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        s = self.pool(x)
        s = F.relu(self.reduce(s))
        s = torch.sigmoid(self.expand(s))
        return x * s


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand=4, se=False):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.expand = conv_bn(cin, hidden, k=1)
        self.act1 = nn.ReLU6()
        self.dw = conv_bn(hidden, hidden, k=3, stride=stride, groups=hidden)
        self.act2 = nn.ReLU6()
        self.se = SqueezeExcite(hidden) if se else nn.Identity()
        self.project = conv_bn(hidden, cout, k=1)

    def forward(self, x):
        y = self.act1(self.expand(x))
        y = self.act2(self.dw(y))
        y = self.se(y)
        y = self.project(y)
        return x + y if self.use_res else y


class DWCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(1, 16, stride=2)                   # 28 -> 14
        self.stem_act = nn.ReLU6()
        self.blocks = nn.Sequential(
            InvertedResidual(16, 24, stride=2, expand=2),       # 14 -> 7
            InvertedResidual(24, 24, stride=1, expand=4, se=True),
            InvertedResidual(24, 40, stride=1, expand=4),
            InvertedResidual(40, 40, stride=1, expand=4, se=True),
        )
        self.head = conv_bn(40, 128, k=1)
        self.head_act = nn.ReLU6()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = self.stem_act(self.stem(x))
        x = self.blocks(x)
        x = self.head_act(self.head(x))
        return self.fc(self.flatten(self.gap(x)))


# Per model: constructor, epochs, batch, peak learning rate, keep BN nodes, notes.
CONFIGS = {
    "mlp": dict(make=MLP, epochs=10, batch=128, lr=1e-3, keep_bn=False, wd=0.0,
                arch="Flatten -> Gemm(784,512) -> Relu -> Gemm(512,256) -> Relu -> Gemm(256,10)",
                structures="Flatten, Gemm, Relu: two hidden layers of 512 and 256 neurons"),
    "cnn": dict(make=CNN, epochs=4, batch=128, lr=3e-3, keep_bn=True, wd=1e-4,
                arch="Conv(1,16)-BN-Relu, MaxPool, ResBlock(16), Conv(16,32)-BN-Relu, MaxPool, "
                     "ResBlock(32), Conv(32,64)-BN-Relu, GlobalAveragePool, Flatten, Gemm(64,10); "
                     "ResBlock(c) = Conv-BN-Relu-Conv-BN, Add identity, Relu",
                structures="Conv, BatchNormalization nodes (inference form), Relu, MaxPool, residual Add "
                           "of two dynamic tensors coupling channels across blocks, GlobalAveragePool, Flatten, Gemm"),
    "dwcnn": dict(make=DWCNN, epochs=3, batch=128, lr=3e-3, keep_bn=True, wd=4e-5,
                  arch="Conv(1,16,stride 2)-BN-ReLU6, 4 inverted residual blocks (16->24 expand 2 stride 2; "
                       "24->24 expand 4 +SE +Add; 24->40 expand 4; 40->40 expand 4 +SE +Add), "
                       "Conv1x1(40,128)-BN-ReLU6, GlobalAveragePool, Flatten, Gemm(128,10); SE reduces by 4",
                  structures="pointwise Conv, depthwise Conv (group = channels), BatchNormalization nodes, "
                             "Clip (ReLU6), inverted residual Add, squeeze-and-excitation (GlobalAveragePool, "
                             "1x1 Conv reduce, Relu, 1x1 Conv expand, Sigmoid, Mul with the feature map)"),
}


# ---------------------------------------------------------------- data

def make_subsets(x_tr, y_tr, x_te, y_te):
    rng = np.random.RandomState(SEED)
    ci = np.sort(rng.choice(len(x_tr), CALIB_N, replace=False))
    ei = np.sort(rng.choice(len(x_te), EVAL_N, replace=False))
    calib = {"input": x_tr[ci], "labels": y_tr[ci]}
    evals = {"input": x_te[ei], "labels": y_te[ei]}
    os.makedirs(common.DATA_DIR, exist_ok=True)
    calib_path = os.path.join(common.DATA_DIR, "fmnist_calib.npz")
    eval_path = os.path.join(common.DATA_DIR, "fmnist_eval.npz")
    for path, arrays in ((calib_path, calib), (eval_path, evals)):
        tmp = path + ".%d.tmp.npz" % os.getpid()
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    return calib_path, eval_path, calib, evals, ci, ei


def predict(model, x, batch=500):
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(x[i:i + batch])).numpy())
    return np.concatenate(outs)


# ---------------------------------------------------------------- train + export

def train(model, cfg, x_tr, y_tr, x_te, y_te):
    """Train model in place with the fixtures' recipe (AdamW, OneCycle, cross-entropy;
    cfg's epochs, batch, lr and wd; shuffling seeded with SEED) and return the seconds
    it took. Also used by bench/torchpruning for a model that is not a fixture."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["wd"])
    steps_per_epoch = (len(x_tr) + cfg["batch"] - 1) // cfg["batch"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], epochs=cfg["epochs"],
                                                steps_per_epoch=steps_per_epoch)
    gen = torch.Generator().manual_seed(SEED)
    xt = torch.from_numpy(x_tr)
    yt = torch.from_numpy(y_tr)
    t0 = time.time()
    for epoch in range(cfg["epochs"]):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), cfg["batch"]):
            idx = perm[i:i + cfg["batch"]]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = float((predict(model, x_te).argmax(1) == y_te).mean())
        print("epoch %d loss %.4f test acc %.4f  %.0fs" % (epoch, total / len(xt), acc, time.time() - t0), flush=True)
    return time.time() - t0


def run(name, x_tr, y_tr, x_te, y_te, calib_path, eval_path, evals):
    cfg = CONFIGS[name]
    common.seed_everything(SEED)
    model = cfg["make"]()
    n_params = common.count_params(model)
    print("== %s: %d params" % (name, n_params), flush=True)
    train_seconds = train(model, cfg, x_tr, y_tr, x_te, y_te)

    model.eval()
    full_acc = float((predict(model, x_te).argmax(1) == y_te).mean())
    logits = predict(model, evals["input"])
    pred = common.argmax_lowest(logits)
    correct = int((pred == evals["labels"]).sum())
    total = int(len(pred))

    out_dir = os.path.join(common.MODELS_DIR, name)
    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, "model.onnx")
    dummy = torch.from_numpy(evals["input"][:2])
    training_mode = torch.onnx.TrainingMode.PRESERVE if cfg["keep_bn"] else torch.onnx.TrainingMode.EVAL
    torch.onnx.export(model, (dummy,), model_path, opset_version=OPSET, training=training_mode,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      do_constant_folding=True)
    summ = common.onnx_summary(model_path)
    m = summ["model"]
    if cfg["keep_bn"]:
        bns = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
        assert bns, "BatchNormalization was folded"
        for n in bns:
            assert len(n.output) == 1, "BatchNormalization %s is in training form" % n.name
            for a in n.attribute:
                assert not (a.name == "training_mode" and a.i != 0), n.name
    else:
        assert "BatchNormalization" not in summ["ops"]
    if name == "dwcnn":
        groups = [a.i for n in m.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"]
        assert any(g > 1 for g in groups), "no depthwise Conv in the export"
        assert "Clip" in summ["ops"] and "Sigmoid" in summ["ops"] and "Mul" in summ["ops"]
    inputs, outputs = common.io_spec(m)

    meta = {
        "name": name,
        "task": "classification",
        "opset": summ["opset"],
        "seed": SEED,
        "torch": torch.__version__,
        "calib": common.relpath_from(out_dir, calib_path),
        "eval": common.relpath_from(out_dir, eval_path),
        "inputs": inputs,
        "outputs": outputs,
        "metric": {"name": "accuracy", "value": round(correct / total, 6), "correct": correct, "total": total},
        "params": n_params,
        "notes": ("Fashion-MNIST (Debian dataset-fashion-mnist), trained %d epochs on all 60000 training "
                  "images; accuracy on the full 10000-image test set %.4f. The metric is argmax of logits "
                  "(ties to the lowest index) on the %d-sample evaluation subset, computed with the torch "
                  "model in eval mode. Smallest top-1/top-2 logit gap on the subset: %.3g."
                  % (cfg["epochs"], full_acc, total, common.top2_margin(logits))),
        "architecture": cfg["arch"],
        "structures": cfg["structures"],
        "labels": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        "test_accuracy_full": round(full_acc, 6),
        "min_top2_margin": common.top2_margin(logits),
        "training": {"epochs": cfg["epochs"], "batch": cfg["batch"], "lr": cfg["lr"], "optimizer": "AdamW + OneCycle",
                     "weight_decay": cfg["wd"], "threads": THREADS, "seconds": round(train_seconds, 1)},
        "onnx": {"ir_version": summ["ir_version"], "bytes": summ["bytes"], "ops": summ["ops"],
                 "batchnorm_kept": bool(cfg["keep_bn"])},
        "check": {"logits_row0": [float(v) for v in logits[0]]},
    }
    common.write_json(os.path.join(out_dir, "meta.json"), meta)
    print("%s: eval subset %d/%d = %.4f, full test %.4f, %d bytes" % (name, correct, total, correct / total, full_acc, summ["bytes"]), flush=True)


def main():
    common.reexec_with_malloc_tunables()
    torch.set_num_threads(THREADS)
    names = sys.argv[1:] or list(CONFIGS)
    for n in names:
        if n not in CONFIGS:
            raise SystemExit("unknown model %s (choose from %s)" % (n, ", ".join(CONFIGS)))
    x_tr, y_tr, x_te, y_te = common.load_fmnist()
    calib_path, eval_path, _, evals, _, _ = make_subsets(x_tr, y_tr, x_te, y_te)
    for n in names:
        run(n, x_tr, y_tr, x_te, y_te, calib_path, eval_path, evals)


if __name__ == "__main__":
    main()
