"""Structure-only fixtures: torchvision resnet18, mobilenet_v2 (and resnet50) with random weights.

Usage (from the repository root):

    OMP_NUM_THREADS=1 /usr/bin/python3 testdata/models/torchvision_structs.py OUT_DIR [--size 224]

Needs Debian's python3-torch, python3-torchvision and python3-onnx. Go tests run
this script when torch is installed (and skip with a message otherwise); its
outputs are not committed (resnet18 alone is about 45 MB).

Writes into OUT_DIR, for MODEL in resnet18 and mobilenet_v2 (or --models, which
also accepts resnet50, for the refit benchmark) and OPSET in 11 and 17:
  MODEL_opsetOPSET.onnx   input "input" float32 [N,3,SIZE,SIZE], output "logits" [N,1000],
                          batch axis dynamic, exported in eval mode (BatchNormalization
                          folded into Conv), weights from a seeded random init
  manifest.json           file names, opsets, parameter counts and op histograms
The weights are random (seed 0): these models exercise the rewriter on real
architectures (residual Adds with downsampling projections; depthwise Conv, Clip
as ReLU6, inverted residuals) and carry no accuracy.
"""

import argparse
import json
import os

import torch
import torchvision

SEED = 0
OPSETS = (11, 17)
MODELS = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None, num_classes=1000),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None, num_classes=1000),
    # Not in the default set (about 100 MB per opset): the refit benchmark's.
    "resnet50": lambda: torchvision.models.resnet50(weights=None, num_classes=1000),
}
DEFAULT = ("resnet18", "mobilenet_v2")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    ap.add_argument("--models", default=",".join(DEFAULT), help="comma-separated subset of " + ",".join(MODELS))
    ap.add_argument("--opsets", default=",".join(map(str, OPSETS)))
    args = ap.parse_args()

    import onnx
    torch.set_num_threads(1)
    os.makedirs(args.out_dir, exist_ok=True)
    manifest = []
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit("unknown model %s" % name)
        torch.manual_seed(SEED)
        model = MODELS[name]().eval()
        # Randomise the BatchNorm statistics and affine parameters too, so that the
        # folded Conv weights are not just the raw init.
        g = torch.Generator().manual_seed(SEED + 1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                with torch.no_grad():
                    m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                    m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        params = int(sum(p.numel() for p in model.parameters()))
        dummy = torch.randn(2, 3, args.size, args.size, generator=g)
        for opset in map(int, args.opsets.split(",")):
            path = os.path.join(args.out_dir, "%s_opset%d.onnx" % (name, opset))
            tmp = path + ".tmp"
            torch.onnx.export(model, (dummy,), tmp, opset_version=opset,
                              training=torch.onnx.TrainingMode.EVAL,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                              do_constant_folding=True)
            m = onnx.load(tmp)
            onnx.checker.check_model(m)
            ops = {}
            for n in m.graph.node:
                ops[n.op_type] = ops.get(n.op_type, 0) + 1
            assert "BatchNormalization" not in ops, "BatchNormalization was not folded"
            os.replace(tmp, path)
            manifest.append({"name": name, "file": os.path.basename(path), "opset": opset,
                             "input": {"name": "input", "shape": ["N", 3, args.size, args.size]},
                             "output": {"name": "logits", "shape": ["N", 1000]},
                             "params": params, "bytes": os.path.getsize(path),
                             "ops": dict(sorted(ops.items())), "seed": SEED,
                             "torch": torch.__version__, "torchvision": torchvision.__version__})
            print("wrote", path, os.path.getsize(path), "bytes")
    with open(os.path.join(args.out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
