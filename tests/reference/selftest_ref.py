#!/usr/bin/python3
"""Self-checks of the reference (llama_ref.py) and the Python writer
(write_variants.py), independent of the C++ engine.

  /usr/bin/python3 tests/reference/selftest_ref.py [--workdir DIR] [--model SYNTH/model]

Checks hand-computed rotary / llama3 numbers, bf16 rounding, safetensors
round trips, LoRA against merged weights, B = 0 identity, attention against a
per-head loop, causality, sharded/tied equivalences, PEFT pattern matching,
and that every Python-written adapter changes greedy tokens. Exit 0 if all
pass.
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"selftest_ref.py: torch and numpy are required ({e}); run with /usr/bin/python3")
    sys.exit(1)

import llama_ref as R  # noqa: E402
import write_variants as W  # noqa: E402

FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def close(a, b, tol):
    return abs(a - b) <= tol


def test_rope_numbers():
    inv = R.rope_inv_freq(4, 10000.0)
    check(np.allclose(inv, [1.0, 0.01], rtol=0, atol=1e-15), f"inv_freq d=4 theta=1e4 -> [1, 0.01]: {inv}")
    inv = R.rope_inv_freq(8, 10000.0)
    check(np.allclose(inv, [1.0, 0.1, 0.01, 0.001], rtol=1e-14), "inv_freq d=8 theta=1e4 -> 1,0.1,0.01,0.001")
    sc = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 64}
    inv0 = R.rope_inv_freq(64, 500000.0)
    inv = R.rope_inv_freq(64, 500000.0, sc)
    # hand: i=0 wavelen 2pi < 16 -> unchanged 1.0
    check(inv[0] == 1.0, "llama3 i=0 high band unchanged")
    # i=3: 500000^(-6/64) = 0.29223, wavelen 21.50 in [16, 64]:
    #   s = (64/21.50 - 1)/3 = 0.65891; inv*((1-s)/8 + s) = 0.20501
    check(close(inv0[3], 0.29223, 1e-4) and close(inv[3], 0.20501, 1e-4),
          f"llama3 i=3 smoothed band: {inv0[3]:.5f} -> {inv[3]:.5f} (hand 0.29223 -> 0.20501)")
    # i=6: 500000^(-12/64) = 1/11.711 = 0.085390, wavelen 73.58 > 64 -> /8 = 0.010674
    check(close(inv[6], 0.010674, 2e-6), f"llama3 i=6 low band divided by 8: {inv[6]:.6f} (hand 0.010674)")
    check(np.allclose(inv[7:], inv0[7:] / 8, rtol=1e-14), "llama3 all lower frequencies divided by 8")
    bands = [(inv[i] == inv0[i], np.isclose(inv[i], inv0[i] / 8)) for i in range(32)]
    n_keep = sum(1 for k, d in bands if k)
    n_div = sum(1 for k, d in bands if d and not k)
    check(n_keep == 3 and n_div == 26, f"llama3 band sizes keep/smooth/div = {n_keep}/{32 - n_keep - n_div}/{n_div}"
          " (expect 3/3/26)")
    # rotate_half: x=[1,2,3,4], d=4, inv=[1,0.01], position p
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]], dtype=torch.float64)  # [heads=1, T=1, d]
    p = 3.0
    a0, a1 = p * 1.0, p * 0.01
    cos = torch.tensor([[math.cos(a0), math.cos(a1), math.cos(a0), math.cos(a1)]], dtype=torch.float64)
    sin = torch.tensor([[math.sin(a0), math.sin(a1), math.sin(a0), math.sin(a1)]], dtype=torch.float64)
    got = R.apply_rope(x, cos, sin)[0, 0].tolist()
    want = [1 * math.cos(a0) - 3 * math.sin(a0), 2 * math.cos(a1) - 4 * math.sin(a1),
            3 * math.cos(a0) + 1 * math.sin(a0), 4 * math.cos(a1) + 2 * math.sin(a1)]
    check(np.allclose(got, want, atol=1e-14), f"rotate_half rope pairs i with i+d/2: {got}")


def test_bf16_and_safetensors(tmp):
    cases = {1.0: 0x3F80, -2.0: 0xC000, 1 + 2 ** -8: 0x3F80, 1 + 3 * 2 ** -8: 0x3F82,
             1 + 2 ** -8 + 2 ** -20: 0x3F81, 0.0: 0x0000}
    got = W.f32_to_bf16_bits(np.array(list(cases), dtype=np.float32)).tolist()
    check(got == list(cases.values()), f"bf16 round-to-nearest-even bit patterns {[hex(g) for g in got]}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10000).astype(np.float32) * 10
    mine = W.f32_to_bf16_bits(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    check(np.array_equal(mine, theirs), "bf16 rounding == torch .to(bfloat16) on 10000 values")
    t = {"a": W.to_storage(x[:6].reshape(2, 3), "BF16"), "b": W.to_storage(x[:5], "F16"),
         "c": W.to_storage(x[:7], "F32")}
    path = os.path.join(tmp, "t.safetensors")
    W.write_safetensors(path, t, {"format": "pt"})
    n, hdr = R.read_safetensors_header(path)
    check((8 + n) % 8 == 0 and hdr["__metadata__"] == {"format": "pt"}, "safetensors header padded, metadata kept")
    back, _ = R.read_safetensors(path)
    check(np.array_equal(back["a"], W.bf16_bits_to_f32(mine[:6]).reshape(2, 3).astype(np.float64)),
          "safetensors BF16 round trip")
    check(np.array_equal(back["b"], x[:5].astype(np.float16).astype(np.float64)), "safetensors F16 round trip")
    check(np.array_equal(back["c"], x[:7].astype(np.float64)), "safetensors F32 round trip")


def naive_attention_forward(model, ids, lora=None):
    """Same model with attention written as explicit loops (no repeat_interleave,
    no mask tensor), for comparison."""
    c = model.cfg
    T = len(ids)
    h = model.w["model.embed_tokens.weight"][torch.tensor(ids)]
    rep = c.heads // c.kv_heads
    for i in range(c.layers):
        p = f"model.layers.{i}."
        x = R.rms_norm(h, model.w[p + "input_layernorm.weight"], c.eps)
        q = model._linear(x, i, "q_proj", lora)
        k = model._linear(x, i, "k_proj", lora)
        v = model._linear(x, i, "v_proj", lora)
        out = torch.zeros(T, c.heads * c.head_dim, dtype=torch.float64)
        d, half = c.head_dim, c.head_dim // 2
        if c.qk_norm:  # Qwen3: every head_dim slice of q and k normalised alone, before RoPE
            for mat, n_heads, wname in ((q, c.heads, "q_norm"), (k, c.kv_heads, "k_norm")):
                wn = model.w[p + f"self_attn.{wname}.weight"]
                for t in range(T):
                    for hh in range(n_heads):
                        sl = mat[t, hh * d:(hh + 1) * d]
                        ms = sum(float(e) * float(e) for e in sl) / d
                        mat[t, hh * d:(hh + 1) * d] = sl / math.sqrt(ms + c.eps) * wn

        def rot(vec, pos):
            r = vec.clone()
            for j in range(half):
                ang = pos * float(model.inv_freq[j])
                cs, sn = math.cos(ang), math.sin(ang)
                r[j] = vec[j] * cs - vec[j + half] * sn
                r[j + half] = vec[j + half] * cs + vec[j] * sn
            return r

        kr = [[rot(k[t, g * d:(g + 1) * d], t) for t in range(T)] for g in range(c.kv_heads)]
        for hh in range(c.heads):
            g = hh // rep
            for t in range(T):
                qv = rot(q[t, hh * d:(hh + 1) * d], t)
                s = torch.stack([qv.dot(kr[g][u]) / math.sqrt(d) for u in range(t + 1)])
                pr = torch.exp(s - s.max())
                pr = pr / pr.sum()
                acc = sum(pr[u] * v[u, g * d:(g + 1) * d] for u in range(t + 1))
                out[t, hh * d:(hh + 1) * d] = acc
        h = h + model._linear(out, i, "o_proj", lora)
        x = R.rms_norm(h, model.w[p + "post_attention_layernorm.weight"], c.eps)
        gte = model._linear(x, i, "gate_proj", lora)
        up = model._linear(x, i, "up_proj", lora)
        h = h + model._linear(gte / (1 + torch.exp(-gte)) * up, i, "down_proj", lora)
    h = R.rms_norm(h, model.w["model.norm.weight"], c.eps)
    return h @ model.w["lm_head.weight"].t()


def merged_model(model, lora):
    m = R.LlamaRef.__new__(R.LlamaRef)
    m.cfg, m.inv_freq, m.dtype = model.cfg, model.inv_freq, model.dtype
    m.w = dict(model.w)
    for (layer, mod), (A, B, s) in lora.mods.items():
        key = R.module_path(layer, mod) + ".weight"
        m.w[key] = m.w[key] + s * (B @ A)
    return m


def test_patterns():
    cfg = {"target_modules": ["q_proj", "v_proj"]}
    check(R.peft_is_targeted(cfg, "model.layers.0.self_attn.q_proj", 0) and
          not R.peft_is_targeted(cfg, "model.layers.0.self_attn.k_proj", 0), "target_modules list suffix match")
    cfg = {"target_modules": r".*\.mlp\.(gate_proj|up_proj)"}
    check(R.peft_is_targeted(cfg, "model.layers.3.mlp.up_proj", 3) and
          not R.peft_is_targeted(cfg, "model.layers.3.mlp.down_proj", 3) and
          not R.peft_is_targeted(cfg, "model.layers.3.self_attn.q_proj", 3), "target_modules regex fullmatch")
    check(not R.peft_is_targeted({"target_modules": "q_proj"}, "model.layers.0.self_attn.q_proj", 0),
          "regex string 'q_proj' does not fullmatch a full module path (PEFT semantics)")
    pat = {"q_proj": 4, "layers.1.self_attn.v_proj": 32}
    check(R.peft_pattern_lookup(pat, "model.layers.2.self_attn.q_proj", 8) == 4, "rank_pattern 'q_proj' hits any layer")
    check(R.peft_pattern_lookup(pat, "model.layers.1.self_attn.v_proj", 8) == 32, "pattern layer-specific hit")
    check(R.peft_pattern_lookup(pat, "model.layers.11.self_attn.v_proj", 8) == 8 and
          R.peft_pattern_lookup(pat, "model.layers.2.self_attn.v_proj", 8) == 8, "pattern no false hit on layer 11 / 2")
    check(R.peft_pattern_lookup({"proj": 3}, "model.layers.0.self_attn.q_proj", 8) == 8,
          "pattern key must match whole dotted component")


def test_models(model_dir, work):
    torch.set_grad_enabled(False)
    man = W.write_all(model_dir, os.path.join(work, "variants"))
    base = R.LlamaRef.load(model_dir)
    prompt = [3, 141, 59, 265, 358, 979, 323, 846, 264, 338, 327, 950]
    ref_logits = base.forward(prompt)
    scale = float(ref_logits.abs().max())
    print(f"     base logits scale {scale:.3f}")
    # attention vs per-head loops (GQA)
    naive = naive_attention_forward(base, prompt[:6])
    check(torch.allclose(naive, base.forward(prompt[:6]), atol=1e-10, rtol=0), "attention == per-head loop (GQA)")
    # causality
    check(torch.allclose(base.forward(prompt[:5])[-1], ref_logits[4], atol=1e-11, rtol=0),
          "causal: prefix forward == row of longer forward")
    # greedy vs score
    toks, rows = base.greedy(prompt, 6)
    check(torch.allclose(base.score(prompt, toks, 6), rows, atol=1e-11, rtol=0), "greedy rows == teacher-forced rows")
    # sharded == base, tied == lm_head := embed
    sh = R.LlamaRef.load(man["models"]["sharded"]["path"])
    check(torch.equal(sh.forward(prompt), ref_logits), "sharded checkpoint == single file (bitwise)")
    tied = R.LlamaRef.load(man["models"]["tied"]["path"])
    t2 = merged_model(base, R.LoraRef({}))
    emb = tied.w["model.embed_tokens.weight"]
    ratio = emb / base.w["model.embed_tokens.weight"]
    fin = torch.isfinite(ratio)
    check(bool((ratio[fin] == ratio[fin][0]).all()), f"tied: embeddings scaled exactly by {float(ratio[fin][0])}")
    t2.w["model.embed_tokens.weight"] = emb
    t2.w["lm_head.weight"] = emb
    check(torch.allclose(tied.forward(prompt), t2.forward(prompt), atol=1e-11, rtol=0), "tied == lm_head := embed")
    rope = R.LlamaRef.load(man["models"]["rope_llama3"]["path"])
    rope_nos = merged_model(rope, R.LoraRef({}))
    rope_nos.inv_freq = torch.from_numpy(R.rope_inv_freq(rope.cfg.head_dim, rope.cfg.theta, None))
    long = prompt + list(range(400, 432))
    d = float((rope.forward(long) - rope_nos.forward(long)).abs().max())
    check(d > 0.05, f"llama3 scaling changes logits over 44 positions (max|d| {d:.3f})")
    hm = R.LlamaRef.load(man["models"]["headdim_mqa"]["path"])
    check(torch.allclose(naive_attention_forward(hm, prompt[:5]), hm.forward(prompt[:5]), atol=1e-10, rtol=0),
          "headdim_mqa: attention == per-head loop (head_dim 32, 1 KV head)")
    # Qwen3: the per-head q/k norms against explicit loops (4 heads of the default 128, 1 KV head)
    q3 = R.LlamaRef.load(man["models"]["qwen3_py"]["path"])
    check(q3.cfg.head_dim == 128 and q3.cfg.qk_norm, "qwen3_py: head_dim defaults to 128, q/k norms on")
    check(torch.allclose(naive_attention_forward(q3, prompt[:5]), q3.forward(prompt[:5]), atol=1e-10, rtol=0),
          "qwen3_py: q/k norm + attention == per-head loops")
    q3_plain = merged_model(q3, R.LoraRef({}))
    q3_plain.cfg = R.Config(dict(q3.cfg.raw, model_type="llama", architectures=["LlamaForCausalLM"],
                                 head_dim=128))
    d = float((q3_plain.forward(prompt) - q3.forward(prompt)).abs().max())
    check(d > 0.1, f"qwen3_py: the q/k norms change the logits (max|d| {d:.2f} without them)")
    # Qwen2: biases of zero give the same weights read as Llama, bitwise; the real ones matter
    q2 = R.LlamaRef.load(man["models"]["qwen2_py"]["path"])
    q2_zero = merged_model(q2, R.LoraRef({}))
    q2_llama = merged_model(q2, R.LoraRef({}))
    q2_llama.cfg = R.Config(dict(q2.cfg.raw, model_type="llama", architectures=["LlamaForCausalLM"]))
    for k_ in [k_ for k_ in q2.w if k_.endswith("_proj.bias")]:
        q2_zero.w[k_] = torch.zeros_like(q2.w[k_])
        del q2_llama.w[k_]
    check(torch.equal(q2_zero.forward(prompt), q2_llama.forward(prompt)), "qwen2_py: zero biases == Llama (bitwise)")
    d = float((q2.forward(prompt) - q2_llama.forward(prompt)).abs().max())
    check(d > 0.1, f"qwen2_py: the q/k/v biases change the logits (max|d| {d:.2f})")
    models = {"base": base, "headdim_mqa": hm, "qwen2_py": q2, "qwen3_py": q3}
    # LoRA: B = 0 identity; LoRA == merged weights (biases untouched); adapters change tokens
    for name, info in man["adapters"].items():
        m = models[info["base"]]
        lora = R.LoraRef.load(info["path"], m)
        zero = R.LoraRef({k: (A, torch.zeros_like(B), s) for k, (A, B, s) in lora.mods.items()})
        check(torch.equal(m.forward(prompt, zero), m.forward(prompt)), f"{name}: B=0 gives base logits exactly")
        lg = m.forward(prompt, lora)
        check(torch.allclose(lg, merged_model(m, lora).forward(prompt), atol=1e-9, rtol=0),
              f"{name}: LoRA == merged W + s*B@A")
        bt, _ = m.greedy(prompt, 16)
        at, _ = m.greedy(prompt, 16, lora)
        dd = float((lg - m.forward(prompt)).abs().max())
        nd = sum(1 for x, y in zip(at, bt) if x != y)
        check(at != bt and dd > 0.1, f"{name}: changes greedy tokens ({nd}/16 differ) and logits (max|d| {dd:.2f})")
    # scales/ranks from config
    pl = R.LoraRef.load(man["adapters"]["patterns"]["path"], base)
    desc = pl.describe()
    check(desc["0.q_proj"] == (4, 4.0) and desc["1.v_proj"] == (8, 4.0) and desc["0.v_proj"] == (8, 2.0)
          and desc["2.down_proj"] == (12, 16 / 12) and desc["1.down_proj"] == (8, 2.0),
          f"patterns: per-module (rank, scale) {desc['0.q_proj']} {desc['1.v_proj']} {desc['2.down_proj']}")
    rl = R.LoraRef.load(man["adapters"]["rslora"]["path"], base)
    check(all(abs(s - 8 / 4.0) < 1e-15 for (_, _, s) in rl.mods.values()), "rslora: scale alpha/sqrt(r) = 2")
    ml = R.LoraRef.load(man["adapters"]["mlp_regex"]["path"], base)
    check(sorted({m for (_, m) in ml.mods}) == ["down_proj", "gate_proj", "up_proj"], "mlp_regex: only MLP modules")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir")
    ap.add_argument("--model", help="tiny base model (default: a Python-made synth-like one)")
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix="llama_ref_selftest_")
    os.makedirs(work, exist_ok=True)
    test_rope_numbers()
    test_bf16_and_safetensors(work)
    test_patterns()
    model_dir = a.model
    if not model_dir:
        model_dir = os.path.join(work, "tiny")
        W.make_model(model_dir, W.TINY_CONFIG, 7)
    test_models(model_dir, work)
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{len(FAILS)} failure(s)" if FAILS else "\nall reference self-checks passed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
