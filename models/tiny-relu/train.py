#!/usr/bin/env python3
"""Trains ember's own small ReLU model: a llama-architecture transformer whose FFN is ReGLU
(h = relu(gate(x)) * up(x), as ReluLLaMA), from scratch, on the token files corpus.sh writes.

Architecture, exactly as ember's CPU forward pass (models/llama.cpp) computes it, so the weights load with no
permutation: RMSNorm (eps 1e-5, sum of squares in float32), RoPE over adjacent pairs (2i, 2i+1) with
theta_i = pos * base^(-2i/head_dim) (llama's original rotation, ggml's "normal" mode; HF checkpoints use the
NeoX halves instead, which is why their converter permutes q and k and we do not), causal attention with
1/sqrt(head_dim) scaling and optional GQA (query head h reads KV head h // (n_heads / n_kv_heads)), the ReGLU
FFN, tied or untied output embeddings.

Training: AdamW, linear warm-up then cosine decay to --min-lr-frac over a wall-clock budget (--minutes): the
schedule follows elapsed time rather than a step count, so the run ends on time on any GPU. CUDA with bf16
autocast when available, else float32 on the CPU. Needs only PyTorch (no numpy).

Writes into --out:
  manifest.json        hyper-parameters, tensor index (GGUF names, shapes, offsets, checksums), training results
  weights.NNN.bin      float32 tensors, concatenated and split into shards of at most --shard-mib
  reference.json       the model's logits for a fixed prompt (float32 weights, and weights rounded through Q8_0
                       as ember-quantize rounds them), for the parity check against ember
  train-log.txt        the log
and prints the results as one JSON line at the end. models/tiny-relu/pack.sh turns the output into GGUF.
"""
import argparse
import ctypes
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT = "ember-tiny-relu-weights"
QK8_0 = 32


# ---------------------------------------------------------------------------------------------------------------
# The model.

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)  # ember: (x * scale) * w
        return y.type_as(x) * self.weight


def rope_tables(n_ctx, head_dim, base):
    """cos, sin of theta_i = pos * base^(-2i/head_dim), (n_ctx, head_dim/2), computed in float64."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(n_ctx, dtype=torch.float64)[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()


def apply_rope(x, cos, sin):
    """x: (B, T, H, D); rotates the adjacent pairs (x[2i], x[2i+1]) by theta_i (llama's original layout)."""
    T = x.shape[1]
    xf = x.float()
    x0, x1 = xf[..., 0::2], xf[..., 1::2]
    c, s = cos[:T][None, :, None, :], sin[:T][None, :, None, :]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_heads, self.n_kv_heads = cfg.n_heads, cfg.n_kv_heads
        self.head_dim = cfg.dim // cfg.n_heads
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * self.head_dim, cfg.dim, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = apply_rope(self.wq(x).view(B, T, self.n_heads, self.head_dim), cos, sin).transpose(1, 2)
        k = apply_rope(self.wk(x).view(B, T, self.n_kv_heads, self.head_dim), cos, sin).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.n_kv_heads != self.n_heads:  # GQA: query head h reads KV head h // group
            g = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        p = self.dropout if self.training else 0.0
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:  # PyTorch < 2.0
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = F.dropout(att, p) @ v
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class ReGLU(nn.Module):
    """h = relu(gate(x)) * up(x); out = down(h). Optionally counts, per neuron, the tokens it fired for."""

    def __init__(self, cfg):
        super().__init__()
        self.gate = nn.Linear(cfg.dim, cfg.n_ff, bias=False)
        self.up = nn.Linear(cfg.dim, cfg.n_ff, bias=False)
        self.down = nn.Linear(cfg.n_ff, cfg.dim, bias=False)
        self.fired = None  # (n_ff,) int64 counts while recording
        self.tokens = 0

    def forward(self, x):
        h = F.relu(self.gate(x)) * self.up(x)
        if self.fired is not None:
            nz = (h != 0).reshape(-1, h.shape[-1])
            self.fired += nz.sum(0)
            self.tokens += nz.shape[0]
        return self.down(h)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = ReGLU(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin):
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok_embd = nn.Embedding(cfg.n_vocab, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = None if cfg.tied else nn.Linear(cfg.dim, cfg.n_vocab, bias=False)
        cos, sin = rope_tables(cfg.n_ctx, cfg.dim // cfg.n_heads, cfg.rope_freq_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        # GPT-2 style init; residual output projections scaled by 1/sqrt(2 n_layers).
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * cfg.n_layers) if name.endswith(("wo.weight", "down.weight")) else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, tokens):
        x = self.tok_embd(tokens)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin)
        x = self.norm(x)
        return x @ self.tok_embd.weight.t() if self.output is None else self.output(x)

    def gguf_tensors(self):
        """(GGUF name, tensor) for every weight, in llama.cpp's order. PyTorch's (out, in) is GGUF's {in, out}."""
        out = [("token_embd.weight", self.tok_embd.weight)]
        for i, b in enumerate(self.layers):
            p = "blk.%d." % i
            out += [(p + "attn_norm.weight", b.attn_norm.weight), (p + "attn_q.weight", b.attn.wq.weight),
                    (p + "attn_k.weight", b.attn.wk.weight), (p + "attn_v.weight", b.attn.wv.weight),
                    (p + "attn_output.weight", b.attn.wo.weight), (p + "ffn_norm.weight", b.ffn_norm.weight),
                    (p + "ffn_gate.weight", b.ffn.gate.weight), (p + "ffn_up.weight", b.ffn.up.weight),
                    (p + "ffn_down.weight", b.ffn.down.weight)]
        out.append(("output_norm.weight", self.norm.weight))
        if self.output is not None:
            out.append(("output.weight", self.output.weight))
        return out


