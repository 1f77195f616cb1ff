"""Markdown tables from compare.py's results.json (imported by compare.py; also

    /usr/bin/python3 bench/torchpruning/report.py out/torchpruning/results.json
"""

import json
import os
import sys

MODELS = ("cnn", "vgg", "mlp")
TARGETS = (0.3, 0.5, 0.7)


def onnx_widths(path):
    """Output width of every Conv and Gemm of an ONNX file, in graph order: one format
    for both tools (onnx-cria's groups couple several layers)."""
    import onnx
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), path)
    m = onnx.load(path)
    dims = {t.name: list(t.dims) for t in m.graph.initializer}
    out = []
    for n in m.graph.node:
        if n.op_type == "Conv":
            out.append(dims[n.input[1]][0])
        elif n.op_type == "Gemm":
            trans = any(a.name == "transB" and a.i for a in n.attribute)
            out.append(dims[n.input[1]][0 if trans else 1])
    return " ".join(map(str, out))


def pct(v):
    return "%.2f" % (100 * v) if v is not None else "-"


def ms(rec, batch):
    lat = rec.get("latency_ms")
    return "%.3f" % lat[batch] if lat else "-"


def runs_for(res, model, target):
    rows = [r for r in res["runs"].values() if r["model"] == model and r["target"] == target]
    return sorted(rows, key=lambda r: (r["tool"] != "onnx-cria", r["variant"]))


def acc(r, stage):
    return pct(r[stage]["accuracy"]) if stage in r else "-"


def model_table(res, model, target):
    o = res["originals"][model]
    lines = ["#### %s, target %d%%" % (model, round(target * 100)), "",
             "| tool | variant | params | reduction | no recovery | lsq | fine-tuned | fine-tuned, BN frozen "
             "| ms b1 | ms b64 | widths | prune s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|",
             "| original | | %d | | %s | | | | %s | %s | %s | |" % (o["params"], pct(o["accuracy"]), ms(o, "1"),
                                                                ms(o, "64"), onnx_widths(o["onnx"]))]
    for r in runs_for(res, model, target):
        red = 1 - r["params"] / o["params"]
        variant = r["variant"] + (" (refused; ran at %.3f)" % r["ran_at"] if r.get("refused") else "")
        lines.append("| %s | %s | %d | %.3f | %s | %s | %s | %s | %s | %s | %s | %.1f |" % (
            r["tool"], variant, r["params"], red, acc(r, "none"), acc(r, "lsq") if r["tool"] == "onnx-cria" else "n/a",
            acc(r, "ft"), acc(r, "ft_frozen"), ms(r, "1"), ms(r, "64"), onnx_widths(r["onnx"]), r["prune_seconds"]))
    return "\n".join(lines) + "\n"


def best(rows, stage):
    rows = [r for r in rows if stage in r]
    if not rows:
        return None
    return max(rows, key=lambda r: r[stage]["accuracy"])


