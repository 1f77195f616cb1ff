"""Encoder Transformer sentiment classifier fixture for onnx-cria.

Rerun from the repository root with:

    OMP_NUM_THREADS=1 /usr/bin/python3 testdata/models/sentiment_transformer.py

Needs Debian's python3-torch, python3-onnx and numpy, plus `npm` on PATH.

Data: the UCI "sentiment labelled sentences" (1000 each from imdb, yelp and
amazon; label 1 positive, 0 negative) shipped in the npm package
sentiment@5.0.2 as package/test/fixtures/{imdb,yelp,amazon}.json. The script
fetches it with `npm pack sentiment@5.0.2` in a temporary directory (never
`npm install`), checks the tarball's sha256 and caches it in
$ONNX_CRIA_FIXTURE_CACHE (default ~/.cache/onnx-cria/fixtures). The trailing
empty entry of each file is dropped. A seeded permutation holds out TEST_N
sentences as the test split.

Tokenizer: lowercase, regex words (letters/digits with an optional 'suffix)
and single punctuation marks; vocabulary from the training split (tokens seen
at least MIN_COUNT times), with [PAD]=0 and [UNK]=1; sequences truncated or
padded to T=64.

Model (BERT-like, post-LN): token embedding + learned position embedding,
LayerNorm, N_LAYERS encoder layers of multi-head self-attention (explicit
q/k/v Linear layers, heads via Reshape/Transpose, scaled dot product, additive
-1e4 padding mask, Softmax, output projection) and a GELU feed-forward, each
followed by residual Add and LayerNorm; masked mean pooling over the real
tokens; a Linear classifier.

Writes (one set of trained weights, exported twice):
  testdata/models/transformer/model.onnx          opset 17 (LayerNormalization nodes)
  testdata/models/transformer/meta.json
  testdata/models/transformer/vocab.json          token -> id
  testdata/models/transformer_opset14/model.onnx  opset 14 (LayerNorm decomposed:
                                                  ReduceMean/Sub/Pow/Sqrt/Div...)
  testdata/models/transformer_opset14/meta.json
  testdata/data/sentiment_calib.npz   input_ids, attention_mask [1024,64] int64, labels
  testdata/data/sentiment_eval.npz    the whole test split, same arrays
Inputs: "input_ids" int64 [N,64], "attention_mask" int64 [N,64] (1 real token,
0 padding); output "logits" float32 [N,2].
"""

import collections
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SEED = 0
NPM_SPEC = "sentiment@5.0.2"
NPM_FILE = "sentiment-5.0.2.tgz"
NPM_SHA256 = "89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f"
SOURCES = ("imdb", "yelp", "amazon")

T = 64
TEST_N = 600
CALIB_N = 1024
MIN_COUNT = 2
D_MODEL = 64
N_HEADS = 4
HEAD_DIM = D_MODEL // N_HEADS
N_LAYERS = 2
FFN_HIDDEN = 128
DROPOUT = 0.1
EPOCHS = int(os.environ.get("SENT_EPOCHS", 8))
BATCH = 32
LR = 1e-3
WEIGHT_DECAY = 0.05
THREADS = 1

TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
PAD, UNK = 0, 1

MODEL_DIR = os.path.join(common.MODELS_DIR, "transformer")
MODEL14_DIR = os.path.join(common.MODELS_DIR, "transformer_opset14")


def tokenize(text):
    return TOKEN_RE.findall(text.lower())


def load_sentences():
    tarball = common.npm_tarball(NPM_SPEC, NPM_FILE, NPM_SHA256)
    want = {"package/test/fixtures/%s.json" % s: s for s in SOURCES}
    files = common.read_tar_members(tarball, lambda n: n in want)
    texts, labels, sources = [], [], []
    for path in sorted(want):
        rows = json.loads(files[path].decode("utf-8"))
        if rows and rows[-1]["text"] == "" and rows[-1]["class"] is None:
            rows = rows[:-1]
        assert len(rows) == 1000, (path, len(rows))
        for r in rows:
            assert r["class"] in (0, 1), r
            texts.append(r["text"].strip())
            labels.append(int(r["class"]))
            sources.append(want[path])
    return texts, np.array(labels, dtype=np.int64), sources