class Config:
    """Hyper-parameters; the keys of manifest.json's "hparams"."""
    KEYS = ("n_vocab", "dim", "n_layers", "n_heads", "n_kv_heads", "n_ff", "n_ctx", "rope_freq_base", "norm_eps",
            "tied")

    def __init__(self, **kw):
        self.dropout = 0.0
        for k, v in kw.items():
            setattr(self, k, v)

    def hparams(self):
        h = {k: getattr(self, k) for k in self.KEYS}
        h.update(ffn_activation="relu", rope_pairs="adjacent")
        return h


def n_params(cfg):
    head_dim = cfg.dim // cfg.n_heads
    per_layer = (2 * cfg.dim * cfg.dim + 2 * cfg.dim * cfg.n_kv_heads * head_dim + 3 * cfg.dim * cfg.n_ff
                 + 2 * cfg.dim)
    return cfg.n_vocab * cfg.dim * (1 if cfg.tied else 2) + cfg.n_layers * per_layer + cfg.dim


def q8_0_file_bytes(cfg, metadata_bytes=800_000):
    """Size of the Q8_0 GGUF ember-quantize makes: matrices at 34 bytes per 32 weights, norms F32, plus the
    tokenizer and other metadata (the 32,000-token vocab is ~0.72 MB)."""
    norms = (2 * cfg.n_layers + 1) * cfg.dim
    matrices = n_params(cfg) - norms
    return matrices // QK8_0 * 34 + norms * 4 + metadata_bytes


def q8_0_roundtrip(w):
    """w rounded through Q8_0 as llama.cpp's quantize_row_q8_0_ref (and ember's quantize_row) do: per block of
    32, d = amax / 127, q = roundf(x * (1/d)), stored d as fp16; returns fp16(d) * q in float32."""
    x = w.detach().float().reshape(-1, QK8_0)
    d = x.abs().amax(dim=1, keepdim=True) / 127.0
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    x0 = (x * inv).double()  # the float32 product, exactly; rounding half away from zero is exact in float64
    q = torch.sign(x0) * torch.floor(x0.abs() + 0.5)
    return (q.float() * d.half().float()).reshape(w.shape)


# ---------------------------------------------------------------------------------------------------------------
# Data.

def load_tokens(path, device):
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    if len(raw) % 2:
        raise SystemExit("train.py: %s: odd size %d (expected uint16 tokens)" % (path, len(raw)))
    t = torch.frombuffer(raw, dtype=torch.int16).to(torch.int64) & 0xFFFF  # uint16 (no torch.uint16 before 2.3)
    return t.to(device)


