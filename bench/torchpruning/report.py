"""Markdown tables from compare.py's results.json (imported by compare.py; also

    /usr/bin/python3 bench/torchpruning/report.py out/torchpruning/results.json
"""

import json
import os
import sys

MODELS = ("cnn", "vgg", "mlp")
TARGETS = (0.3, 0.5, 0.7)


def pct(v):
    return "%.2f" % (100 * v) if v is not None else "-"


def ms(rec, batch):
    lat = rec.get("latency_ms")
    return "%.3f" % lat[batch] if lat else "-"


def runs_for(res, model, target):
    rows = [r for r in res["runs"].values() if r["model"] == model and r["target"] == target]
    return sorted(rows, key=lambda r: (r["tool"] != "onnx-cria", r["variant"]))


def model_table(res, model, target):
    o = res["originals"][model]
    lines = ["#### %s, target %d%%" % (model, round(target * 100)), "",
             "| tool | variant | params | reduction | no recovery | lsq | fine-tuned | ms b1 | ms b64 | widths | prune s |",
             "|---|---|---|---|---|---|---|---|---|---|---|",
             "| original | | %d | | %s | | | %s | %s | %s | |" % (o["params"], pct(o["accuracy"]), ms(o, "1"), ms(o, "64"),
                                                              " ".join(map(str, o["widths"])))]
    for r in runs_for(res, model, target):
        red = 1 - r["params"] / o["params"]
        variant = r["variant"] + (" (refused; ran at %.3f)" % r["ran_at"] if r.get("refused") else "")
        lsq = pct(r["lsq"]["accuracy"]) if "lsq" in r else "n/a"
        lines.append("| %s | %s | %d | %.3f | %s | %s | %s | %s | %s | %s | %.1f |" % (
            r["tool"], variant, r["params"], red, pct(r["none"]["accuracy"]), lsq, pct(r["ft"]["accuracy"]),
            ms(r, "1"), ms(r, "64"), " ".join(map(str, r["widths"])), r["prune_seconds"]))
    return "\n".join(lines) + "\n"


def best(rows, stage):
    rows = [r for r in rows if stage in r]
    if not rows:
        return None
    return max(rows, key=lambda r: r[stage]["accuracy"])


def summary(res):
    lines = ["| model | target | best onnx-cria, no recovery | best TP, no recovery | best onnx-cria, lsq | "
             "best onnx-cria, fine-tuned | best TP, fine-tuned |",
             "|---|---|---|---|---|---|---|"]
    for m in MODELS:
        for t in TARGETS:
            rows = runs_for(res, m, t)
            c = [r for r in rows if r["tool"] == "onnx-cria"]
            p = [r for r in rows if r["tool"] == "torch-pruning"]
            cells = []
            for group, stage in ((c, "none"), (p, "none"), (c, "lsq"), (c, "ft"), (p, "ft")):
                b = best(group, stage)
                cells.append("%s (%s)" % (pct(b[stage]["accuracy"]), b["variant"]) if b else "-")
            lines.append("| %s | %d%% | %s |" % (m, round(t * 100), " | ".join(cells)))
    return "\n".join(lines) + "\n"


def defaults(res):
    """onnx-cria's defaults against Torch-Pruning's README recipe (L2 group magnitude,
    per-layer ratio, one step)."""
    lines = ["| model | target | onnx-cria default: reduction, none / lsq / fine-tuned, ms b64 | "
             "TP mag local s1: reduction, none / fine-tuned, ms b64 |", "|---|---|---|---|"]
    for m in MODELS:
        p0 = res["originals"][m]["params"]
        for t in TARGETS:
            c = res["runs"].get("cria|%s|%g|spectral" % (m, t))
            p = res["runs"].get("tp|%s|%g|mag local s1" % (m, t))
            if not c or not p:
                continue
            lines.append("| %s | %d%% | %.3f: %s / %s / %s, %s | %.3f: %s / %s, %s |" % (
                m, round(t * 100), 1 - c["params"] / p0, pct(c["none"]["accuracy"]), pct(c["lsq"]["accuracy"]),
                pct(c["ft"]["accuracy"]), ms(c, "64"), 1 - p["params"] / p0, pct(p["none"]["accuracy"]),
                pct(p["ft"]["accuracy"]), ms(p, "64")))
    return "\n".join(lines) + "\n"


def write(out, res):
    parts = ["## onnx-cria defaults against Torch-Pruning's README recipe\n", defaults(res),
             "\n## Best of each side\n", summary(res), "\n## Every run\n"]
    for m in MODELS:
        for t in TARGETS:
            if runs_for(res, m, t):
                parts.append(model_table(res, m, t))
    path = os.path.join(out, "results.md")
    with open(path, "w") as f:
        f.write("\n".join(parts))
    print("wrote", path)


if __name__ == "__main__":
    p = sys.argv[1]
    write(os.path.dirname(p), json.load(open(p)))
