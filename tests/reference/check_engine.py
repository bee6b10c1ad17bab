#!/usr/bin/python3
"""Checks `loraserve generate` against the independent float64 reference.

  /usr/bin/python3 tests/reference/check_engine.py --loraserve build/bin/loraserve --workdir DIR

1. `loraserve synth --preset tiny --out DIR/synth --adapters 4 --ranks 8,16,32,64
   --targets q_proj,k_proj,v_proj,o_proj --seed 7`, and the Qwen families:
   `--preset qwen2-tiny` (3 adapters, ranks 8/24/64 on all seven modules) and
   `--preset qwen3-tiny` (3 adapters, ranks 4/16/40 on q/k/v/o).
2. write_variants.py: model variants (llama3 rope scaling, tied embeddings,
   sharded, explicit head_dim + MQA, Qwen2 and Qwen3 written from scratch)
   and PEFT adapters written by Python (rsLoRA, rank/alpha patterns, MLP via
   regex target_modules, F32, F16, Qwen ones).
3. For every case, `loraserve generate --model M [--adapter A] --prompt-ids ...
   --max-new-tokens 32 --json --logits-out F` (stdout: {"tokens","logprobs"};
   F: float32 LE [32, vocab], row i = logits token i was chosen from). The
   Qwen families' "mixed" cases are one `generate` with `--adapter -
   --adapter A0 --adapter A1 --adapter A2`: the base model and three adapters
   of different ranks in one continuously batched run (one JSON line and one
   F.<i> per request), each request checked on its own. Then:
   (a) reference logits teacher-forced on the engine's tokens:
       max|engine - ref| / max|ref| < 1e-3 over all rows;
   (b) engine tokens == reference greedy tokens. The reference is run on the
       engine's prefix, so while tokens agree it *is* the reference greedy
       run; a disagreement where the reference's top-2 margin is below
       1e-3 * logit scale is a near-tie: the comparison stops there (reported);
   (c) engine logprobs == log_softmax(ref logits)[token] within 1e-3;
   (d) every adapter changes the tokens or the logits (max|d| > 0.1) versus
       the same model without it, so ignoring adapters cannot pass.
   Also: engine tokens are the argmax of the engine's own rows; the sharded
   model gives the same output as the single-file one.
Exit status 0 when everything passes, 1 otherwise.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"check_engine.py: cannot run the reference: {e}. It needs torch and numpy "
          f"(run it with /usr/bin/python3, which has Debian's python3-torch).")
    sys.exit(1)

import llama_ref as R  # noqa: E402
import write_variants as W  # noqa: E402

PROMPT = [3, 141, 59, 265, 358, 979, 323, 846, 264, 338, 327, 950]
REL_TOL = 1e-3      # (a) max|d| / max|ref|
TIE_REL = 1e-3      # (b) near-tie margin relative to the logit scale
LOGPROB_TOL = 1e-3  # (c)
ADAPTER_MIN_D = 0.1  # (d)


class Failure(Exception):
    pass


def run(cmd, timeout, what):
    t0 = time.time()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, text=True)
    except subprocess.TimeoutExpired:
        raise Failure(f"{what}: timed out after {timeout}s: {' '.join(cmd)}")
    except OSError as e:
        raise Failure(f"{what}: cannot run {cmd[0]}: {e}")
    if p.returncode != 0:
        raise Failure(f"{what}: exit status {p.returncode}: {' '.join(cmd)}\n"
                      f"--- stderr ---\n{p.stderr.strip()[-3000:]}\n--- stdout ---\n{p.stdout.strip()[-1000:]}")
    return p.stdout, time.time() - t0


def engine_generate(exe, model, adapter, out_file, n, timeout, extra=()):
    res, dt, cmd = engine_generate_batch(exe, model, [adapter], out_file, n, timeout, extra)
    tokens, logprobs, raw = res[0]
    return tokens, logprobs, raw, dt, cmd


def engine_generate_batch(exe, model, adapters, out_file, n, timeout, extra=()):
    """One `loraserve generate` with one request per adapter (None = base) in
    one batch. Returns ([(tokens, logprobs, raw logits)] in order, seconds, cmd)."""
    cmd = [exe, "generate", "--model", model] + list(extra)
    batch = len(adapters) > 1
    for ad in adapters:
        if ad or batch:
            cmd += ["--adapter", ad or "-"]
    cmd += ["--prompt-ids", ",".join(map(str, PROMPT)), "--max-new-tokens", str(n), "--json",
            "--logits-out", out_file]
    files = [f"{out_file}.{i}" for i in range(len(adapters))] if batch else [out_file]
    for f in files:
        if os.path.exists(f):
            os.remove(f)
    stdout, dt = run(cmd, timeout, "loraserve generate")
    objs = []
    for line in stdout.strip().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                objs.append(json.loads(line))
            except ValueError:
                continue
    objs = [o for o in objs if "tokens" in o and "logprobs" in o]
    if len(objs) != len(adapters):
        raise Failure(f"loraserve generate printed {len(objs)} JSON lines with tokens and logprobs "
                      f"for {len(adapters)} requests:\n{stdout[-2000:]}")
    out = []
    for i, (o, f) in enumerate(zip(objs, files)):
        if batch and o.get("adapter") != (adapters[i] or "-"):
            raise Failure(f"JSON line {i} is for adapter {o.get('adapter')!r}, expected {adapters[i] or '-'!r}")
        if not os.path.exists(f):
            raise Failure(f"loraserve generate wrote no --logits-out file {f}")
        out.append(([int(t) for t in o["tokens"]], [float(x) for x in o["logprobs"]],
                    np.fromfile(f, dtype="<f4")))
    return out, dt, cmd


class Case:
    def __init__(self, name, model_key, model_dir, adapter_key=None, adapter_dir=None, base_case=None,
                 batch=None):
        self.name, self.model_key, self.model_dir = name, model_key, model_dir
        self.adapter_key, self.adapter_dir, self.base_case = adapter_key, adapter_dir, base_case
        self.batch = batch  # cases with the same batch key run in one `generate`
        self.tokens = self.rows = None
        self.agreed = 0
        self.row = {}
        self.errors = []
        self.notes = []


# Synthetic Qwen families: (preset, adapters, ranks, targets, seed).
QWEN_SYNTH = [
    ("qwen2-tiny", 3, "8,24,64", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", 5),
    ("qwen3-tiny", 3, "4,16,40", "q_proj,k_proj,v_proj,o_proj", 6),
]


def family_cases(preset, synth_dir):
    """`preset/base` alone, then `preset/mixed:-` and one `preset/mixed:ADAPTER`
    per adapter, all in one batch."""
    base_dir = os.path.join(synth_dir, "model")
    adir = os.path.join(synth_dir, "adapters")
    names = sorted(d for d in os.listdir(adir) if os.path.isdir(os.path.join(adir, d)))
    if not names:
        raise Failure(f"loraserve synth --preset {preset} wrote no adapters under {adir}")
    base = Case(f"{preset}/base", preset, base_dir)
    cases = [base, Case(f"{preset}/mixed:-", preset, base_dir, base_case=base.name, batch=preset)]
    for d in names:
        cases.append(Case(f"{preset}/mixed:{d}", preset, base_dir, d, os.path.join(adir, d), base.name,
                          batch=preset))
    return cases


def build_cases(synth_dir, manifest):
    base_dir = os.path.join(synth_dir, "model")
    cases = [Case("base", "base", base_dir)]
    adir = os.path.join(synth_dir, "adapters")
    synth_adapters = sorted(d for d in os.listdir(adir) if os.path.isdir(os.path.join(adir, d))) \
        if os.path.isdir(adir) else []
    if not synth_adapters:
        raise Failure(f"loraserve synth wrote no adapters under {adir}")
    for d in synth_adapters:
        cases.append(Case(f"synth/{d}", "base", base_dir, d, os.path.join(adir, d), "base"))
    for k, info in manifest["adapters"].items():
        if info["base"] == "base":
            cases.append(Case(f"py/{k}", "base", base_dir, k, info["path"], "base"))
    with_adapter = {"rope_llama3": ("synth", 1), "tied": ("py", "f32"), "sharded": ("synth", 0),
                    "headdim_mqa": ("py", "headdim_all7"), "qwen2_py": ("py", "qwen2_qkv"),
                    "qwen3_py": ("py", "qwen3_all7")}
    for mk, info in manifest["models"].items():
        cases.append(Case(f"{mk}", mk, info["path"]))
        kind, which = with_adapter[mk]
        if kind == "synth":
            ak = synth_adapters[which % len(synth_adapters)]
            ap = os.path.join(adir, ak)
        else:
            ak, ap = which, manifest["adapters"][which]["path"]
        cases.append(Case(f"{mk}+{ak}", mk, info["path"], ak, ap, mk))
    return cases


def check_case(c, ref_model, lora, n, vocab, eos_ids):
    toks, lps, raw = c.tokens, c.logprobs, c.raw
    if raw.size % vocab != 0:
        c.errors.append(f"logits file has {raw.size} floats, not a multiple of vocab {vocab}")
        return
    eng = raw.reshape(-1, vocab).astype(np.float64)
    if len(toks) == 0:
        c.errors.append("engine generated no tokens")
        return
    if len(toks) > n:
        c.errors.append(f"engine generated {len(toks)} tokens > --max-new-tokens {n}")
        return
    if len(toks) < n:
        if toks[-1] in eos_ids:
            c.notes.append(f"stopped at EOS after {len(toks)} tokens")
        else:
            c.errors.append(f"engine generated {len(toks)} < {n} tokens and the last is not EOS {eos_ids}")
    if eng.shape[0] < len(toks):
        c.errors.append(f"logits file has {eng.shape[0]} rows < {len(toks)} tokens")
        return
    if len(lps) != len(toks):
        c.errors.append(f"{len(lps)} logprobs for {len(toks)} tokens")
    m = len(toks)
    eng = eng[:m]
    c.eng_rows = eng
    if not np.all(np.isfinite(eng)):
        c.errors.append("engine logits contain NaN/Inf")
        return
    # (a) teacher-forced reference on the engine's own tokens: one causal pass
    ref = ref_model.score(PROMPT, toks, m, lora).numpy()
    c.ref_rows = ref
    scale = float(np.abs(ref).max())
    diff = np.abs(eng - ref)
    rel = float(diff.max()) / scale
    worst = np.unravel_index(int(diff.argmax()), diff.shape)
    c.row.update(scale=scale, rel=rel, worst=f"step {worst[0]} tok {worst[1]}")
    if rel >= REL_TOL:
        c.errors.append(f"(a) logits: max|engine-ref|/max|ref| = {rel:.3e} >= {REL_TOL} "
                        f"(worst at step {worst[0]}, token {worst[1]}: engine {eng[worst]:.5f} ref {ref[worst]:.5f}; "
                        f"step 0 max|d| {diff[0].max():.3e})")
    # (b) greedy tokens
    agreed = m
    for i in range(m):
        order = np.argsort(-ref[i], kind="stable")
        top, second = int(order[0]), int(order[1])
        margin = ref[i, top] - ref[i, second]
        if toks[i] != top:
            if margin < TIE_REL * scale:
                c.notes.append(f"near-tie at step {i}: ref top-2 margin {margin:.2e} < {TIE_REL}*scale; "
                               f"engine {toks[i]} ref {top}; token comparison stops there")
            else:
                c.errors.append(f"(b) tokens: step {i}: engine chose {toks[i]} (ref logit {ref[i, toks[i]]:.5f}), "
                                f"reference greedy {top} (ref logit {ref[i, top]:.5f}, margin {margin:.3e})")
            agreed = i
            break
    c.agreed = agreed
    c.row["agreed"] = f"{agreed}/{m}" + ("" if m == n else " eos")
    # engine self-consistency: token i is the argmax of engine row i
    for i in range(m):
        et = int(eng[i].argmax())
        if et != toks[i] and eng[i, et] - eng[i, toks[i]] > 1e-6 * max(1.0, scale):
            c.errors.append(f"engine token {toks[i]} at step {i} is not the argmax {et} of its own logits row {i} "
                            f"(row i must be the logits token i was chosen from)")
            break
    # (c) logprobs
    if len(lps) == m:
        ref_lp = torch.log_softmax(torch.from_numpy(ref), -1).numpy()[np.arange(m), toks]
        lerr = np.abs(np.array(lps) - ref_lp)
        c.row["lp"] = float(lerr.max())
        if lerr.max() >= LOGPROB_TOL:
            i = int(lerr.argmax())
            c.errors.append(f"(c) logprobs: step {i}: engine {lps[i]:.6f} vs log_softmax(ref)[{toks[i]}] "
                            f"{ref_lp[i]:.6f} (|d| {lerr[i]:.3e} >= {LOGPROB_TOL})")


def compare_to_base(c, b):
    m = min(len(c.tokens), len(b.tokens))
    if getattr(c, "eng_rows", None) is None or getattr(b, "eng_rows", None) is None:
        return None, None
    d = float(np.abs(c.eng_rows[:m] - b.eng_rows[:m]).max())
    same_tokens = c.tokens == b.tokens
    return d, same_tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loraserve", required=True, help="path to the loraserve binary")
    ap.add_argument("--workdir", required=True, help="scratch directory (its synth/ and variants/ are replaced)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--timeout", type=int, default=120, help="seconds per loraserve invocation")
    ap.add_argument("--engine-args", default="",
                    help="extra arguments for every `loraserve generate`, e.g. \"--backend cpu\"")
    ap.add_argument("--tolerance-scale", type=float, default=1.0,
                    help="multiply tolerances (a), (b) and (c): the cpu-bf16 backend rounds "
                         "activations to bf16 before each projection (ctest runs it at 20)")
    ap.add_argument("--only", help="comma-separated case names to run (base cases are added)")
    ap.add_argument("--full-greedy", action="store_true",
                    help="also run the reference's own step-by-step greedy loop for every case")
    a = ap.parse_args()
    global REL_TOL, TIE_REL, LOGPROB_TOL
    REL_TOL, TIE_REL, LOGPROB_TOL = (t * a.tolerance_scale for t in (REL_TOL, TIE_REL, LOGPROB_TOL))
    torch.set_grad_enabled(False)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    t_start = time.time()
    exe = os.path.abspath(a.loraserve) if os.path.sep in a.loraserve else a.loraserve
    if os.path.sep in exe and not os.access(exe, os.X_OK):
        print(f"FAIL: loraserve binary not found or not executable: {exe}")
        return 1
    n = a.max_new_tokens
    work = os.path.abspath(a.workdir)
    os.makedirs(work, exist_ok=True)
    synth_dir = os.path.join(work, "synth")
    shutil.rmtree(synth_dir, ignore_errors=True)
    try:
        _, dt = run([exe, "synth", "--preset", "tiny", "--out", synth_dir, "--adapters", "4", "--ranks",
                     "8,16,32,64", "--targets", "q_proj,k_proj,v_proj,o_proj", "--seed", "7"], a.timeout,
                    "loraserve synth")
        print(f"loraserve synth: {dt:.1f}s")
        manifest = W.write_all(os.path.join(synth_dir, "model"), os.path.join(work, "variants"))
        cases = build_cases(synth_dir, manifest)
        for preset, n_ad, ranks, targets, seed in QWEN_SYNTH:
            fam_dir = os.path.join(work, "synth-" + preset)
            shutil.rmtree(fam_dir, ignore_errors=True)
            _, dt = run([exe, "synth", "--preset", preset, "--out", fam_dir, "--adapters", str(n_ad),
                         "--ranks", ranks, "--targets", targets, "--seed", str(seed)], a.timeout,
                        "loraserve synth")
            print(f"loraserve synth --preset {preset}: {dt:.1f}s")
            cases += family_cases(preset, fam_dir)
    except Failure as e:
        print(f"FAIL: {e}")
        return 1
    if a.only:
        want = set(a.only.split(","))
        keep = {c.name for c in cases if c.name in want}
        keep |= {c.base_case for c in cases if c.name in keep and c.base_case}
        batches = {c.batch for c in cases if c.name in keep and c.batch}
        keep |= {c.name for c in cases if c.batch in batches}  # a batch runs whole
        cases = [c for c in cases if c.name in keep]
    by_name = {c.name: c for c in cases}
    models, loras = {}, {}
    t_engine = t_ref = 0.0
    logits_dir = os.path.join(work, "logits")
    os.makedirs(logits_dir, exist_ok=True)
    ran_batches = set()
    for c in cases:
        try:
            if c.model_dir not in models:
                t0 = time.time()
                models[c.model_dir] = R.LlamaRef.load(c.model_dir)
                t_ref += time.time() - t0
            ref_model = models[c.model_dir]
            lora = None
            if c.adapter_dir:
                key = (c.model_dir, c.adapter_dir)
                if key not in loras:
                    loras[key] = R.LoraRef.load(c.adapter_dir, ref_model)
                lora = loras[key]
            if c.batch is None:
                out_file = os.path.join(logits_dir, c.name.replace("/", "_") + ".f32")
                c.tokens, c.logprobs, c.raw, dt, c.cmd = engine_generate(exe, c.model_dir, c.adapter_dir,
                                                                         out_file, n, a.timeout,
                                                                         a.engine_args.split())
                t_engine += dt
            elif c.batch not in ran_batches:  # first case of its batch: run the whole batch once
                ran_batches.add(c.batch)
                members = [m for m in cases if m.batch == c.batch]
                out_file = os.path.join(logits_dir, "batch_" + c.batch + ".f32")
                try:
                    res, dt, cmd = engine_generate_batch(exe, c.model_dir, [m.adapter_dir for m in members],
                                                         out_file, n, a.timeout, a.engine_args.split())
                except Failure as e:
                    for m in members:
                        m.errors.append(str(e))
                    continue
                t_engine += dt
                for m, (toks, lps, raw) in zip(members, res):
                    m.tokens, m.logprobs, m.raw, m.cmd = toks, lps, raw, cmd
            if c.tokens is None:
                continue  # its batch failed (reported)
            t0 = time.time()
            check_case(c, ref_model, lora, n, ref_model.cfg.vocab, ref_model.cfg.eos_ids)
            if a.full_greedy or c.name == "base" or c.name.endswith("/base"):
                gt, _ = ref_model.greedy(PROMPT, n, lora, stop_at_eos=len(c.tokens) < n)
                k = next((i for i, (x, y) in enumerate(zip(gt, c.tokens)) if x != y), min(len(gt), len(c.tokens)))
                c.row["full_greedy"] = k
                if k < c.agreed:
                    c.errors.append(f"reference step-by-step greedy {gt} leaves the engine tokens {c.tokens} at "
                                    f"step {k}, before the teacher-forced check's {c.agreed} (reference bug?)")
            t_ref += time.time() - t0
        except Failure as e:
            c.errors.append(str(e))
    # (d) adapters change outputs; sharded == base
    for c in cases:
        if c.tokens is None:
            continue
        if c.base_case:
            b = by_name.get(c.base_case)
            if b is None or b.tokens is None:
                c.errors.append(f"(d) cannot compare with {c.base_case}: it did not run")
                continue
            d, same = compare_to_base(c, b)
            if d is None:
                continue
            if c.adapter_dir is None:  # the base model inside a mixed batch: same as alone
                d0 = float(np.abs(c.eng_rows[0] - b.eng_rows[0]).max())
                c.row["vs_base"] = f"{d:.1e}" + ("" if same else " tok")
                if d0 > REL_TOL * c.row.get("scale", 1.0):
                    c.errors.append(f"the base request in the mixed batch differs from the base model run "
                                    f"alone at step 0: max|d| {d0:.3e}")
                continue
            c.row["vs_base"] = f"{d:.2f}" + ("" if same else " tok")
            if same and d <= ADAPTER_MIN_D:
                c.errors.append(f"(d) adapter {c.adapter_key} does not change the output: same tokens and "
                                f"max|d logits| {d:.3e} <= {ADAPTER_MIN_D} vs {c.base_case}")
        elif c.name == "sharded" and "base" in by_name and by_name["base"].tokens is not None:
            d, same = compare_to_base(c, by_name["base"])
            if d is not None:
                c.row["vs_base"] = f"{d:.1e}" + ("" if same else " tok")
                if not same or d > 1e-5 * c.row.get("scale", 1.0):
                    c.errors.append(f"sharded checkpoint differs from the single-file one: max|d| {d:.3e}, "
                                    f"tokens {'equal' if same else 'differ'}")
        elif c.name != "base" and "base" in by_name and by_name["base"].tokens is not None:
            d, same = compare_to_base(c, by_name["base"])
            if d is not None:
                c.row["vs_base"] = f"{d:.2f}" + ("" if same else " tok")
    # table
    hdr = f"{'case':<32} {'scale':>7} {'max rel d':>10} {'tokens':>8} {'logprob err':>11} {'vs base':>10}  result"
    print(hdr)
    print("-" * len(hdr))
    nfail = 0
    for c in cases:
        r = c.row
        rel = f"{r['rel']:.2e}" if "rel" in r else "-"
        lp = f"{r['lp']:.1e}" if "lp" in r else "-"
        sc = f"{r['scale']:.2f}" if "scale" in r else "-"
        res = "FAIL" if c.errors else "ok"
        nfail += bool(c.errors)
        print(f"{c.name:<32} {sc:>7} {rel:>10} {r.get('agreed', '-'):>8} {lp:>11} {r.get('vs_base', '-'):>10}  {res}")
    for c in cases:
        for note in c.notes:
            print(f"note: {c.name}: {note}")
    for c in cases:
        for err in c.errors:
            print(f"FAIL {c.name}: {err}")
            if getattr(c, "cmd", None):
                print(f"     command: {' '.join(c.cmd)}")
    print(f"\n{len(cases)} cases, {nfail} failed; engine {t_engine:.1f}s, reference {t_ref:.1f}s, "
          f"total {time.time() - t_start:.1f}s")
    print(f"tolerances: (a) rel {REL_TOL}  (b) near-tie {TIE_REL}*scale  (c) logprob {LOGPROB_TOL}  "
          f"(d) adapter effect > {ADAPTER_MIN_D}")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
