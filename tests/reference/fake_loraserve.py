#!/usr/bin/python3
"""A stand-in for the `loraserve` CLI, to test check_engine.py itself.

Implements just `synth` (tiny preset, via write_variants) and `generate`
(llama_ref run in float32, so it has engine-like rounding error) with the
same flags and outputs as the real binary. LORASERVE_FAKE_BUG=<name> injects
a known bug so one can see that the harness catches it:

  ignore_adapter, interleaved_rope, no_llama3, rslora_as_plain,
  ignore_alpha_pattern, shifted_logits, bf16_activations, bad_logprobs,
  ignore_tie (uses a zero lm_head when tied), no_qkv_bias (Qwen2 biases
  dropped), no_qk_norm (Qwen3 q/k norms skipped), qk_norm_after_rope,
  bias_after_lora_scaled (the bias scaled with the LoRA delta),
  batch_leak (in a mixed batch, request i also gets request 1's adapter)

Not used by ctest; for harness development only:
  check_engine.py --loraserve "tests/reference/fake_loraserve.py" --workdir /tmp/x
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama_ref as R  # noqa: E402
import write_variants as W  # noqa: E402
import torch  # noqa: E402

BUG = os.environ.get("LORASERVE_FAKE_BUG", "")


# Stand-ins for the Qwen presets (the shapes of synth's, Python weights).
QWEN_PRESETS = {
    "qwen2-tiny": dict(W.QWEN2_CONFIG, hidden_size=256, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=512, num_hidden_layers=4, tie_word_embeddings=True),
    "qwen3-tiny": dict(W.QWEN3_CONFIG, hidden_size=256, num_attention_heads=8, num_key_value_heads=2,
                       head_dim=64, intermediate_size=512, num_hidden_layers=4, tie_word_embeddings=False),
}


def synth(a):
    if a.preset != "tiny" and a.preset not in QWEN_PRESETS:
        print("fake: only --preset tiny, qwen2-tiny, qwen3-tiny", file=sys.stderr)
        return 2
    W.make_model(os.path.join(a.out, "model"), QWEN_PRESETS.get(a.preset, W.TINY_CONFIG), a.seed)
    with open(os.path.join(a.out, "model", "config.json")) as f:
        cfg = json.load(f)
    ranks = [int(x) for x in a.ranks.split(",")]
    targets = a.targets.split(",")
    for i in range(a.adapters):
        r = ranks[i % len(ranks)]
        W.make_adapter(os.path.join(a.out, "adapters", f"adapter-{i:03d}"), cfg, targets, r=r, alpha=2 * r,
                       seed=a.seed * 1000 + i)
    return 0


def interleaved_rope(x, cos, sin):
    # GPT-J style pairs (2i, 2i+1): the wrong convention for HF Llama
    d = x.shape[-1]
    c, s = cos[..., : d // 2], sin[..., : d // 2]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x1 * c + x0 * s
    return out


PATCHED = []


def patch_forward_bugs(model):
    """no_qk_norm / qk_norm_after_rope: the Qwen3 norm skipped or moved."""
    if BUG not in ("no_qk_norm", "qk_norm_after_rope") or not model.cfg.qk_norm or PATCHED:
        return
    PATCHED.append(True)
    orig_norm, orig_rope = R.rms_norm, R.apply_rope
    hd = model.cfg.head_dim
    norm_w = {}

    def rms_norm(x, w, eps):
        if x.shape[-1] == hd and w.shape[0] == hd and x.dim() == 3:
            if BUG == "no_qk_norm":
                return x
            norm_w.setdefault(x.shape[1], []).append((w, eps))  # heads -> pending norms
            return x
        return orig_norm(x, w, eps)

    def apply_rope(x, cos, sin):
        y = orig_rope(x, cos, sin)
        pending = norm_w.get(x.shape[0])
        if pending:
            w, eps = pending.pop(0)
            y = orig_norm(y, w, eps)
        return y
    R.rms_norm, R.apply_rope = rms_norm, apply_rope


def generate(a):
    adapters = a.adapter or [None]
    outs = []
    for i, ad in enumerate(adapters):
        if BUG == "batch_leak" and len(adapters) > 1 and ad in (None, "-"):
            ad = adapters[1]
        path = a.logits_out if len(adapters) == 1 else (a.logits_out and f"{a.logits_out}.{i}")
        obj = generate_one(a, None if ad in (None, "-") else ad, path)
        if len(adapters) > 1:
            obj = dict(adapter=adapters[i], **obj)
        outs.append(obj)
    for o in outs:
        print(json.dumps(o))
    return 0


def generate_one(a, adapter, logits_out):
    torch.set_grad_enabled(False)
    cfg = R.Config.load(a.model)
    if BUG == "no_llama3":
        cfg.rope_scaling = None
    tensors = R.load_checkpoint(a.model)
    if BUG == "ignore_tie" and cfg.tie:
        cfg.tie = False
        tensors["lm_head.weight"] = np.zeros_like(tensors["model.embed_tokens.weight"])
    if BUG == "no_qkv_bias":
        tensors = {k: v for k, v in tensors.items() if not k.endswith("_proj.bias")}
        cfg.qkv_bias = False
    model = R.LlamaRef(cfg, tensors, torch.float32)
    patch_forward_bugs(model)
    if BUG == "interleaved_rope":
        R.apply_rope = interleaved_rope
    lora = None
    if adapter and BUG != "ignore_adapter":
        acfg_path = os.path.join(adapter, "adapter_config.json")
        lora = R.LoraRef.load(adapter, model)
        with open(acfg_path) as f:
            acfg = json.load(f)
        if BUG == "rslora_as_plain" and acfg.get("use_rslora"):
            lora.mods = {k: (A, B, acfg["lora_alpha"] / A.shape[0]) for k, (A, B, s) in lora.mods.items()}
        if BUG == "ignore_alpha_pattern" and acfg.get("alpha_pattern"):
            lora.mods = {k: (A, B, acfg["lora_alpha"] / A.shape[0]) for k, (A, B, s) in lora.mods.items()}
    if BUG == "bias_after_lora_scaled" and lora is not None:
        orig_lin = model._linear

        def lin_b(x, layer, mod, lr):
            y = orig_lin(x, layer, mod, lr)
            key = R.module_path(layer, mod) + ".bias"
            if key in model.w and (layer, mod) in lr.mods:
                y = y + (lr.mods[(layer, mod)][2] - 1.0) * model.w[key]
            return y
        model._linear = lin_b
    if BUG == "bf16_activations":
        orig = model._linear

        def lin(x, layer, mod, lr):
            y = orig(x, layer, mod, lr)
            return y.to(torch.bfloat16).to(y.dtype)
        model._linear = lin
    prompt = R.parse_ids(a.prompt_ids)
    seq = list(prompt)
    toks, rows, lps = [], [], []
    for _ in range(a.max_new_tokens):
        row = model.forward(seq, lora)[-1].to(torch.float32)
        t = int(torch.argmax(row))
        lp = float(torch.log_softmax(row.double(), -1)[t])
        if BUG == "bad_logprobs":
            lp = float(torch.log_softmax(row.double() / 0.9, -1)[t])
        toks.append(t)
        rows.append(row)
        lps.append(lp)
        seq.append(t)
        if t in cfg.eos_ids:
            break
    out = torch.stack(rows).numpy().astype("<f4")
    if BUG == "shifted_logits":
        out = np.concatenate([out[1:], out[-1:]], axis=0)
    if logits_out:
        with open(logits_out, "wb") as f:
            f.write(out.tobytes())
    return {"tokens": toks, "logprobs": lps}


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth")
    s.add_argument("--preset", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--adapters", type=int, default=0)
    s.add_argument("--ranks", default="8,16,32,64")
    s.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
    s.add_argument("--seed", type=int, default=0)
    g = sub.add_parser("generate")
    g.add_argument("--model", required=True)
    g.add_argument("--adapter", action="append")
    g.add_argument("--prompt-ids", required=True)
    g.add_argument("--max-new-tokens", type=int, default=16)
    g.add_argument("--json", action="store_true")
    g.add_argument("--logits-out")
    a = ap.parse_args()
    return synth(a) if a.cmd == "synth" else generate(a)


if __name__ == "__main__":
    sys.exit(main())
