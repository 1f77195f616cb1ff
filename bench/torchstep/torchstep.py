"""Time one training step of an ONNX fixture in PyTorch, as a cross-check of
onnx-cria's ORT-run training graph (go test ./finetune -bench TrainStep).

    OMP_NUM_THREADS=1 /usr/bin/python3 bench/torchstep/torchstep.py testdata/models/mlp/model.onnx

The ONNX graph is run op by op with torch functions (the ops the Fashion-MNIST
fixtures use), so the model, the weights and the batch are exactly those of the
Go benchmark: the first 64 rows of testdata/data/fmnist_calib.npz, cross-entropy
on their labels, Adam. The trainable tensors follow onnx-cria's default (float
initializers of at least two elements, not BatchNormalization statistics).
BatchNormalization uses batch statistics and updates its running ones, as
onnx-cria's fine-tuning does by default (--bn eval: running statistics fixed).
A step is forward + loss + backward + optimizer step, on one thread
(torch.set_num_threads(1)); the script prints the median and the minimum over
the timed steps, and the loss and gradient norm of the first step, which the Go
benchmark logs too. Cross-check only: Python is not part of onnx-cria.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

FROZEN = {"BatchNormalization": (3, 4), "Pow": (1,), "Clip": (1, 2)}


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def pads2d(a, k):
    p = a.get("pads", [0] * (2 * k))
    begin, end = p[:k], p[k:]
    if begin != end:
        raise SystemExit("asymmetric pads are not supported by this cross-check")
    return tuple(begin)


class Graph:
    def __init__(self, path, bn_train=True):
        self.bn_train = bn_train
        self.m = onnx.load(path)
        g = self.m.graph
        self.inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in g.initializer}
        frozen = set()
        for n in g.node:
            for k in FROZEN.get(n.op_type, ()):
                if k < len(n.input):
                    frozen.add(n.input[k])
        for n in reversed(g.node):  # shared through Identity
            if n.op_type == "Identity" and n.output[0] in frozen:
                frozen.add(n.input[0])
        self.params = {}
        for name, t in self.inits.items():
            if t.is_floating_point() and t.numel() >= 2 and name not in frozen:
                self.params[name] = torch.nn.Parameter(t.clone())
        self.nodes = list(g.node)
        self.output = g.output[0].name

    def forward(self, x):
        env = dict(self.inits)
        env.update(self.params)
        env[self.m.graph.input[0].name] = x
        for n in self.nodes:
            a = attrs(n)
            i = [env[v] if v else None for v in n.input]
            op = n.op_type
            if op in ("Identity", "Dropout"):
                y = i[0]
            elif op == "Constant":
                y = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
            elif op == "Flatten":
                y = torch.flatten(i[0], a.get("axis", 1))
            elif op == "Reshape":
                y = i[0].reshape([int(d) if d != 0 else i[0].shape[k] for k, d in enumerate(i[1].tolist())])
            elif op == "Gemm":
                A = i[0].t() if a.get("transA", 0) else i[0]
                B = i[1].t() if a.get("transB", 0) else i[1]
                y = a.get("alpha", 1.0) * (A @ B)
                if len(i) > 2 and i[2] is not None:
                    y = y + a.get("beta", 1.0) * i[2]
            elif op == "MatMul":
                y = i[0] @ i[1]
            elif op == "Conv":
                k = len(i[1].shape) - 2
                y = F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, stride=tuple(a.get("strides", [1] * k)),
                             padding=pads2d(a, k), dilation=tuple(a.get("dilations", [1] * k)), groups=a.get("group", 1))
            elif op == "BatchNormalization":
                y = F.batch_norm(i[0], i[3], i[4], i[1], i[2], training=self.bn_train,
                                 momentum=1 - a.get("momentum", 0.9), eps=a.get("epsilon", 1e-5))
            elif op == "Relu":
                y = F.relu(i[0])
            elif op == "Clip":
                y = torch.clamp(i[0], float(i[1]) if len(i) > 1 and i[1] is not None else None,
                                float(i[2]) if len(i) > 2 and i[2] is not None else None)
            elif op == "Sigmoid":
                y = torch.sigmoid(i[0])
            elif op == "MaxPool":
                k = a["kernel_shape"]
                y = F.max_pool2d(i[0], k, a.get("strides", k), pads2d(a, len(k)))
            elif op == "AveragePool":
                k = a["kernel_shape"]
                y = F.avg_pool2d(i[0], k, a.get("strides", k), pads2d(a, len(k)),
                                 count_include_pad=bool(a.get("count_include_pad", 0)))
            elif op == "GlobalAveragePool":
                y = i[0].mean(dim=(2, 3), keepdim=True)
            elif op == "Add":
                y = i[0] + i[1]
            elif op == "Mul":
                y = i[0] * i[1]
            else:
                raise SystemExit("op %s is not supported by this cross-check" % op)
            env[n.output[0]] = y
        return env[self.output]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "testdata", "data", "fmnist_calib.npz"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--bn", choices=("train", "eval"), default="train",
                    help="BatchNormalization with batch statistics (train, onnx-cria's default) or running ones")
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = np.load(args.data)
    x = torch.from_numpy(d["input"][: args.batch].copy())
    y = torch.from_numpy(d["labels"][: args.batch].astype(np.int64))
    g = Graph(args.model, bn_train=args.bn == "train")
    opt = torch.optim.Adam(list(g.params.values()), lr=args.lr)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(g.forward(x), y)
        loss.backward()
        opt.step()
        return loss

    loss = F.cross_entropy(g.forward(x), y)
    loss.backward()
    gnorm = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in g.params.values())))
    print("first step: loss %.6f, gradient norm %.6f (%d tensors, %d parameters)"
          % (float(loss), gnorm, len(g.params), sum(p.numel() for p in g.params.values())))
    for _ in range(args.warmup):
        step()
    times = []
    cpu0 = time.process_time()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / args.steps
    # CPU time per step (every thread of the process) moves far less than
    # wall time when other work shares the machine.
    print("%s: batch %d, PyTorch %s, %d thread: %.3f ms per step (median of %d), %.3f ms min, %.3f ms CPU per step"
          % (args.model, args.batch, torch.__version__, torch.get_num_threads(),
             1e3 * statistics.median(times), args.steps, 1e3 * min(times), 1e3 * cpu))


if __name__ == "__main__":
    sys.exit(main())
