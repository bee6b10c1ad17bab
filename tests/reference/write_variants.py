#!/usr/bin/python3
"""Writes test checkpoints from Python, independently of the C++ writer.

Given a tiny base model (as written by `loraserve synth`), produces under OUT:

  models/rope_llama3/   same weights, rope_theta 500000 and rope_scaling
                        {rope_type llama3, factor 8, low 1, high 4,
                        original_max_position_embeddings 64} so that all three
                        frequency bands (kept / smoothed / divided) occur at
                        head_dim 64; rms_norm_eps changed too
  models/tied/          lm_head.weight dropped, tie_word_embeddings true,
                        embeddings scaled by 2^-k ~ 1/sqrt(hidden) (exact)
  models/sharded/       two shards + model.safetensors.index.json
  models/headdim_mqa/   written from scratch: explicit head_dim (32) that is not
                        hidden/heads, one KV head (MQA), 2 layers, f32 norms
  models/qwen2_py/      Qwen2ForCausalLM from scratch: q/k/v_proj.bias (F32),
                        hidden 192 = 6 heads of 32, 2 KV heads, 3 layers
  models/qwen3_py/      Qwen3ForCausalLM from scratch: q_norm/k_norm, no head_dim
                        in config.json (Qwen3's default 128: q_dim 512 over
                        hidden 256), one KV head, tied embeddings, 2 layers
  adapters/rslora/      use_rslora true (scale alpha/sqrt(r))
  adapters/patterns/    rank_pattern / alpha_pattern overriding per module
  adapters/mlp_regex/   gate/up/down_proj, target_modules as a regex string
  adapters/f32/         all seven modules, tensors stored F32
  adapters/f16/         tensors stored F16
  adapters/headdim_all7/ for models/headdim_mqa, all seven modules
  adapters/qwen2_qkv/   for models/qwen2_py: the biased q/k/v_proj, F32 tensors
  adapters/qwen3_all7/  for models/qwen3_py: all seven modules, rank_pattern
  manifest.json         what was written and which base each adapter fits

Own safetensors writer; bf16 by round-to-nearest-even from float32. Seeded
numpy Generators, same bytes on every run.

  write_variants.py --model SYNTH/model --out DIR
  write_variants.py --make-tiny DIR [--seed N]   # a synth-like tiny model
"""

import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

# --------------------------------------------------------------------------
# safetensors raw I/O
# --------------------------------------------------------------------------

_SIZES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8}
_NP = {"BF16": "<u2", "F16": "<f2", "F32": "<f4", "F64": "<f8"}


def f32_to_bf16_bits(x):
    """float array -> uint16 bf16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32).astype(np.uint64)
    if np.any(np.isnan(np.asarray(x, dtype=np.float32))):
        raise ValueError("NaN in tensor")
    bias = ((u >> np.uint64(16)) & np.uint64(1)) + np.uint64(0x7FFF)
    return ((u + bias) >> np.uint64(16)).astype(np.uint16)


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def to_storage(x, dtype):
    """(dtype, raw array) ready for write_safetensors."""
    if dtype == "BF16":
        return dtype, f32_to_bf16_bits(x)
    return dtype, np.asarray(x, dtype=_NP[dtype])


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (dtype, raw numpy array in storage type)}."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    off = 0
    blobs = []
    for name in sorted(tensors):
        dtype, arr = tensors[name]
        raw = np.ascontiguousarray(arr).astype(_NP[dtype], copy=False).tobytes()
        assert len(raw) == int(np.prod(arr.shape)) * _SIZES[dtype], name
        header[name] = {"dtype": dtype, "shape": [int(s) for s in arr.shape],
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)  # pad header to 8 bytes, as safetensors does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
    return off


def read_safetensors_raw(path):
    """{name: (dtype, raw numpy array)} without decoding."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=_NP[info["dtype"]]).reshape(info["shape"])
        out[name] = (info["dtype"], arr.copy())
    return out


def read_model_raw(model_dir):
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(wm.values())):
            out.update(read_safetensors_raw(os.path.join(model_dir, shard)))
        return out
    return read_safetensors_raw(os.path.join(model_dir, "model.safetensors"))


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------

def head_dim_of(cfg):
    default = 128 if cfg.get("model_type") == "qwen3" else cfg["hidden_size"] // cfg["num_attention_heads"]
    return int(cfg.get("head_dim") or default)