def batches_eval(data, seq, max_windows=None):
    """Non-overlapping windows of seq+1 tokens (inputs and shifted targets) over the whole held-out stream."""
    n = (len(data) - 1) // seq
    if max_windows:
        n = min(n, max_windows)
    starts = torch.arange(n, device=data.device) * seq
    return starts


@torch.no_grad()
def evaluate(model, data, seq, batch, ctx, max_windows=None, record=False):
    """Mean cross-entropy over held-out windows; with record, also each layer's FFN firing counts."""
    model.eval()
    ffns = [b.ffn for b in model.layers]
    if record:
        for f in ffns:
            f.fired = torch.zeros(f.gate.out_features, dtype=torch.int64, device=data.device)
            f.tokens = 0
    starts = batches_eval(data, seq, max_windows)
    offs = torch.arange(seq + 1, device=data.device)
    total, count = 0.0, 0
    for i in range(0, len(starts), batch):
        w = data[starts[i:i + batch, None] + offs]
        with ctx:
            logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum")
        total += loss.item()
        count += w[:, 1:].numel()
    stats = None
    if record:
        stats = []
        for f in ffns:
            fired = f.fired.double()
            n_ff = fired.numel()
            top = fired.sort(descending=True).values[: max(1, int(math.ceil(0.2 * n_ff)))]
            stats.append({"sparsity": 1.0 - fired.sum().item() / (f.tokens * n_ff),
                          "hot20_share": top.sum().item() / max(fired.sum().item(), 1.0),
                          "dead": int((f.fired == 0).sum().item())})
            f.fired = None
    model.train()
    return total / max(count, 1), stats


# ---------------------------------------------------------------------------------------------------------------
# Export.

def tensor_bytes(t):
    t = t.detach().to("cpu", torch.float32).contiguous()
    return ctypes.string_at(t.data_ptr(), t.numel() * 4)  # little-endian float32, no numpy needed


def export(model, out_dir, shard_bytes, extra):
    """Writes weights.NNN.bin shards and manifest.json (tensor index and checksums, plus `extra`)."""
    blob = bytearray()
    tensors = []
    for name, t in model.gguf_tensors():
        b = tensor_bytes(t)
        td = t.detach().double().cpu()
        tensors.append({"name": name, "shape": list(t.shape), "offset": len(blob), "bytes": len(b),
                        "sum_abs": td.abs().sum().item(), "sum_sq": (td * td).sum().item()})
        blob += b
    shards = []
    for i in range(0, len(blob), shard_bytes):
        fname = "weights.%03d.bin" % len(shards)
        with open(os.path.join(out_dir, fname), "wb") as f:
            f.write(blob[i:i + shard_bytes])
        shards.append({"file": fname, "bytes": min(shard_bytes, len(blob) - i)})
    manifest = {"format": FORMAT, "version": 1, "dtype": "F32", "hparams": model.cfg.hparams(),
                "shards": shards, "tensors": tensors}
    manifest.update(extra)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def load_exported(weights_dir, device="cpu"):
    """The model from train.py's output folder (manifest.json + shards), in float32."""
    with open(os.path.join(weights_dir, "manifest.json")) as f:
        m = json.load(f)
    if m.get("format") != FORMAT:
        raise SystemExit("%s: not a %s manifest" % (weights_dir, FORMAT))
    h = m["hparams"]
    cfg = Config(**{k: h[k] for k in Config.KEYS})
    model = Model(cfg)
    blob = bytearray()
    for s in m["shards"]:
        with open(os.path.join(weights_dir, s["file"]), "rb") as f:
            blob += f.read()
    params = dict(model.gguf_tensors())
    with torch.no_grad():
        for t in m["tensors"]:
            n = t["bytes"] // 4
            v = torch.frombuffer(blob, dtype=torch.float32, count=n, offset=t["offset"]).clone()
            params[t["name"]].copy_(v.view(t["shape"]))
    return model.to(device).eval(), m