def encode(texts, vocab):
    ids = np.zeros((len(texts), T), dtype=np.int64)
    mask = np.zeros((len(texts), T), dtype=np.int64)
    for i, t in enumerate(texts):
        toks = [vocab.get(w, UNK) for w in tokenize(t)][:T]
        if not toks:
            toks = [UNK]
        ids[i, :len(toks)] = toks
        mask[i, :len(toks)] = 1
    return ids, mask


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(D_MODEL, D_MODEL)
        self.k = nn.Linear(D_MODEL, D_MODEL)
        self.v = nn.Linear(D_MODEL, D_MODEL)
        self.out = nn.Linear(D_MODEL, D_MODEL)
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, x, mask_add):
        q = self.q(x).view(-1, T, N_HEADS, HEAD_DIM).transpose(1, 2)      # [B,H,T,hd]
        k = self.k(x).view(-1, T, N_HEADS, HEAD_DIM).transpose(1, 2)
        v = self.v(x).view(-1, T, N_HEADS, HEAD_DIM).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(2, 3)) * (1.0 / math.sqrt(HEAD_DIM)) + mask_add
        probs = self.drop(torch.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(-1, T, D_MODEL)
        return self.out(ctx)


class EncoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = SelfAttention()
        self.ln1 = nn.LayerNorm(D_MODEL)
        self.ff1 = nn.Linear(D_MODEL, FFN_HIDDEN)
        self.ff2 = nn.Linear(FFN_HIDDEN, D_MODEL)
        self.ln2 = nn.LayerNorm(D_MODEL)
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, x, mask_add):
        x = self.ln1(x + self.drop(self.attn(x, mask_add)))
        h = self.ff2(self.drop(F.gelu(self.ff1(x))))
        return self.ln2(x + self.drop(h))


class SentimentTransformer(nn.Module):
    def __init__(self, vocab_size):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, D_MODEL)
        self.pos = nn.Embedding(T, D_MODEL)
        self.ln_emb = nn.LayerNorm(D_MODEL)
        self.drop = nn.Dropout(DROPOUT)
        self.layers = nn.ModuleList([EncoderLayer() for _ in range(N_LAYERS)])
        self.classifier = nn.Linear(D_MODEL, 2)
        self.register_buffer("positions", torch.arange(T), persistent=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.05)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, input_ids, attention_mask):
        m = attention_mask.to(torch.float32)                       # [B,T]
        mask_add = (1.0 - m)[:, None, None, :] * -10000.0          # [B,1,1,T]
        x = self.tok(input_ids) + self.pos(self.positions)
        x = self.drop(self.ln_emb(x))
        for layer in self.layers:
            x = layer(x, mask_add)
        w = m[:, :, None]
        pooled = (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)  # masked mean
        return self.classifier(pooled)


def predict(model, ids, mask, batch=256):
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(ids), batch):
            out.append(model(torch.from_numpy(ids[i:i + batch]), torch.from_numpy(mask[i:i + batch])).numpy())
    return np.concatenate(out)


def export(model, path, opset, dummy):
    torch.onnx.export(model, dummy, path, opset_version=opset,
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_axes={"input_ids": {0: "N"}, "attention_mask": {0: "N"}, "logits": {0: "N"}},
                      do_constant_folding=True)
    common.set_static_output_dims(path, "logits", [None, 2])
    return common.onnx_summary(path)