def module_shapes(cfg):
    """{module: (out, in)} for one decoder layer."""
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    hd = head_dim_of(cfg)
    q = cfg["num_attention_heads"] * hd
    kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * hd
    return {"q_proj": (q, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, q),
            "gate_proj": (i, h), "up_proj": (i, h), "down_proj": (h, i)}


def sub_of(mod):
    return "self_attn" if mod in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"


def make_model(out_dir, cfg, seed, weight_dtype="BF16", norm_dtype="BF16", bias_dtype="BF16"):
    """A synth-like model from scratch: embeddings N(0,1) (N(0, 1/h) when
    tied, as lm_head), projections N(0, 1/fan_in), norms around 1; Qwen2's
    q/k/v biases N(0, 0.25), Qwen3's q/k norms 1 + 0.3 N(0,1)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    os.makedirs(out_dir, exist_ok=True)
    h, V = cfg["hidden_size"], cfg["vocab_size"]
    tied = cfg.get("tie_word_embeddings", False)
    emb = rng.standard_normal((V, h)) / (np.sqrt(h) if tied else 1.0)
    t = {"model.embed_tokens.weight": to_storage(emb, weight_dtype),
         "model.norm.weight": to_storage(1 + 0.1 * rng.standard_normal(h), norm_dtype)}
    if not cfg.get("tie_word_embeddings", False):
        t["lm_head.weight"] = to_storage(rng.standard_normal((V, h)) / np.sqrt(h), weight_dtype)
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        t[p + "input_layernorm.weight"] = to_storage(1 + 0.1 * rng.standard_normal(h), norm_dtype)
        t[p + "post_attention_layernorm.weight"] = to_storage(1 + 0.1 * rng.standard_normal(h), norm_dtype)
        for mod, (o, i) in module_shapes(cfg).items():
            t[f"{p}{sub_of(mod)}.{mod}.weight"] = to_storage(rng.standard_normal((o, i)) / np.sqrt(i), weight_dtype)
            if cfg.get("model_type") == "qwen2" and mod in ("q_proj", "k_proj", "v_proj"):
                t[f"{p}self_attn.{mod}.bias"] = to_storage(0.5 * rng.standard_normal(o), bias_dtype)
        if cfg.get("model_type") == "qwen3":
            hd = head_dim_of(cfg)
            for n in ("q_norm", "k_norm"):
                t[f"{p}self_attn.{n}.weight"] = to_storage(1 + 0.3 * rng.standard_normal(hd), norm_dtype)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), t, {"format": "pt"})
    write_json(os.path.join(out_dir, "config.json"), cfg)


TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    "torch_dtype": "bfloat16",
}


def pow2_rescale(dtype_arr, factor):
    """Multiply stored values by a power of two (exact in bf16/f16/f32)."""
    dtype, arr = dtype_arr
    assert factor == 2.0 ** round(np.log2(factor))
    if dtype == "BF16":
        return to_storage(bf16_bits_to_f32(arr) * np.float32(factor), "BF16")
    return dtype, (arr * factor).astype(arr.dtype)


def copy_variant(src_dir, dst_dir, cfg_update=None, drop=(), shards=1, embed_scale=None):
    os.makedirs(dst_dir, exist_ok=True)
    with open(os.path.join(src_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(cfg_update or {})
    tensors = read_model_raw(src_dir)
    for d in drop:
        tensors.pop(d)
    if embed_scale is not None:
        tensors["model.embed_tokens.weight"] = pow2_rescale(tensors["model.embed_tokens.weight"], embed_scale)
    write_json(os.path.join(dst_dir, "config.json"), cfg)
    if shards == 1:
        write_safetensors(os.path.join(dst_dir, "model.safetensors"), tensors, {"format": "pt"})
        return cfg
    # split by layer: first half of layers + embeddings, then the rest
    n_layers = cfg["num_hidden_layers"]

    def shard_of(name):
        if name.startswith("model.layers."):
            return 0 if int(name.split(".")[2]) < n_layers // 2 else 1
        return 0 if name == "model.embed_tokens.weight" else 1

    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    parts = [{} for _ in range(shards)]
    weight_map = {}
    for name, v in tensors.items():
        s = shard_of(name)
        parts[s][name] = v
        weight_map[name] = names[s]
    total = 0
    for s in range(shards):
        total += write_safetensors(os.path.join(dst_dir, names[s]), parts[s], {"format": "pt"})
    write_json(os.path.join(dst_dir, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    return cfg


# --------------------------------------------------------------------------
# adapters
# --------------------------------------------------------------------------

def pattern_lookup(pattern, key, default):
    import re
    for k, v in (pattern or {}).items():
        if re.match(rf"(.*\.)?{k}$", key):
            return v
    return default


def make_adapter(out_dir, base_cfg, modules, r, alpha, seed, dtype="BF16", use_rslora=False,
                 rank_pattern=None, alpha_pattern=None, target_modules=None, b_var=0.5):
    """PEFT-layout adapter. A ~ N(0, 1/in), B ~ N(0, b_var/r)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    os.makedirs(out_dir, exist_ok=True)
    shapes = module_shapes(base_cfg)
    t = {}
    for L in range(base_cfg["num_hidden_layers"]):
        for mod in modules:
            key = f"model.layers.{L}.{sub_of(mod)}.{mod}"
            rr = int(pattern_lookup(rank_pattern, key, r))
            o, i = shapes[mod]
            A = rng.standard_normal((rr, i)) * np.sqrt(1.0 / i)
            B = rng.standard_normal((o, rr)) * np.sqrt(b_var / rr)
            t[f"base_model.model.{key}.lora_A.weight"] = to_storage(A, dtype)
            t[f"base_model.model.{key}.lora_B.weight"] = to_storage(B, dtype)
    write_safetensors(os.path.join(out_dir, "adapter_model.safetensors"), t, {"format": "pt"})
    cfg = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "synth-tiny",
        "r": r, "lora_alpha": alpha, "lora_dropout": 0.0, "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "modules_to_save": None, "layers_to_transform": None, "layers_pattern": None,
        "use_rslora": use_rslora, "use_dora": False, "revision": None,
        "rank_pattern": rank_pattern or {}, "alpha_pattern": alpha_pattern or {},
        "target_modules": target_modules if target_modules is not None else sorted(modules),
    }
    write_json(os.path.join(out_dir, "adapter_config.json"), cfg)


ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]

