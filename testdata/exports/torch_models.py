"""PyTorch architectures for the export zoo (see generate.py and llm.py).

Not a script. Every model is built with a seeded random init and exported by
torch.onnx.export as a user would: dynamic batch (and sequence) axes, eval
mode, constant folding on. Torch 1.13 (Debian's python3-torch) exports opsets
7 to 17.
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from onnx_graphs import tokens_and_mask


def export(model, args, path, opset, input_names, output_names, dynamic_axes, export_params=True):
    """Export as a user would. Gradients stay enabled: the fast path that
    TransformerEncoder and MultiheadAttention take without them does not
    export. With export_params=False the parameters become graph inputs
    named after them (llm.py adds them as external initializers)."""
    model.eval()
    with torch.enable_grad():
        torch.onnx.export(model, args, path, opset_version=opset,
                          training=torch.onnx.TrainingMode.EVAL,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, do_constant_folding=True,
                          export_params=export_params)


def run(model, arrays, names):
    """Runs the torch model on numpy arrays (a self-check of the inputs)."""
    with torch.no_grad():
        return model(*[torch.from_numpy(arrays[n]) for n in names])


def randomize_batchnorm(model, seed):
    """BatchNorm statistics and affine parameters drawn at random, so that the
    Conv weights the export folds them into are not the raw init."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


# --- (a) torch.nn.TransformerEncoder classifier with a padding mask ---------


class EncoderClassifier(nn.Module):
    """Embedding, learned positions, nn.TransformerEncoder (post-LN, ReLU FFN)
    with src_key_padding_mask, masked mean pooling, Linear. With cloned=True
    the layers stay the deep copies that nn.TransformerEncoder makes, so the
    export deduplicates their equal initializers."""

    def __init__(self, vocab=1000, d=64, heads=4, ffn=128, layers=2, classes=2, max_len=64, cloned=False):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(max_len, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, heads, ffn, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        if not cloned:
            for p in self.encoder.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
                else:
                    nn.init.normal_(p, mean=1.0 if p.shape[0] == d else 0.0, std=0.02)
        self.head = nn.Linear(d, classes)

    def forward(self, input_ids, attention_mask):
        t = input_ids.shape[1]
        x = self.embed(input_ids) + self.pos[:t]
        h = self.encoder(x, src_key_padding_mask=attention_mask == 0)
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1).clamp(min=1.0))


def encoder(opset, cloned, rng):
    torch.manual_seed(1)
    model = EncoderClassifier(cloned=cloned).eval()
    ids, mask = tokens_and_mask(rng, 64, 24, 1000, 6)
    calib = {"input_ids": ids, "attention_mask": mask}
    names = ["input_ids", "attention_mask"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    return model, calib, names, ["logits"], axes


# --- (b) GPT-2-style decoder -------------------------------------------------


class GPT2Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)     # packed q, k, v
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    @staticmethod
    def gelu(x):  # GPT-2's tanh approximation, written out as HF's NewGELU does
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))

    def forward(self, x, bias):
        b, t, d = x.shape
        hd = d // self.heads
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q = q.view(b, t, self.heads, hd).transpose(1, 2)
        k = k.view(b, t, self.heads, hd).transpose(1, 2)
        v = v.view(b, t, self.heads, hd).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd) + bias
        y = torch.matmul(torch.softmax(att, dim=-1), v)
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))


