#!/usr/bin/env python3
"""Parity check: ember's logits for the packed models against the PyTorch model that train.py trained.

For every position of the reference prompt (reference.json in the weights folder), compares all n_vocab logits:
  - the F32 GGUF (ember-tiny-pack) against PyTorch with the float32 weights;
  - the Q8_0 GGUF (ember-quantize), when given, against PyTorch with every matrix rounded through Q8_0 exactly as
    llama.cpp's reference quantizer rounds it (train.q8_0_roundtrip), so only float summation order differs;
  - both GGUFs against reference.json, the logits train.py computed on the training machine.
Prints max |diff| per position and one JSON line; exits 1 when any max |diff| exceeds --tol. A mismatch in the
RoPE pairing, the norm epsilon, the activation or a transposed tensor shows up as differences of order 1.

Usage: parity.py --weights DIR --f32 MODEL-F32.gguf [--q8 MODEL-Q8_0.gguf] [--bin BUILD/bin] [--tol 1e-3]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402  (the model definition and the Q8_0 rounding)


def ember_logits(tool, model_path, tokens, n_vocab):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "logits.f32")
        subprocess.run([tool, "-m", model_path, "--tokens", ",".join(map(str, tokens)), "-o", out], check=True,
                       stdout=subprocess.DEVNULL)
        with open(out, "rb") as f:
            raw = bytearray(f.read())
    return torch.frombuffer(raw, dtype=torch.float32).view(len(tokens), n_vocab)


def torch_logits(model, tokens, q8_0):
    saved = {}
    with torch.no_grad():
        if q8_0:
            for name, t in model.gguf_tensors():
                if t.dim() == 2:
                    saved[name] = t.detach().clone()
                    t.copy_(train.q8_0_roundtrip(t))
        logits = model(torch.tensor([tokens]))[0].float()
        for name, t in model.gguf_tensors():
            if name in saved:
                t.copy_(saved[name])
    return logits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="train.py's output folder")
    ap.add_argument("--f32", required=True, help="the F32 GGUF from ember-tiny-pack")
    ap.add_argument("--q8", default="", help="the Q8_0 GGUF from ember-quantize")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../build-tiny/bin"),
                    help="folder with ember-tiny-logits")
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    tool = os.path.join(args.bin, "ember-tiny-logits")

    model, manifest = train.load_exported(args.weights)
    with open(os.path.join(args.weights, "reference.json")) as f:
        tokens = json.load(f)["tokens"]
    n_vocab = model.cfg.n_vocab
    checks = [("f32", args.f32, False)] + ([("q8_0", args.q8, True)] if args.q8 else [])
    summary, ok = {}, True
    for variant, path, q8 in checks:
        got = ember_logits(tool, path, tokens, n_vocab)
        want = torch_logits(model, tokens, q8)
        diff = (got - want).abs().max(dim=-1).values
        same_argmax = (got.argmax(-1) == want.argmax(-1)).tolist()
        for p, tok in enumerate(tokens):
            print("%-5s pos %3d token %5d: max |diff| %.3e over %d logits, argmax %s" %
                  (variant, p, tok, diff[p].item(), n_vocab, "same" if same_argmax[p] else "DIFFERS"))
        # And against the reference logits computed on the training machine.
        ref = subprocess.run([tool, "-m", path, "--check", os.path.join(args.weights, "reference.json"),
                              "--variant", variant, "--tol", str(args.tol)], capture_output=True, text=True)
        ref_line = json.loads(ref.stdout.strip().split("\n")[-1]) if ref.stdout.strip() else {"pass": False}
        summary[variant] = {"max_abs_diff": float("%.3e" % diff.max().item()),
                            "argmax_agree": sum(same_argmax), "positions": len(tokens),
                            "reference_max_abs_diff": ref_line.get("max_abs_diff"),
                            "reference_pass": ref_line.get("pass")}
        ok = ok and diff.max().item() <= args.tol and bool(ref_line.get("pass"))
    summary["tol"] = args.tol
    summary["pass"] = ok
    print(json.dumps(summary))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