def reference_logits(model, tokens, n_top=8, id_stride=125):
    """Logits for `tokens` from the float32 model and from the same model with every matrix rounded through
    Q8_0, on the CPU in float32. Stores a fixed subset of the vocabulary (every id_stride-th id, the prompt
    tokens and each position's top n_top) plus log-sum-exp and argmax over the whole vocabulary."""
    model = model.to("cpu").float().eval()
    tokens = list(tokens)[: model.cfg.n_ctx]
    x = torch.tensor([tokens], dtype=torch.int64)
    out = {}
    with torch.no_grad():
        full = {"f32": model(x)[0]}
        saved = {n: t.detach().clone() for n, t in model.gguf_tensors() if t.dim() == 2}
        for n, t in model.gguf_tensors():
            if t.dim() == 2:
                t.copy_(q8_0_roundtrip(t))
        full["q8_0"] = model(x)[0]
        for n, t in model.gguf_tensors():
            if n in saved:
                t.copy_(saved[n])
    ids = set(range(0, model.cfg.n_vocab, id_stride)) | set(tokens)
    for row in full["f32"]:
        ids |= set(row.topk(n_top).indices.tolist())
    ids = sorted(ids)
    idx = torch.tensor(ids)
    for name, logits in full.items():
        out[name] = {"logits": [[float("%.7g" % v) for v in row[idx].tolist()] for row in logits],
                     "logsumexp": [float("%.9g" % v) for v in torch.logsumexp(logits.double(), dim=-1).tolist()],
                     "argmax": logits.argmax(dim=-1).tolist()}
    return {"format": "ember-tiny-relu-reference", "version": 1, "tokens": tokens, "ids": ids, "variants": out}