class GPT2(nn.Module):
    """Token and learned position embeddings, pre-LN blocks with a packed QKV
    projection, causal and padding masks, tanh-GELU MLP, final LayerNorm and
    an LM head tied to the token embedding."""

    def __init__(self, vocab=512, n_pos=64, d=64, heads=4, layers=2):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(n_pos, d)
        self.h = nn.ModuleList([GPT2Block(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)
            elif "ln" in name and name.endswith("weight"):
                nn.init.normal_(p, mean=1.0, std=0.02)
            else:
                nn.init.normal_(p, std=0.02)
        self.lm_head.weight = self.wte.weight  # tied
        self.register_buffer("causal", torch.tril(torch.ones(n_pos, n_pos)).view(1, 1, n_pos, n_pos), persistent=False)

    def forward(self, input_ids, attention_mask):
        t = input_ids.shape[1]
        pos = torch.arange(t, dtype=torch.long, device=input_ids.device).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(pos)
        allowed = self.causal[:, :, :t, :t] * attention_mask[:, None, None, :].to(x.dtype)
        bias = (1.0 - allowed) * torch.finfo(x.dtype).min
        for block in self.h:
            x = block(x, bias)
        return self.lm_head(self.ln_f(x))


def gpt2(opset, rng):
    torch.manual_seed(2)
    model = GPT2().eval()
    ids, mask = tokens_and_mask(rng, 64, 32, 512, 20)
    calib = {"input_ids": ids, "attention_mask": mask}
    names = ["input_ids", "attention_mask"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch", 1: "sequence"}
    return model, calib, names, ["logits"], axes


# --- (c) small CNN and MLP (for old opsets) ----------------------------------


class SmallCNN(nn.Module):
    """Conv-BN-ReLU stem, MaxPool, a residual block, a strided Conv, global
    average pooling, Linear."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.block = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                                   nn.Conv2d(32, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.block(x))
        x = self.down(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SmallMLP(nn.Module):
    def __init__(self, d_in=64, classes=10):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x):
        return self.net(x)


def image_model(model, rng, size, n=64):
    x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
    return model.eval(), {"input": x}, ["input"], ["logits"], axes


def small_cnn(opset, rng):
    torch.manual_seed(3)
    model = SmallCNN()
    randomize_batchnorm(model, 3)
    return image_model(model, rng, 32)


def small_mlp(opset, rng):
    torch.manual_seed(4)
    x = rng.standard_normal((128, 64)).astype(np.float32)
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
    return SmallMLP().eval(), {"input": x}, ["input"], ["logits"], axes


# --- (d) torchvision ------------------------------------------------------------


def torchvision_model(kind, opset, rng):
    import torchvision
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(5)
    if kind == "shufflenet_v2":
        model, size = torchvision.models.shufflenet_v2_x0_5(weights=None, num_classes=10), 64
    elif kind == "mobilenet_v3_small":
        # Half width: at full width its score stage alone takes minutes (issue 18 item 10).
        model, size = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10, width_mult=0.5), 64
    elif kind == "mobilenet_v3_small_full":
        model, size = torchvision.models.mobilenet_v3_small(weights=None, num_classes=1000), 224
    elif kind == "vit_small":
        # vit_b_16's structure shrunk: 4 layers, hidden 192, 3 heads, MLP 768, 64x64 images (16 patches + class token).
        model, size = VisionTransformer(image_size=64, patch_size=16, num_layers=4, num_heads=3,
                                        hidden_dim=192, mlp_dim=768, num_classes=10), 64
    elif kind == "vit_b_16":
        model, size = torchvision.models.vit_b_16(weights=None, num_classes=1000), 224
    else:
        raise ValueError(kind)
    randomize_batchnorm(model, 5)
    return image_model(model, rng, size)


# --- (g) Llama-style decoder, optionally with a KV cache --------------------------


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class InOut(nn.Module):
    """A bias-free projection whose weight is stored [in, out], as the MatMul
    reads it: the export then needs no transposed copy of each weight (what
    keeps the multi-GiB export of llm.py within memory)."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))

    def forward(self, x):
        return torch.matmul(x, self.weight)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, c, linear):
        super().__init__()
        self.h, self.kv, self.hd = c["heads"], c["kv_heads"], c["d"] // c["heads"]
        self.q_proj = linear(c["d"], self.h * self.hd)
        self.k_proj = linear(c["d"], self.kv * self.hd)
        self.v_proj = linear(c["d"], self.kv * self.hd)
        self.o_proj = linear(self.h * self.hd, c["d"])

    def forward(self, x, cos, sin, bias, past=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        present = (k, v)
        rep = self.h // self.kv
        s = k.shape[2]
        # repeat_kv as transformers writes it: [B,KV,S,hd] -> [B,KV,rep,S,hd] -> [B,H,S,hd]
        k = k[:, :, None, :, :].expand(b, self.kv, rep, s, self.hd).reshape(b, self.h, s, self.hd)
        v = v[:, :, None, :, :].expand(b, self.kv, rep, s, self.hd).reshape(b, self.h, s, self.hd)
        att = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.hd) + bias
        y = torch.matmul(torch.softmax(att, dim=-1), v).transpose(1, 2).reshape(b, t, self.h * self.hd)
        return self.o_proj(y), present


class LlamaBlock(nn.Module):
    def __init__(self, c, linear):
        super().__init__()
        self.input_layernorm = RMSNorm(c["d"])
        self.self_attn = LlamaAttention(c, linear)
        self.post_attention_layernorm = RMSNorm(c["d"])
        self.gate_proj = linear(c["d"], c["ffn"])
        self.up_proj = linear(c["d"], c["ffn"])
        self.down_proj = linear(c["ffn"], c["d"])

    def forward(self, x, cos, sin, bias, past=None):
        a, present = self.self_attn(self.input_layernorm(x), cos, sin, bias, past)
        x = x + a
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h)), present