def summary(res):
    """The most accurate run of each side at each stage, among the runs whose reduction
    is within [target - 0.01, target + 0.03] (so that an overshoot does not count)."""
    cols = (("onnx-cria", "none"), ("torch-pruning", "none"), ("onnx-cria", "lsq"), ("onnx-cria", "ft"),
            ("torch-pruning", "ft"), ("onnx-cria", "ft_frozen"), ("torch-pruning", "ft_frozen"))
    names = {"none": "no recovery", "lsq": "lsq", "ft": "fine-tuned", "ft_frozen": "fine-tuned, BN frozen"}
    lines = ["| model | target | " + " | ".join("%s, %s" % ("TP" if t == "torch-pruning" else t, names[s])
                                              for t, s in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for m in MODELS:
        for t in TARGETS:
            p0 = res["originals"][m]["params"]
            rows = [r for r in runs_for(res, m, t) if t - 0.01 <= 1 - r["params"] / p0 <= t + 0.03]
            cells = []
            for tool, stage in cols:
                b = best([r for r in rows if r["tool"] == tool], stage)
                cells.append("%s (%s, %.3f)" % (pct(b[stage]["accuracy"]), b["variant"],
                                                1 - b["params"] / res["originals"][m]["params"]) if b else "-")
            lines.append("| %s | %d%% | %s |" % (m, round(t * 100), " | ".join(cells)))
    return "\n".join(lines) + "\n"


def trainers(res):
    """The same onnx-cria lsq outputs fine-tuned by onnx-cria and by the PyTorch loop."""
    lines = ["| run | lsq | onnx-cria fine-tune | PyTorch fine-tune | onnx-cria, BN frozen |", "|---|---|---|---|---|"]
    for key, r in res["runs"].items():
        if "ft_torch" in r:
            lines.append("| %s %d%% %s | %s | %s | %s | %s |" % (r["model"], round(r["target"] * 100), r["variant"],
                                                            acc(r, "lsq"), acc(r, "ft"), acc(r, "ft_torch"),
                                                            acc(r, "ft_frozen")))
    return "\n".join(lines) + "\n"


def latency(res):
    """Latency of each side's most accurate fine-tuned file per model and target."""
    lines = ["| model | target | original ms b1 / b64 | onnx-cria default ms b1 / b64 | fastest onnx-cria | "
             "fastest TP |", "|---|---|---|---|---|---|"]
    for m in MODELS:
        o = res["originals"][m]
        for t in TARGETS:
            rows = [r for r in runs_for(res, m, t) if r.get("latency_ms")]
            if not rows:
                continue
            d = res["runs"].get("cria|%s|%g|spectral" % (m, t))
            cells = []
            for tool in ("onnx-cria", "torch-pruning"):
                f = min((r for r in rows if r["tool"] == tool), key=lambda r: r["latency_ms"]["64"])
                cells.append("%s / %s (%s, %.3f)" % (ms(f, "1"), ms(f, "64"), f["variant"], 1 - f["params"] / o["params"]))
            lines.append("| %s | %d%% | %s / %s | %s / %s | %s |" % (m, round(t * 100), ms(o, "1"), ms(o, "64"),
                                                                 ms(d, "1"), ms(d, "64"), " | ".join(cells)))
    return "\n".join(lines) + "\n"


def defaults(res):
    """onnx-cria's defaults against Torch-Pruning's README recipe (L2 group magnitude,
    one ratio for every layer, one step)."""
    lines = ["| model | target | onnx-cria default: reduction | no recovery | lsq | fine-tuned | ms b64 "
             "| TP mag local s1: reduction | no recovery | fine-tuned | ms b64 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in MODELS:
        p0 = res["originals"][m]["params"]
        for t in TARGETS:
            c = res["runs"].get("cria|%s|%g|spectral" % (m, t))
            p = res["runs"].get("tp|%s|%g|mag local s1" % (m, t))
            if not c or not p:
                continue
            lines.append("| %s | %d%% | %.3f | %s | %s | %s | %s | %.3f | %s | %s | %s |" % (
                m, round(t * 100), 1 - c["params"] / p0, acc(c, "none"), acc(c, "lsq"), acc(c, "ft"), ms(c, "64"),
                1 - p["params"] / p0, acc(p, "none"), acc(p, "ft"), ms(p, "64")))
    return "\n".join(lines) + "\n"


def sanitize(res, root):
    """A copy of res with file paths relative to the repository and no paths of
    the machine that ran it, for committing."""
    res = json.loads(json.dumps(res))

    def rel(p):
        return os.path.relpath(p, root).replace(os.sep, "/")
    for rec in list(res["originals"].values()) + list(res["runs"].values()):
        for k in ("onnx", "onnx_ft"):
            if k in rec:
                rec[k] = rel(rec[k])
    res["onnx_cria"] = res["onnx_cria"].split(" (/")[0].split("(/")[0].strip()
    res.get("torch_pruning", {}).pop("path", None)
    return res


def tables(res):
    parts = ["## onnx-cria defaults against Torch-Pruning's README recipe\n", defaults(res),
             "\n## Best of each side (reduction within [target - 0.01, target + 0.03])\n", summary(res), "\n## Latency\n", latency(res),
             "\n## One pruned file, two trainers\n", trainers(res), "\n## Every run\n"]
    for m in MODELS:
        for t in TARGETS:
            if runs_for(res, m, t):
                parts.append(model_table(res, m, t))
    return "\n".join(parts)


def write(out, res, publish=None, root=None):
    """OUT/results.md; with publish, also a sanitized results.json and RESULTS.md there."""
    path = os.path.join(out, "results.md")
    with open(path, "w") as f:
        f.write(tables(res))
    print("wrote", path)
    if publish:
        clean = sanitize(res, root)
        with open(os.path.join(publish, "results.json"), "w") as f:
            json.dump(clean, f, indent=1)
            f.write("\n")
        with open(os.path.join(publish, "RESULTS.md"), "w") as f:
            f.write("# onnx-cria against Torch-Pruning: every number\n\n"
                    "Written by `compare.py` (its report stage) from `results.json` beside this file; "
                    "see README.md for the protocol. Accuracy in percent on the 2000 images of "
                    "`testdata/data/fmnist_eval.npz`; latency in milliseconds, ONNX Runtime, one thread.\n\n")
            f.write(tables(clean))
        print("wrote", os.path.join(publish, "RESULTS.md"))


if __name__ == "__main__":
    p = sys.argv[1]
    write(os.path.dirname(p), json.load(open(p)))
