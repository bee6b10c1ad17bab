#!/usr/bin/env python3
"""The peer for the published comparison (issue 9): Hugging Face
transformers + PEFT generating for a batch whose rows use different LoRA
adapters, on the same model files and request mix loraserve is measured on.

  python3 clients/bench/peft_peer.py --model SYNTH/model \
      --adapters SYNTH/adapters/adapter-000,SYNTH/adapters/adapter-001,... \
      --num-adapters 32 --batch 64 --prompt-len 128 --new-tokens 128 --json peer.json

Adapter i of --num-adapters is the file adapters[i % len(adapters)] loaded
under its own name (as lora-bench --setup-files registers it with
loraserve). Row r of the batch uses adapter r % num_adapters, through
PEFT's mixed-batch `adapter_names` argument. `--base-only` times the base
model under transformers alone. Prompts are random token ids (the same
lengths as lora-bench's --prompt-len 128:128), and every row produces
exactly --new-tokens tokens (EOS ignored through min_new_tokens). Prints
one JSON line; output tokens/s = batch * new_tokens / generate time.
Needs torch with CUDA, transformers and peft: the GPU machine's image has
them, Debian does not (CI does not run this).
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapters", default="", help="comma-separated PEFT adapter directories")
    ap.add_argument("--num-adapters", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--base-only", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    if not torch.cuda.is_available():
        sys.exit("peft_peer.py: no CUDA device")
    t_load = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.bfloat16)
    model = model.to("cuda").eval()
    gen_kwargs = {}
    peft_version = None
    if not args.base_only:
        import peft
        from peft import PeftModel
        peft_version = peft.__version__
        files = [a for a in args.adapters.split(",") if a]
        if not files:
            sys.exit("peft_peer.py: --adapters is required unless --base-only")
        model = PeftModel.from_pretrained(model, files[0], adapter_name="a0")
        for i in range(1, args.num_adapters):
            model.load_adapter(files[i % len(files)], adapter_name=f"a{i}")
        model.eval()
        gen_kwargs["adapter_names"] = [f"a{r % args.num_adapters}" for r in range(args.batch)]
    load_s = time.perf_counter() - t_load

    g = torch.Generator().manual_seed(args.seed)
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (args.batch, args.prompt_len), generator=g).to("cuda")
    mask = torch.ones_like(ids)

    def generate(new_tokens):
        with torch.inference_mode():
            return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, do_sample=False, pad_token_id=0,
                                  **gen_kwargs)

    generate(4)  # warm-up: kernels, allocator
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = generate(args.new_tokens)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    produced = (out.shape[1] - args.prompt_len) * args.batch
    result = {
        "peer": "transformers" + ("" if args.base_only else "+peft"),
        "transformers": transformers.__version__,
        "peft": peft_version,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0),
        "batch": args.batch,
        "num_adapters": 0 if args.base_only else args.num_adapters,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "load_s": round(load_s, 2),
        "generate_s": round(seconds, 3),
        "output_tokens": produced,
        "output_tokens_per_s": produced / seconds,
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