class Llama(nn.Module):
    """Llama decoder: RMSNorm, rotate-half RoPE from position ids, grouped-query
    attention (repeat_kv), SwiGLU, untied LM head. With kv_cache=True the
    forward takes attention_mask [B, past+T], position_ids [B, T] and a past
    key and value per layer [B, KV, past, hd], and returns the logits and the
    present keys and values [B, KV, past+T, hd], as optimum's decoder exports
    with past do."""

    def __init__(self, c, kv_cache=False, linear=nn.Linear):
        super().__init__()
        self.c, self.kv_cache = c, kv_cache
        self.embed_tokens = nn.Embedding(c["vocab"], c["d"])
        self.layers = nn.ModuleList([LlamaBlock(c, linear) for _ in range(c["layers"])])
        self.norm = RMSNorm(c["d"])
        self.lm_head = linear(c["d"], c["vocab"])
        hd = c["d"] // c["heads"]
        self.register_buffer("inv_freq", 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd)), persistent=False)

    def init_weights(self, std=0.02):
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() > 1:
                    p.normal_(0.0, std)
                else:
                    p.normal_(1.0, 0.02)

    def rope(self, position_ids):
        freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, :, :]  # [B,1,T,hd]
        return emb.cos(), emb.sin()

    def forward(self, input_ids, attention_mask=None, position_ids=None, *past):
        b, t = input_ids.shape
        x = self.embed_tokens(input_ids)
        p = past[0].shape[2] if past else 0
        if position_ids is None:
            position_ids = torch.arange(t, device=input_ids.device)[None, :].expand(b, t)
        cos, sin = self.rope(position_ids)
        q_pos = torch.arange(t, device=input_ids.device)[:, None] + p
        k_pos = torch.arange(p + t, device=input_ids.device)[None, :]
        allowed = (k_pos <= q_pos)[None, None, :, :]
        if attention_mask is not None:
            allowed = allowed & (attention_mask[:, None, None, :] > 0)
        bias = (1.0 - allowed.to(x.dtype)) * torch.finfo(x.dtype).min
        presents = []
        for i, layer in enumerate(self.layers):
            x, present = layer(x, cos, sin, bias, (past[2 * i], past[2 * i + 1]) if past else None)
            presents.extend(present)
        logits = self.lm_head(self.norm(x))
        if self.kv_cache:
            return (logits, *presents)
        return logits


LLAMA_KV = {"vocab": 256, "d": 64, "layers": 2, "heads": 4, "kv_heads": 2, "ffn": 160}


def llama_kv(opset, rng):
    """The cache inputs of the calibration data are what the model itself
    makes from an 8-token prefix; the 16 tokens after it are the input."""
    torch.manual_seed(6)
    model = Llama(LLAMA_KV, kv_cache=True).eval()
    model.init_weights()
    c, n, past_len, t = LLAMA_KV, 64, 8, 16
    hd = c["d"] // c["heads"]
    ids = rng.integers(0, c["vocab"], size=(n, past_len + t), dtype=np.int64)
    layers = c["layers"]
    empty = [torch.zeros(n, c["kv_heads"], 0, hd) for _ in range(2 * layers)]
    with torch.no_grad():
        prefix = torch.from_numpy(ids[:, :past_len])
        out = model(prefix, torch.ones(n, past_len, dtype=torch.long),
                    torch.arange(past_len)[None, :].expand(n, past_len), *empty)
    names = ["input_ids", "attention_mask", "position_ids"]
    calib = {"input_ids": ids[:, past_len:],
             "attention_mask": np.ones((n, past_len + t), dtype=np.int64),
             "position_ids": np.tile(np.arange(past_len, past_len + t, dtype=np.int64), (n, 1))}
    outputs = ["logits"]
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total_sequence"},
            "position_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    for i in range(layers):
        for j, kv in enumerate(("key", "value")):
            name = "past_key_values.%d.%s" % (i, kv)
            names.append(name)
            calib[name] = out[1 + 2 * i + j].numpy()
            axes[name] = {0: "batch", 2: "past_sequence"}
            pres = "present.%d.%s" % (i, kv)
            outputs.append(pres)
            axes[pres] = {0: "batch", 2: "total_sequence"}
    return model, calib, names, outputs, axes
