#!/usr/bin/python3
"""Independent float64 reference of the Hugging Face Llama forward + PEFT LoRA.

Written from the published semantics of transformers' LlamaForCausalLM
(modeling_llama.py; MistralForCausalLM is the same without sliding windows),
Qwen2ForCausalLM (modeling_qwen2.py: nn.Linear(..., bias=True) on q/k/v_proj)
and Qwen3ForCausalLM (modeling_qwen3.py: Qwen3RMSNorm q_norm/k_norm of size
head_dim applied to q_proj/k_proj outputs after view(hidden_shape), i.e. per
head, before apply_rotary_pos_emb; head_dim defaults to 128), and PEFT's
LoraModel (the LoRA delta is added to the biased base layer's output),
without importing either (neither is installed where
loraserve is built). Everything is computed in float64 from the weights as
stored (bf16/f16/f32 decoded exactly), with a full recompute per step (no KV
cache): it is meant to be obviously correct, not fast.

Module use:
    model = LlamaRef.load(model_dir)
    lora = LoraRef.load(adapter_dir, model)        # or None
    logits = model.forward(ids, lora)              # [len(ids), vocab] float64
    toks, rows = model.greedy(prompt, n, lora)

CLI:
    llama_ref.py --model DIR [--adapter DIR] --prompt-ids 1,2,3 --max-new-tokens N
                 [--teacher-ids 5,6,7] [--stop-at-eos]
prints JSON {"tokens": [...], "logits": [[...], ...]}: greedy tokens and the
logits row each was chosen from (row 0 = after the prompt). With
--teacher-ids the continuation is scored instead: row i = logits given
prompt + teacher[:i], for i < min(N, len(teacher)) (and "tokens" echoes the
teacher ids that were scored).
"""

import argparse
import json
import math
import os
import re
import struct
import sys

import numpy as np

try:
    import torch
except ImportError as e:  # pragma: no cover - reported by callers
    torch = None
    _TORCH_IMPORT_ERROR = e

DT = None if torch is None else torch.float64

# --------------------------------------------------------------------------
# safetensors reading (format: u64 LE header length, JSON header, data)
# --------------------------------------------------------------------------

_ST_DTYPES = {
    "BF16": ("<u2", 2),
    "F16": ("<f2", 2),
    "F32": ("<f4", 4),
    "F64": ("<f8", 8),
}


def read_safetensors_header(path):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: truncated header length")
        (n,) = struct.unpack("<Q", raw)
        header = json.loads(f.read(n).decode("utf-8"))
    return n, header