# ---------------------------------------------------------------------------------------------------------------
# Training.

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with train.bin, heldout.bin, meta.json (corpus.sh)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--minutes", type=float, default=7.0, help="wall-clock training budget (the loop only)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = time only)")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=0, help="0 = --heads (no GQA)")
    ap.add_argument("--ff", type=int, default=0, help="FFN width, 0 = 4 * dim")
    ap.add_argument("--untied", action="store_true", help="separate output matrix (default: tied embeddings)")
    ap.add_argument("--seq", type=int, default=256, help="sequence length = the model's context length")
    ap.add_argument("--batch", type=int, default=128, help="sequences per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=200, help="warm-up steps")
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.1,
                    help="dropout on attention and residual branches (the data repeats ~24 times in 7 min)")
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--train-tokens", type=int, default=0, help="use only the first N training tokens (0 = all)")
    ap.add_argument("--eval-every", type=float, default=60.0, help="seconds between held-out evaluations")
    ap.add_argument("--eval-windows", type=int, default=0, help="held-out windows in the final evaluation (0 = all)")
    ap.add_argument("--log-every", type=int, default=200, help="steps between log lines")
    ap.add_argument("--device", default="auto", help="auto, cuda or cpu")
    ap.add_argument("--compile", default="auto", choices=("auto", "on", "off"),
                    help="torch.compile the training forward pass (auto: on CUDA; any failure falls back to eager)")
    ap.add_argument("--keep-best", default="on", choices=("on", "off"),
                    help="export the weights of the best held-out evaluation rather than the last (guards against "
                         "over-fitting the repeated data)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = PyTorch's default)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shard-mib", type=float, default=15.0, help="largest weights file")
    ap.add_argument("--max-files", type=int, default=8, help="most output files (the GPU run returns 8)")
    ap.add_argument("--max-q8-mib", type=float, default=16.0, help="largest Q8_0 model file allowed")
    ap.add_argument("--name", default="", help="general.name of the model (default from the size)")
    args = ap.parse_args()

    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)
    log_file = open(os.path.join(args.out, "train-log.txt"), "w")

    def log(msg):
        line = "[%7.1fs] %s" % (time.time() - t_start, msg)
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    with open(os.path.join(args.data, "meta.json")) as f:
        meta = json.load(f)
    cfg = Config(n_vocab=meta["n_vocab"], dim=args.dim, n_layers=args.layers, n_heads=args.heads,
                 n_kv_heads=args.kv_heads or args.heads, n_ff=args.ff or 4 * args.dim, n_ctx=args.seq,
                 rope_freq_base=10000.0, norm_eps=1e-5, tied=not args.untied, dropout=args.dropout)

    # Checks that need no training: shapes ember can load and quantize, the output fits what comes back.
    def need(cond, msg):
        if not cond:
            raise SystemExit("train.py: " + msg)
    need(cfg.dim % cfg.n_heads == 0 and cfg.n_heads % cfg.n_kv_heads == 0,
         "dim must be a multiple of heads, heads of kv-heads")
    need((cfg.dim // cfg.n_heads) % 2 == 0, "head_dim must be even (RoPE pairs)")
    need(cfg.dim % QK8_0 == 0 and cfg.n_ff % QK8_0 == 0, "dim and ff must be multiples of 32 (Q8_0 blocks)")
    n_par = n_params(cfg)
    q8 = q8_0_file_bytes(cfg)
    shard_bytes = int(args.shard_mib * 2**20) // 4 * 4
    n_shards = -(-n_par * 4 // shard_bytes)
    need(q8 <= args.max_q8_mib * 2**20, "the Q8_0 model would be %.2f MiB > --max-q8-mib %.1f (%d parameters)"
         % (q8 / 2**20, args.max_q8_mib, n_par))
    need(n_shards + 3 <= args.max_files, "%d weight shards + manifest, reference, log > --max-files %d"
         % (n_shards, args.max_files))

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    use_cuda = device.startswith("cuda")
    if use_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if use_cuda else torch.autocast("cpu", enabled=False)
    gpu = torch.cuda.get_device_name(0) if use_cuda else "cpu"
    log("torch %s, device %s (%s), %d parameters, Q8_0 file ~%.2f MiB, %d weight shards"
        % (torch.__version__, device, gpu, n_par, q8 / 2**20, n_shards))

    train = load_tokens(os.path.join(args.data, "train.bin"), device)
    held = load_tokens(os.path.join(args.data, "heldout.bin"), device)
    for name, t in (("train", train), ("heldout", held)):  # a truncated copy shows up here
        need(len(t) == meta[name]["tokens"], "%s.bin holds %d tokens, meta.json says %d"
             % (name, len(t), meta[name]["tokens"]))
    if args.train_tokens:
        train = train[: args.train_tokens]
    need(len(train) > args.seq + 1 and len(held) > args.seq + 1, "too few tokens for --seq %d" % args.seq)
    need(int(train.max()) < cfg.n_vocab, "token id %d >= n_vocab %d" % (int(train.max()), cfg.n_vocab))
    log("data: %d training tokens, %d held-out tokens" % (len(train), len(held)))

    model = Model(cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=use_cuda)
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    fwd = model
    if args.compile == "on" or (args.compile == "auto" and use_cuda):
        if hasattr(torch, "compile"):
            fwd = torch.compile(model)
            log("torch.compile: the first step compiles (its time counts against --minutes)")
        else:
            log("torch.compile not available in torch %s: eager" % torch.__version__)

    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    offs = torch.arange(args.seq + 1, device=device)
    budget = args.minutes * 60.0
    step, tokens_seen, eval_time, train_loss = 0, 0, 0.0, None
    loss_sum, loss_n = torch.zeros((), device=device), 0  # summed on the device: no sync per step
    history = []
    best = None  # (held-out loss, step, weights on the device) of the best evaluation so far
    t_train = time.time()
    last_eval = t_train
    while True:
        elapsed = time.time() - t_train - eval_time
        progress = elapsed / budget
        if progress >= 1.0 or (args.max_steps and step >= args.max_steps):
            break
        if args.max_steps:
            progress = max(progress, step / args.max_steps)
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (
            args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(train) - args.seq - 1, (args.batch,), device=device, generator=gen)
        w = train[starts[:, None] + offs]
        opt.zero_grad(set_to_none=True)
        try:
            with ctx:
                logits = fwd(w[:, :-1])
                loss = F.cross_entropy(logits.float().reshape(-1, cfg.n_vocab), w[:, 1:].reshape(-1))
            loss.backward()
        except Exception as e:  # a torch.compile failure shows up in the first forward or backward
            if fwd is model or step > 0:
                raise
            log("torch.compile failed (%s: %s): eager" % (type(e).__name__, str(e).split("\n")[0][:200]))
            fwd = model
            continue
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        step += 1
        tokens_seen += w[:, 1:].numel()
        loss_sum += loss.detach()
        loss_n += 1
        if step % args.log_every == 0 or step == 1:
            train_loss = loss_sum.item() / loss_n  # mean over the steps since the last log line
            loss_sum.zero_()
            loss_n = 0
            el = time.time() - t_train - eval_time
            log("step %6d  loss %.4f  lr %.2e  epoch %.2f  %.0f tok/s" %
                (step, train_loss, lr, tokens_seen / len(train), tokens_seen / max(el, 1e-9)))
        if time.time() - last_eval > args.eval_every:
            t0 = time.time()
            hl, _ = evaluate(model, held, args.seq, args.batch, ctx, max_windows=256)
            history.append({"step": step, "tokens": tokens_seen, "heldout_loss": round(hl, 4)})
            log("eval  step %d  held-out loss %.4f  ppl %.2f (subset of 256 windows)" % (step, hl, math.exp(hl)))
            if args.keep_best == "on" and (best is None or hl < best[0]):
                best = (hl, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
            eval_time += time.time() - t0  # evaluations and snapshots do not count against the budget
            last_eval = time.time()
    train_secs = time.time() - t_train - eval_time
    if loss_n:
        train_loss = loss_sum.item() / loss_n
    if best is not None:  # the end of training against the best evaluation, on the same subset
        hl, _ = evaluate(model, held, args.seq, args.batch, ctx, max_windows=256)
        if hl > best[0]:
            log("held-out loss at the end %.4f > %.4f at step %d: exporting the weights of step %d"
                % (hl, best[0], best[1], best[1]))
            model.load_state_dict(best[2])
        else:
            best = None
    best_step = best[1] if best is not None else step
    best = None

    held_loss, ffn = evaluate(model, held, args.seq, args.batch, ctx, max_windows=args.eval_windows, record=True)
    log("final: %d steps, %d tokens (%.2f epochs), held-out loss %.4f ppl %.2f"
        % (step, tokens_seen, tokens_seen / len(train), held_loss, math.exp(held_loss)))
    for i, s in enumerate(ffn):
        log("layer %d: FFN sparsity %.4f, hottest 20%% of neurons give %.4f of firings, %d dead"
            % (i, s["sparsity"], s["hot20_share"], s["dead"]))

    name = args.name or "ember tiny-relu %dM" % round(n_par / 1e6)
    results = {
        "steps": step, "exported_step": best_step, "tokens_seen": tokens_seen,
        "epochs": round(tokens_seen / len(train), 3),
        "train_minutes": round(train_secs / 60, 2), "tok_per_s": round(tokens_seen / max(train_secs, 1e-9)),
        "train_loss": round(train_loss, 4) if train_loss is not None else None,
        "heldout_loss": round(held_loss, 4), "heldout_ppl": round(math.exp(held_loss), 3),
        "heldout_tokens": len(held), "train_tokens": len(train), "params": n_par,
        "ffn_sparsity": [round(s["sparsity"], 4) for s in ffn],
        "ffn_hot20_share": [round(s["hot20_share"], 4) for s in ffn],
        "ffn_dead": [s["dead"] for s in ffn],
        "eval_history": history, "device": gpu, "torch": torch.__version__,
        "args": {k: v for k, v in vars(args).items() if k not in ("data", "out")},
    }
    description = ("ReGLU llama trained from scratch by ember's models/tiny-relu recipe: %d tokens of Debian "
                   "English text, %d steps" % (len(train), step))
    export(model, args.out, shard_bytes, {"name": name, "description": description, "results": results,
                                          "corpus": {k: meta[k] for k in ("train", "heldout", "prompt")}})
    prompt = meta.get("prompt_tokens") or held[:16].tolist()
    ref = reference_logits(model, prompt)
    ref["prompt"] = meta.get("prompt", "")
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f)
    files = sorted(os.listdir(args.out))
    need(len(files) <= args.max_files, "wrote %d files > --max-files %d: %s" % (len(files), args.max_files, files))
    log("wrote %s: %s (%.1f s in all)" % (args.out, " ".join(files), time.time() - t_start))
    log_file.close()
    print(json.dumps({k: results[k] for k in results if k not in ("args", "eval_history")}), flush=True)


if __name__ == "__main__":
    main()