HEADDIM_CONFIG = dict(TINY_CONFIG, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                      head_dim=32, intermediate_size=384, rms_norm_eps=1e-5, rope_theta=20000.0,
                      max_position_embeddings=256)


QWEN2_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
    "hidden_size": 192, "intermediate_size": 384, "num_hidden_layers": 3,
    "num_attention_heads": 6, "num_key_value_heads": 2, "vocab_size": 1024,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "use_sliding_window": False, "sliding_window": 512, "max_window_layers": 3,
    "tie_word_embeddings": False, "bos_token_id": 1021, "eos_token_id": 1023,
    "attention_dropout": 0.0, "torch_dtype": "bfloat16",
}

QWEN3_CONFIG = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_act": "silu",
    "hidden_size": 256, "intermediate_size": 384, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 1, "vocab_size": 1024,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 1000000,
    "attention_bias": False, "use_sliding_window": False, "sliding_window": None,
    "max_window_layers": 2, "rope_scaling": None,
    "tie_word_embeddings": True, "bos_token_id": 1021, "eos_token_id": 1023,
    "attention_dropout": 0.0, "torch_dtype": "bfloat16",
}


def write_all(model_dir, out, seed=1234):
    with open(os.path.join(model_dir, "config.json")) as f:
        base_cfg = json.load(f)
    if os.path.exists(out):
        shutil.rmtree(out)
    m, a = os.path.join(out, "models"), os.path.join(out, "adapters")
    manifest = {"base": os.path.abspath(model_dir), "models": {}, "adapters": {}}

    def add_model(name, path, note):
        manifest["models"][name] = {"path": os.path.abspath(path), "note": note}

    def add_adapter(name, path, base, note):
        manifest["adapters"][name] = {"path": os.path.abspath(path), "base": base, "note": note}

    copy_variant(model_dir, os.path.join(m, "rope_llama3"), {
        "rope_theta": 500000.0, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64}})
    add_model("rope_llama3", os.path.join(m, "rope_llama3"), "llama3 rope scaling, theta 5e5, eps 1e-5")
    # embeddings scaled by ~1/sqrt(hidden) (a power of two, exact) so the tied logits stay O(1)
    emb_scale = 2.0 ** -round(np.log2(np.sqrt(base_cfg["hidden_size"])))
    copy_variant(model_dir, os.path.join(m, "tied"), {"tie_word_embeddings": True}, drop=("lm_head.weight",),
                 embed_scale=emb_scale)
    add_model("tied", os.path.join(m, "tied"), f"tie_word_embeddings, no lm_head.weight, embed x{emb_scale}")
    copy_variant(model_dir, os.path.join(m, "sharded"), shards=2)
    add_model("sharded", os.path.join(m, "sharded"), "2 shards + index.json (same weights as base)")
    make_model(os.path.join(m, "headdim_mqa"), HEADDIM_CONFIG, seed + 99, norm_dtype="F32")
    add_model("headdim_mqa", os.path.join(m, "headdim_mqa"), "head_dim 32 != 256/4, 1 KV head, F32 norms")

    make_model(os.path.join(m, "qwen2_py"), QWEN2_CONFIG, seed + 98, bias_dtype="F32")
    add_model("qwen2_py", os.path.join(m, "qwen2_py"), "Qwen2: q/k/v biases (F32), 6 heads of 32")
    make_model(os.path.join(m, "qwen3_py"), QWEN3_CONFIG, seed + 97)
    add_model("qwen3_py", os.path.join(m, "qwen3_py"), "Qwen3: q/k norms, default head_dim 128, tied")

    make_adapter(os.path.join(a, "rslora"), base_cfg, ATTN, r=16, alpha=8, seed=seed + 1, use_rslora=True)
    add_adapter("rslora", os.path.join(a, "rslora"), "base", "use_rslora, r16 alpha8 -> scale 2")
    make_adapter(os.path.join(a, "patterns"), base_cfg, ["q_proj", "v_proj", "down_proj"], r=8, alpha=16,
                 seed=seed + 2, rank_pattern={"q_proj": 4, "layers.2.mlp.down_proj": 12},
                 alpha_pattern={"layers.1.self_attn.v_proj": 32})
    add_adapter("patterns", os.path.join(a, "patterns"), "base", "rank_pattern/alpha_pattern")
    make_adapter(os.path.join(a, "mlp_regex"), base_cfg, MLP, r=16, alpha=32, seed=seed + 3,
                 target_modules=r".*\.mlp\.(gate_proj|up_proj|down_proj)")
    add_adapter("mlp_regex", os.path.join(a, "mlp_regex"), "base", "MLP only, regex target_modules")
    make_adapter(os.path.join(a, "f32"), base_cfg, ATTN + MLP, r=8, alpha=16, seed=seed + 4, dtype="F32")
    add_adapter("f32", os.path.join(a, "f32"), "base", "all 7 modules, F32 tensors")
    make_adapter(os.path.join(a, "f16"), base_cfg, ["q_proj", "v_proj", "o_proj"], r=32, alpha=64,
                 seed=seed + 5, dtype="F16")
    add_adapter("f16", os.path.join(a, "f16"), "base", "q/v/o, F16 tensors")
    make_adapter(os.path.join(a, "headdim_all7"), HEADDIM_CONFIG, ATTN + MLP, r=8, alpha=16, seed=seed + 6)
    add_adapter("headdim_all7", os.path.join(a, "headdim_all7"), "headdim_mqa", "all 7 modules")
    make_adapter(os.path.join(a, "qwen2_qkv"), QWEN2_CONFIG, ["q_proj", "k_proj", "v_proj"], r=12, alpha=24,
                 seed=seed + 7, dtype="F32")
    add_adapter("qwen2_qkv", os.path.join(a, "qwen2_qkv"), "qwen2_py", "q/k/v (biased base), F32")
    make_adapter(os.path.join(a, "qwen3_all7"), QWEN3_CONFIG, ATTN + MLP, r=8, alpha=16, seed=seed + 8,
                 rank_pattern={"k_proj": 4, "layers.1.self_attn.q_proj": 20})
    add_adapter("qwen3_all7", os.path.join(a, "qwen3_all7"), "qwen3_py", "all 7 modules, rank_pattern")
    write_json(os.path.join(out, "manifest.json"), manifest)
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="tiny base model dir (loraserve synth output)")
    ap.add_argument("--out", help="output dir (replaced)")
    ap.add_argument("--make-tiny", metavar="DIR", help="write a synth-like tiny model to DIR")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args(argv)
    if a.make_tiny:
        make_model(a.make_tiny, TINY_CONFIG, a.seed)
    if a.model:
        if not a.out:
            ap.error("--out is required with --model")
        man = write_all(a.model, a.out, a.seed)
        print(json.dumps(man, indent=1))
    if not a.model and not a.make_tiny:
        ap.error("nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