def read_safetensors(path):
    """Returns {name: np.ndarray float64} and the __metadata__ dict."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"{path}: header length {n} beyond file size {len(blob)}")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    out = {}
    meta = header.pop("__metadata__", {}) or {}
    for name, info in header.items():
        dtype = info["dtype"]
        if dtype not in _ST_DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        np_dt, size = _ST_DTYPES[dtype]
        shape = [int(s) for s in info["shape"]]
        b, e = info["data_offsets"]
        numel = int(np.prod(shape)) if shape else 1
        if e - b != numel * size or e > len(data):
            raise ValueError(f"{path}: tensor {name}: bad data_offsets {b},{e}")
        arr = np.frombuffer(data[b:e], dtype=np_dt).reshape(shape)
        out[name] = decode_array(arr, dtype)
    return out, meta


def decode_array(arr, dtype):
    """Raw stored values -> float64 (exact for bf16/f16/f32)."""
    if dtype == "BF16":
        u32 = arr.astype(np.uint32) << np.uint32(16)
        return u32.view(np.float32).astype(np.float64)
    return arr.astype(np.float64)


def load_checkpoint(model_dir):
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            part, _ = read_safetensors(os.path.join(model_dir, shard))
            for name, t in part.items():
                if weight_map.get(name) != shard:
                    raise ValueError(f"{shard}: tensor {name} not mapped to this shard in index")
                tensors[name] = t
        missing = set(weight_map) - set(tensors)
        if missing:
            raise ValueError(f"index lists tensors not found in shards: {sorted(missing)[:5]}")
        return tensors
    if os.path.exists(single):
        return read_safetensors(single)[0]
    raise FileNotFoundError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")


# --------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------

ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
                 "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}


class Config:
    def __init__(self, d):
        self.raw = d
        arch = (d.get("architectures") or [None])[0]
        mt = d.get("model_type", "llama")
        if arch is not None and ARCHITECTURES.get(arch) != mt:
            raise ValueError(f"architectures {arch!r} / model_type {mt!r} not supported")
        if mt not in ARCHITECTURES.values():
            raise ValueError(f"model_type {mt!r} not supported")
        self.family = mt
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {d.get('hidden_act')!r} not supported")
        # Qwen2Attention hard-codes bias=True on q/k/v (and reads no flag);
        # Llama's and Qwen3's attention_bias would put one on o_proj too.
        if (mt != "qwen2" and d.get("attention_bias", False)) or d.get("mlp_bias", False):
            raise ValueError("attention_bias / mlp_bias not supported")
        self.qkv_bias = mt == "qwen2"
        self.qk_norm = mt == "qwen3"
        if mt in ("qwen2", "qwen3") and d.get("use_sliding_window", False):
            raise ValueError("use_sliding_window not supported by the reference")
        self.hidden = int(d["hidden_size"])
        self.inter = int(d["intermediate_size"])
        self.layers = int(d["num_hidden_layers"])
        self.heads = int(d["num_attention_heads"])
        kv = d.get("num_key_value_heads")
        self.kv_heads = int(kv) if kv is not None else self.heads
        hd = d.get("head_dim", 128 if mt == "qwen3" else None)  # Qwen3Config(head_dim=128)
        self.head_dim = int(hd) if hd else self.hidden // self.heads
        self.eps = float(d.get("rms_norm_eps", 1e-6))
        self.theta = float(d.get("rope_theta", 10000.0))
        self.vocab = int(d["vocab_size"])
        self.tie = bool(d.get("tie_word_embeddings", False))
        self.max_pos = int(d.get("max_position_embeddings", 2048))
        self.rope_scaling = d.get("rope_scaling")
        if self.rope_scaling is not None:
            rtype = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            if rtype == "default":
                self.rope_scaling = None
            elif rtype != "llama3":
                raise ValueError(f"rope_scaling type {rtype!r} not supported")
        if d.get("partial_rotary_factor", 1.0) != 1.0:
            raise ValueError("partial_rotary_factor != 1 not supported")
        sw = d.get("sliding_window")
        if sw is not None and d.get("model_type") == "mistral" and sw < self.max_pos:
            raise ValueError("sliding_window attention not supported by the reference")
        eos = d.get("eos_token_id")
        if isinstance(eos, list):
            self.eos_ids = [int(x) for x in eos]
        elif eos is None:
            self.eos_ids = []
        else:
            self.eos_ids = [int(eos)]

    @staticmethod
    def load(model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            return Config(json.load(f))


def rope_inv_freq(head_dim, theta, rope_scaling=None):
    """float64 inv_freq[i] = 1/theta^(2i/d), then Llama-3 scaling exactly as
    transformers' _compute_llama3_parameters (computed here in float64)."""
    exps = np.arange(0, head_dim, 2, dtype=np.float64) / head_dim
    inv_freq = 1.0 / (theta ** exps)
    if rope_scaling is None:
        return inv_freq
    factor = float(rope_scaling["factor"])
    low = float(rope_scaling["low_freq_factor"])
    high = float(rope_scaling["high_freq_factor"])
    old_ctx = float(rope_scaling["original_max_position_embeddings"])
    low_freq_wavelen = old_ctx / low
    high_freq_wavelen = old_ctx / high
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium, smoothed, scaled)


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


def apply_rope(x, cos, sin):
    """x [heads, T, d]; cos/sin [T, d] (frequencies duplicated as HF emb=cat(f,f))."""
    return x * cos + rotate_half(x) * sin


