#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets added with the request
and checkpoint fuzzers into tests/fuzz/seeds/<target>/ (committed; rerun
after changing this file). Each seed is a small valid input plus a few
near-misses the parsers must refuse, so the fuzzers start from the shapes
real files have. Standard library only (the protobuf seeds are encoded by
hand)."""
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent / "seeds"


def write(target, name, data):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# --- safetensors -----------------------------------------------------------
def safetensors(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape, bytes)] in order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    while pad and len(h) % 8:
        h += b" "
    return struct.pack("<Q", len(h)) + h + data


def f32(n, seed=0):
    return b"".join(struct.pack("<f", ((i + seed) % 13) / 16.0) for i in range(n))


two = safetensors([("a", "F32", [2, 3], f32(6)), ("b", "BF16", [4], b"\x80\x3f" * 4),
                   ("c", "F16", [1, 2], b"\x00\x3c" * 2)], {"format": "pt"})
write("safetensors_fuzz", "valid.safetensors", two)
write("safetensors_fuzz", "empty_tensor.safetensors", safetensors([("z", "F32", [0, 4], b"")]))
write("safetensors_fuzz", "scalar.safetensors", safetensors([("s", "F32", [], f32(1))]))
write("safetensors_fuzz", "header_short.safetensors",
      struct.pack("<Q", struct.unpack("<Q", two[:8])[0] - 1) + two[8:])
write("safetensors_fuzz", "trailing.safetensors", two + b"\x00")
write("safetensors_fuzz", "i64.safetensors", safetensors([("i", "I64", [2], b"\x01" * 16)]))

# --- config.json -----------------------------------------------------------
llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
         "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
         "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False,
         "bos_token_id": 1, "eos_token_id": [2, 3], "torch_dtype": "bfloat16",
         "hidden_act": "silu"}
write("model_config_fuzz", "llama.json", json.dumps(llama, indent=1))
llama3 = dict(llama, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 256})
write("model_config_fuzz", "llama3_rope.json", json.dumps(llama3))
write("model_config_fuzz", "mistral.json", json.dumps(dict(
    llama, architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=None,
    head_dim=32)))
write("model_config_fuzz", "qwen2.json", json.dumps(dict(
    llama, architectures=["Qwen2ForCausalLM"], model_type="qwen2", tie_word_embeddings=True)))
write("model_config_fuzz", "qwen3.json", json.dumps(dict(
    llama, architectures=["Qwen3ForCausalLM"], model_type="qwen3", head_dim=32)))
write("model_config_fuzz", "huge.json", json.dumps(dict(llama, hidden_size=2**40)))

# --- PEFT adapters (base: hidden 16, q 16, kv 8, inter 24, 2 layers) ---------
def peft(r, alpha, targets, **extra):
    c = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
         "target_modules": targets, "bias": "none", "use_rslora": False, "use_dora": False,
         "fan_in_fan_out": False, "rank_pattern": {}, "alpha_pattern": {},
         "modules_to_save": None, "lora_dropout": 0.05, "inference_mode": True}
    c.update(extra)
    return json.dumps(c)


DIMS = {"q_proj": (16, 16), "k_proj": (16, 8), "v_proj": (16, 8), "o_proj": (16, 16),
        "gate_proj": (16, 24), "up_proj": (16, 24), "down_proj": (24, 16)}


def adapter_tensors(modules, rank, layers=(0, 1), dtype="F32"):
    ts = []
    for layer in layers:
        for m in modules:
            parent = "self_attn" if m in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            p = f"base_model.model.model.layers.{layer}.{parent}.{m}"
            i, o = DIMS[m]
            size = 2 if dtype == "BF16" else 4
            raw_a = f32(rank * i, layer) if size == 4 else b"\x80\x3c" * (rank * i)
            raw_b = f32(o * rank, layer + 1) if size == 4 else b"\x80\x3c" * (o * rank)
            ts.append((p + ".lora_A.weight", dtype, [rank, i], raw_a))
            ts.append((p + ".lora_B.weight", dtype, [o, rank], raw_b))
    return safetensors(sorted(ts))


# No NUL: the config alone, against the fuzzer's fixed q/v rank-4 tensors.
write("lora_adapter_fuzz", "config_only.json", peft(4, 8, ["q_proj", "v_proj"]))
write("lora_adapter_fuzz", "config_regex.json", peft(4, 8, r".*\.(q|v)_proj"))
write("lora_adapter_fuzz", "config_patterns.json", peft(
    4, 8, ["q_proj", "v_proj"], rank_pattern={"q_proj": 4}, alpha_pattern={"v_proj": 16},
    use_rslora=True))
write("lora_adapter_fuzz", "qv_rank2.bin",
      peft(2, 4, ["q_proj", "v_proj"]).encode() + b"\0" + adapter_tensors(["q_proj", "v_proj"], 2))
write("lora_adapter_fuzz", "all_bf16.bin",
      peft(1, 2, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
      .encode() + b"\0" + adapter_tensors(list(DIMS), 1, layers=(1,), dtype="BF16"))

# --- tenants ---------------------------------------------------------------
# sha256("" || "abc") with an empty salt; any well-formed hash does for parsing.
H = "sha256$$ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
H2 = "sha256$00ff$" + "0" * 64
write("tenant_config_fuzz", "yaml.yaml", f"""tenants:
  - name: acme
    role: user
    keys: ["{H}"]
    quotas: {{max_adapters: 10, max_adapter_bytes: 1000000000, max_concurrent_requests: 8,
             max_queued_tokens: 100000}}
    adapters: [{{id: support-bot, path: acme/support, public: false}}]
  - name: ops
    role: admin
    keys:
      - "{H2}"