def main():
    common.reexec_with_malloc_tunables()
    torch.set_num_threads(THREADS)
    common.seed_everything(SEED)
    texts, labels, sources = load_sentences()
    rng = np.random.RandomState(SEED)
    perm = rng.permutation(len(texts))
    test_idx = np.sort(perm[:TEST_N])
    train_idx = np.sort(perm[TEST_N:])

    counts = collections.Counter(w for i in train_idx for w in tokenize(texts[i]))
    words = sorted((w for w, c in counts.items() if c >= MIN_COUNT), key=lambda w: (-counts[w], w))
    vocab = {"[PAD]": PAD, "[UNK]": UNK}
    for w in words:
        vocab[w] = len(vocab)
    print("train %d, test %d, vocab %d" % (len(train_idx), len(test_idx), len(vocab)))

    ids, mask = encode(texts, vocab)
    tr_ids, tr_mask, tr_y = ids[train_idx], mask[train_idx], labels[train_idx]
    te_ids, te_mask, te_y = ids[test_idx], mask[test_idx], labels[test_idx]
    calib_sel = np.sort(rng.choice(len(train_idx), CALIB_N, replace=False))

    model = SentimentTransformer(len(vocab))
    n_params = common.count_params(model)
    print("params", n_params)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}], lr=LR)
    steps_per_epoch = (len(tr_ids) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, epochs=EPOCHS, steps_per_epoch=steps_per_epoch)
    gen = torch.Generator().manual_seed(SEED)
    X, M, Y = map(torch.from_numpy, (tr_ids, tr_mask, tr_y))
    t0 = time.time()
    for epoch in range(EPOCHS):
        model.train()
        p = torch.randperm(len(X), generator=gen)
        tot = 0.0
        for i in range(0, len(X), BATCH):
            b = p[i:i + BATCH]
            loss = F.cross_entropy(model(X[b], M[b]), Y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(b)
        if epoch % 5 == 4 or epoch == EPOCHS - 1:
            tr_acc = float((predict(model, tr_ids, tr_mask).argmax(1) == tr_y).mean())
            te_acc = float((predict(model, te_ids, te_mask).argmax(1) == te_y).mean())
            print("epoch %d loss %.4f train acc %.4f test acc %.4f  %.0fs" % (epoch, tot / len(X), tr_acc, te_acc, time.time() - t0), flush=True)
    train_seconds = time.time() - t0

    model.eval()
    logits = predict(model, te_ids, te_mask)
    pred = common.argmax_lowest(logits)
    correct = int((pred == te_y).sum())
    total = len(te_y)
    per_source = {s: round(float((pred == te_y)[np.array([sources[i] == s for i in test_idx])].mean()), 4) for s in SOURCES}
    print("test accuracy %d/%d = %.4f %s" % (correct, total, correct / total, per_source))

    os.makedirs(MODEL_DIR, exist_ok=True)
    os.makedirs(MODEL14_DIR, exist_ok=True)
    vocab_path = os.path.join(MODEL_DIR, "vocab.json")
    with open(vocab_path, "w") as f:
        json.dump(vocab, f, indent=0, ensure_ascii=False)
        f.write("\n")
    calib_path = os.path.join(common.DATA_DIR, "sentiment_calib.npz")
    eval_path = os.path.join(common.DATA_DIR, "sentiment_eval.npz")
    np.savez_compressed(calib_path, input_ids=tr_ids[calib_sel], attention_mask=tr_mask[calib_sel], labels=tr_y[calib_sel])
    np.savez_compressed(eval_path, input_ids=te_ids, attention_mask=te_mask, labels=te_y)

    dummy = (torch.from_numpy(te_ids[:2]), torch.from_numpy(te_mask[:2]))
    arch = {"vocab_size": len(vocab), "seq_len": T, "d_model": D_MODEL, "n_layers": N_LAYERS,
            "n_heads": N_HEADS, "head_dim": HEAD_DIM, "ffn_hidden": FFN_HIDDEN, "norm": "post-LN LayerNorm",
            "activation": "gelu (erf)", "pooling": "masked mean over attention_mask",
            "attention_mask": "additive (1 - mask) * -1e4 on the key axis"}
    tok = {"lowercase": True, "regex": TOKEN_RE.pattern, "min_count": MIN_COUNT, "pad_id": PAD,
           "unk_id": UNK, "truncate_to": T, "pad_side": "right"}
    for out_dir, opset in ((MODEL_DIR, 17), (MODEL14_DIR, 14)):
        path = os.path.join(out_dir, "model.onnx")
        summ = export(model, path, opset, dummy)
        ops = summ["ops"]
        if opset == 17:
            assert "LayerNormalization" in ops, ops
        else:
            assert "LayerNormalization" not in ops and "ReduceMean" in ops and "Sqrt" in ops, ops
        assert ops.get("Softmax", 0) == N_LAYERS, ops
        inputs, outputs = common.io_spec(summ["model"])
        name = "transformer" if opset == 17 else "transformer_opset14"
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
            "notes": ("Binary sentiment on the UCI labelled sentences (imdb+yelp+amazon, npm sentiment@5.0.2), "
                      "%d training and %d held-out test sentences (seeded split); small data, trained from "
                      "scratch, so the accuracy is modest. Test accuracy per source: %s. The opset 14 and "
                      "opset 17 fixtures are exports of the same trained weights. Smallest top-1/top-2 logit "
                      "gap on the test split: %.3g."
                      % (len(train_idx), total, per_source, common.top2_margin(logits))),
            "vocab": common.relpath_from(out_dir, vocab_path),
            "tokenizer": tok,
            "architecture": arch,
            "prunable_groups": {
                "ffn": "per layer: ff1 output units (ffn_hidden) coupled with ff2 input columns; Z = ff1 output, A = gelu(Z)",
                "attention_heads": "per layer: head h owns columns h*head_dim..(h+1)*head_dim-1 of q, k, v and rows of out",
                "hidden": "d_model is shared by the embeddings, every LayerNorm, residual Adds and the classifier",
            },
            "min_top2_margin": common.top2_margin(logits),
            "training": {"epochs": EPOCHS, "batch": BATCH, "lr": LR, "optimizer": "AdamW + OneCycle",
                         "weight_decay": WEIGHT_DECAY, "dropout": DROPOUT, "seconds": round(train_seconds, 1)},
            "data": {"source": NPM_SPEC, "tarball_sha256": NPM_SHA256, "files": ["package/test/fixtures/%s.json" % s for s in SOURCES],
                     "train": int(len(train_idx)), "test": int(total), "calib": CALIB_N},
            "onnx": {"ir_version": summ["ir_version"], "bytes": summ["bytes"], "ops": ops},
            "check": {"logits_row0": [float(v) for v in logits[0]]},
        }
        common.write_json(os.path.join(out_dir, "meta.json"), meta)
        print("wrote", path, summ["bytes"], "bytes", ops)


if __name__ == "__main__":
    main()