def rms_norm(x, w, eps):
    var = (x * x).mean(dim=-1, keepdim=True)
    return x * torch.rsqrt(var + eps) * w


# --------------------------------------------------------------------------
# PEFT LoRA
# --------------------------------------------------------------------------

LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def module_path(layer, mod):
    """Module name as PEFT sees it in LlamaForCausalLM.named_modules()."""
    sub = "self_attn" if mod in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
    return f"model.layers.{layer}.{sub}.{mod}"


def peft_is_targeted(cfg, key, layer_idx):
    """PEFT check_target_module_exists for our candidate linear modules."""
    tm = cfg.get("target_modules")
    if tm is None:
        raise ValueError("adapter_config: target_modules missing")
    if isinstance(tm, str):
        if tm == "all-linear":
            found = True  # every linear except the output layer
        else:
            found = re.fullmatch(tm, key) is not None
    else:
        found = key in tm or any(key.endswith("." + t) for t in tm)
    ltt = cfg.get("layers_to_transform")
    if found and ltt is not None:
        if isinstance(ltt, int):
            ltt = [ltt]
        found = layer_idx in ltt
    return found


def peft_pattern_lookup(pattern, key, default):
    """rank_pattern / alpha_pattern: key K applies when
    re.match(rf"(.*\\.)?{K}$", module_path)."""
    for k, v in (pattern or {}).items():
        if re.match(rf"(.*\.)?{k}$", key):
            return v
    return default


class LoraRef:
    """Per (layer, module): (A [r,in], B [out,r], scale) as float64 torch tensors."""

    def __init__(self, mods):
        self.mods = mods  # {(layer, mod): (A, B, scale)}

    @staticmethod
    def load(adapter_dir, model=None):
        with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
            cfg = json.load(f)
        for bad in ("use_dora",):
            if cfg.get(bad):
                raise ValueError(f"adapter_config: {bad} not supported")
        if cfg.get("bias", "none") != "none":
            raise ValueError("adapter_config: bias != none not supported")
        if cfg.get("modules_to_save"):
            raise ValueError("adapter_config: modules_to_save not supported")
        if cfg.get("fan_in_fan_out"):
            raise ValueError("adapter_config: fan_in_fan_out not supported for Llama")
        tensors, _ = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
        r0 = int(cfg["r"])
        alpha0 = float(cfg.get("lora_alpha", 8))
        rslora = bool(cfg.get("use_rslora", False))
        n_layers = model.cfg.layers if model is not None else 1 + max(
            int(m.group(1)) for m in (re.search(r"layers\.(\d+)\.", n) for n in tensors) if m)
        mods = {}
        used = set()
        for layer in range(n_layers):
            for mod in LORA_MODULES:
                key = module_path(layer, mod)
                if not peft_is_targeted(cfg, key, layer):
                    continue
                r = int(peft_pattern_lookup(cfg.get("rank_pattern"), key, r0))
                alpha = float(peft_pattern_lookup(cfg.get("alpha_pattern"), key, alpha0))
                na = f"base_model.model.{key}.lora_A.weight"
                nb = f"base_model.model.{key}.lora_B.weight"
                if na not in tensors or nb not in tensors:
                    raise ValueError(f"adapter: targeted module {key} has no {na} / {nb}")
                A = tensors[na]
                B = tensors[nb]
                if A.shape[0] != r or B.shape[1] != r:
                    raise ValueError(f"adapter: {key}: rank {r} from config but A {A.shape} B {B.shape}")
                if model is not None:
                    out_dim, in_dim = model.w[f"{key}.weight"].shape
                    if tuple(A.shape) != (r, in_dim) or tuple(B.shape) != (out_dim, r):
                        raise ValueError(f"adapter: {key}: A {A.shape} B {B.shape} vs base {out_dim}x{in_dim}")
                scale = alpha / math.sqrt(r) if rslora else alpha / r
                mods[(layer, mod)] = (torch.from_numpy(A), torch.from_numpy(B), scale)
                used.update((na, nb))
        extra = set(tensors) - used
        if extra:
            raise ValueError(f"adapter: tensors for untargeted modules: {sorted(extra)[:4]}")
        return LoraRef(mods)

    def describe(self):
        return {f"{l}.{m}": (int(a.shape[0]), s) for (l, m), (a, b, s) in sorted(self.mods.items())}


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------