""")
write("tenant_config_fuzz", "json.json", json.dumps({"tenants": [
    {"name": "j", "keys": [H], "adapters": [{"id": "x", "path": "p", "public": True}]}]}))
write("tenant_config_fuzz", "anchors.yaml",
      f"base: &b {{max_adapters: 1}}\ntenants:\n  - name: a\n    keys: [\"{H}\"]\n"
      "    quotas: *b\n")
write("tenant_config_fuzz", "bad_quota.yaml",
      f"tenants:\n  - name: a\n    keys: [\"{H}\"]\n    quotas: {{max_adapters: -7x}}\n")


# --- gRPC GenerateRequest (first byte odd: the server has a tokenizer) -----
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    if wire == 2:
        return key + varint(len(payload)) + payload
    if wire == 5:
        return key + struct.pack("<f", payload)
    raise ValueError(wire)


def sampling(max_new=8, temperature=None, top_p=None, top_k=None, seed=None, stop_ids=(),
             ignore_eos=False, stops=()):
    s = field(1, 0, max_new)
    if temperature is not None:
        s += field(2, 5, temperature)
    if top_p is not None:
        s += field(3, 5, top_p)
    if top_k is not None:
        s += field(4, 0, top_k)
    if seed is not None:
        s += field(5, 0, seed)
    if stop_ids:
        s += field(6, 2, b"".join(varint(i) for i in stop_ids))
    if ignore_eos:
        s += field(7, 0, 1)
    for x in stops:
        s += field(8, 2, x.encode())
    return s


# The fuzzer's first byte picks whether the server has a tokenizer (bit 0)
# and a chat template (bit 2). A field key has bit 0 set only for wire types
# 1, 3 and 5, so the seeds meant to run with both lead with an unknown
# fixed32 field (15, wire type 5 = 0b101), which protobuf parses and keeps
# aside.
WITH_TOKENIZER = field(15, 5, 0.0)


def request(adapter="", ids=(), prompt=None, samp=b"", rid="", tokenizer=False, messages=()):
    out = WITH_TOKENIZER if tokenizer else b""
    if adapter:
        out += field(1, 2, adapter.encode())
    if ids:
        out += field(2, 2, b"".join(varint(i) for i in ids))
    if prompt is not None:
        out += field(3, 2, prompt.encode())
    if samp:
        out += field(4, 2, samp)
    if rid:
        out += field(5, 2, rid.encode())
    for role, content in messages:
        out += field(6, 2, field(1, 2, role.encode()) + field(2, 2, content.encode()))
    return out


write("grpc_request_fuzz", "ids.pb", request("support-bot", (1, 15, 92, 7), samp=sampling(16)))
write("grpc_request_fuzz", "ids_sampling.pb", request(
    "", (1, 2, 3), samp=sampling(4, 0.7, 0.9, 40, 1234, (2, 5), True), rid="req-1"))
write("grpc_request_fuzz", "text_stop.pb", request(
    "acme/bot", prompt="Once upon a time", samp=sampling(32, stops=(".", "\n\n")),
    tokenizer=True))
write("grpc_request_fuzz", "text_no_tokenizer.pb", request("", prompt="héllo", samp=sampling(4)))
write("grpc_request_fuzz", "chat.pb", request(
    "acme/bot", samp=sampling(16), tokenizer=True,
    messages=(("system", "Be brief."), ("user", "héllo 日本語"), ("assistant", "Hi."),
              ("user", "again"))))
write("grpc_request_fuzz", "chat_bad_role.pb", request(
    "", samp=sampling(4), tokenizer=True, messages=(("tool", "x"),)))
write("grpc_request_fuzz", "ids_out_of_vocab.pb", request("", (1, 5000), samp=sampling(2**31)))

# --- OpenAI request bodies (first byte: '0' completion, '1' chat) ----------
def body(kind, obj):
    return kind + json.dumps(obj)


write("openai_request_fuzz", "completion.txt", body("0", {
    "model": "support-bot", "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0,
    "top_p": 0.9, "top_k": -1, "seed": 7, "stop": ["\n", "."], "stream": True,
    "stream_options": {"include_usage": True}, "logprobs": 1, "user": "u"}))
write("openai_request_fuzz", "completion_ids.txt", body("0", {
    "model": "m", "prompt": [[1, 2, 3]], "max_tokens": 4, "ignore_eos": True,
    "stop_token_ids": [2], "return_tokens_as_token_ids": True}))
write("openai_request_fuzz", "completion_refused.txt", body("0", {
    "model": "m", "prompt": "x", "n": 2, "echo": True, "logit_bias": {"1": 3}}))
write("openai_request_fuzz", "chat.txt", body("1", {
    "model": "support-bot", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "héllo 日本語"}]},
        {"role": "assistant", "content": None}],
    "max_completion_tokens": 32, "logprobs": True, "top_logprobs": 2, "stream": False,
    "add_generation_prompt": True}))
write("openai_request_fuzz", "chat_bad_role.txt", body("1", {
    "model": "m", "messages": [{"role": "tool", "content": "x"}]}))
