"""Move the bias that onnx-cria's lsq refit folds into a BatchNormalization's shift
into the normalisation's running mean instead (a diagnostic; see README.md).

    /usr/bin/python3 bench/torchpruning/bnfold.py PRUNED_NO_RECOVERY.onnx LSQ.onnx OUT.onnx

The refit of a Conv without a bias that feeds a BatchNormalization folds the bias b
it fits into the shift: B += scale * b / sqrt(var + eps). In inference that equals
running_mean -= b, but training with batch statistics then treats the two
differently: the shift stays while the batch mean no longer contains b, so the
correction is applied twice once the running mean has caught up. This script takes
the shift change (LSQ.onnx against the same pruning without recovery) and moves it
into the running mean; OUT.onnx computes the same function as LSQ.onnx.
"""

import sys

import numpy as np
import onnx
from onnx import numpy_helper


def main():
    none_path, lsq_path, out_path = sys.argv[1:4]
    before = {t.name: numpy_helper.to_array(t) for t in onnx.load(none_path).graph.initializer}
    m = onnx.load(lsq_path)
    w = {t.name: numpy_helper.to_array(t).copy() for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type != "BatchNormalization":
            continue
        scale, shift, mean, var = n.input[1:5]
        delta = w[shift] - before[shift]
        if not np.any(delta):
            continue
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
        b = delta * np.sqrt(w[var] + eps) / w[scale]
        w[mean] = w[mean] - b
        w[shift] = before[shift]
        print("%s: moved a bias of up to %.3g into the running mean" % (n.name, float(np.abs(b).max())))
    for t in m.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(w[t.name].astype(numpy_helper.to_array(t).dtype), t.name))
    onnx.save(m, out_path)


if __name__ == "__main__":
    main()