class LlamaRef:
    def __init__(self, cfg, tensors, dtype=None):
        self.cfg = cfg
        self.dtype = dtype or DT  # float64 unless asked (float32 only to emulate an engine)
        c = cfg
        w = {}
        for k, v in tensors.items():
            if "rotary_emb.inv_freq" in k:
                continue
            w[k] = torch.from_numpy(np.ascontiguousarray(v)).to(self.dtype)
        if c.tie:
            w["lm_head.weight"] = w["model.embed_tokens.weight"]
        expect = {
            "model.embed_tokens.weight": (c.vocab, c.hidden),
            "model.norm.weight": (c.hidden,),
            "lm_head.weight": (c.vocab, c.hidden),
        }
        q_dim, kv_dim = c.heads * c.head_dim, c.kv_heads * c.head_dim
        for i in range(c.layers):
            p = f"model.layers.{i}."
            expect.update({
                p + "input_layernorm.weight": (c.hidden,),
                p + "post_attention_layernorm.weight": (c.hidden,),
                p + "self_attn.q_proj.weight": (q_dim, c.hidden),
                p + "self_attn.k_proj.weight": (kv_dim, c.hidden),
                p + "self_attn.v_proj.weight": (kv_dim, c.hidden),
                p + "self_attn.o_proj.weight": (c.hidden, q_dim),
                p + "mlp.gate_proj.weight": (c.inter, c.hidden),
                p + "mlp.up_proj.weight": (c.inter, c.hidden),
                p + "mlp.down_proj.weight": (c.hidden, c.inter),
            })
            if c.qkv_bias:
                expect.update({p + "self_attn.q_proj.bias": (q_dim,),
                               p + "self_attn.k_proj.bias": (kv_dim,),
                               p + "self_attn.v_proj.bias": (kv_dim,)})
            if c.qk_norm:
                expect.update({p + "self_attn.q_norm.weight": (c.head_dim,),
                               p + "self_attn.k_norm.weight": (c.head_dim,)})
        for k, shp in expect.items():
            if k not in w:
                raise ValueError(f"checkpoint: missing tensor {k}")
            if tuple(w[k].shape) != shp:
                raise ValueError(f"checkpoint: {k} shape {tuple(w[k].shape)} != {shp}")
        unexpected = set(w) - set(expect)
        if unexpected:
            raise ValueError(f"checkpoint: unexpected tensors {sorted(unexpected)[:4]}")
        self.w = w
        self.inv_freq = torch.from_numpy(rope_inv_freq(c.head_dim, c.theta, c.rope_scaling))

    @staticmethod
    def load(model_dir, dtype=None):
        return LlamaRef(Config.load(model_dir), load_checkpoint(model_dir), dtype)

    def _linear(self, x, layer, mod, lora):
        key = module_path(layer, mod)
        y = x @ self.w[key + ".weight"].t()
        if key + ".bias" in self.w:  # nn.Linear(bias=True): PEFT's base_layer(x) includes it
            y = y + self.w[key + ".bias"]
        if lora is not None and (layer, mod) in lora.mods:
            A, B, s = lora.mods[(layer, mod)]
            y = y + s * ((x @ A.t().to(x.dtype)) @ B.t().to(x.dtype))
        return y

    def rope_cos_sin(self, T):
        pos = torch.arange(T, dtype=DT)
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def forward(self, ids, lora=None):
        """ids: list of ints -> logits [T, vocab] float64 (causal, positions 0..T-1)."""
        c = self.cfg
        ids = torch.tensor(list(ids), dtype=torch.long)
        if ids.numel() == 0:
            raise ValueError("empty input")
        if int(ids.max()) >= c.vocab or int(ids.min()) < 0:
            raise ValueError("token id out of range")
        T = ids.numel()
        h = self.w["model.embed_tokens.weight"][ids]
        cos, sin = self.rope_cos_sin(T)
        mask = torch.full((T, T), float("-inf"), dtype=self.dtype).triu(1)
        rep = c.heads // c.kv_heads
        scale = 1.0 / math.sqrt(c.head_dim)
        for i in range(c.layers):
            p = f"model.layers.{i}."
            x = rms_norm(h, self.w[p + "input_layernorm.weight"], c.eps)
            q = self._linear(x, i, "q_proj", lora).view(T, c.heads, c.head_dim)
            k = self._linear(x, i, "k_proj", lora).view(T, c.kv_heads, c.head_dim)
            v = self._linear(x, i, "v_proj", lora).view(T, c.kv_heads, c.head_dim).transpose(0, 1)
            if c.qk_norm:  # Qwen3: RMSNorm over each head's head_dim, before RoPE
                q = rms_norm(q, self.w[p + "self_attn.q_norm.weight"], c.eps)
                k = rms_norm(k, self.w[p + "self_attn.k_norm.weight"], c.eps)
            q = q.transpose(0, 1)
            k = k.transpose(0, 1)
            q = apply_rope(q, cos, sin)
            k = apply_rope(k, cos, sin)
            # GQA: query head j uses kv head j // rep (HF repeat_kv)
            k = k.repeat_interleave(rep, dim=0)
            v = v.repeat_interleave(rep, dim=0)
            scores = (q @ k.transpose(1, 2)) * scale + mask
            probs = torch.softmax(scores, dim=-1)
            attn = (probs @ v).transpose(0, 1).reshape(T, c.heads * c.head_dim)
            h = h + self._linear(attn, i, "o_proj", lora)
            x = rms_norm(h, self.w[p + "post_attention_layernorm.weight"], c.eps)
            g = self._linear(x, i, "gate_proj", lora)
            u = self._linear(x, i, "up_proj", lora)
            h = h + self._linear(torch.nn.functional.silu(g) * u, i, "down_proj", lora)
        h = rms_norm(h, self.w["model.norm.weight"], c.eps)
        return h @ self.w["lm_head.weight"].t()

    def score(self, prompt, teacher, n, lora=None):
        """Rows i < min(n, len(teacher)): logits given prompt + teacher[:i]."""
        n = min(n, len(teacher))
        seq = list(prompt) + list(teacher[:max(n - 1, 0)])
        logits = self.forward(seq, lora)
        return logits[len(prompt) - 1:len(prompt) - 1 + n]

    def greedy(self, prompt, n, lora=None, stop_at_eos=False):
        """Full recompute per step. Returns (tokens, logits rows [len, vocab])."""
        seq = list(prompt)
        toks, rows = [], []
        for _ in range(n):
            row = self.forward(seq, lora)[-1]
            t = int(torch.argmax(row))
            toks.append(t)
            rows.append(row)
            seq.append(t)
            if stop_at_eos and t in self.cfg.eos_ids:
                break
        return toks, torch.stack(rows)


def parse_ids(s):
    return [int(x) for x in s.split(",") if x.strip() != ""]


def main(argv=None):
    if torch is None:
        print(f"llama_ref.py needs torch: {_TORCH_IMPORT_ERROR}", file=sys.stderr)
        return 1
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter")
    ap.add_argument("--prompt-ids", required=True)
    ap.add_argument("--max-new-tokens", type=int, required=True)
    ap.add_argument("--teacher-ids")
    ap.add_argument("--stop-at-eos", action="store_true")
    a = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    model = LlamaRef.load(a.model)
    lora = LoraRef.load(a.adapter, model) if a.adapter else None
    prompt = parse_ids(a.prompt_ids)
    if a.teacher_ids is not None:
        teacher = parse_ids(a.teacher_ids)
        rows = model.score(prompt, teacher, a.max_new_tokens, lora)
        toks = teacher[:rows.shape[0]]
    else:
        toks, rows = model.greedy(prompt, a.max_new_tokens, lora, a.stop_at_eos)
    json.dump({"tokens": toks, "logits": rows.tolist()}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
