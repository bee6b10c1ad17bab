#!/usr/bin/env python3
"""lora-cli against the real server on 127.0.0.1: health, load, list,
generate (equal to `loraserve generate` offline), generate --chat and
--messages (equal to the ids of the text `loraserve chat-template` renders),
stats, unload, and errors with exit code 1 and the gRPC code on stderr.
Stdlib only."""
import json
import os
import subprocess
import sys
import tempfile
import time


def run(args, check=True):
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        sys.exit(f"FAILED: {' '.join(args)}\nexit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def check_chat(loraserve, c, d):
    """--chat (and --system) and --messages send a chat that the server renders
    with the model's template: the same tokens as the rendered text's ids."""
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name three colours."}]
    with open(os.path.join(d, "model", "tokenizer_config.json")) as f:
        config = json.load(f)
    with open(os.path.join(d, "template.jinja"), "w") as f:
        f.write(config["chat_template"])
    with open(os.path.join(d, "context.json"), "w") as f:
        json.dump({"messages": messages, "add_generation_prompt": True,
                   "bos_token": config["bos_token"], "eos_token": config["eos_token"]}, f)
    rendered = run([loraserve, "chat-template", "--template", os.path.join(d, "template.jinja"),
                    "--context", os.path.join(d, "context.json")]).stdout
    with open(os.path.join(d, "rendered.txt"), "w") as f:
        f.write(rendered)
    # No special tokens added: the template wrote the BOS.
    ids = json.loads(run([loraserve, "tokenize", "--tokenizer",
                          os.path.join(d, "model", "tokenizer.json"), "--file",
                          os.path.join(d, "rendered.txt"), "--json"]).stdout)["ids"]
    sampling = ["--max-new-tokens", "10", "--ignore-eos", "--json"]
    plain = json.loads(run(c + ["generate", "--adapter", "a1", "--prompt-ids",
                                ",".join(map(str, ids))] + sampling).stdout)
    chat = json.loads(run(c + ["generate", "--adapter", "a1", "--chat", "--system",
                               messages[0]["content"], "--prompt", messages[1]["content"]]
                              + sampling).stdout)
    assert chat["tokens"] == plain["tokens"], (chat, plain)
    assert chat["prompt_tokens"] == len(ids), (chat["prompt_tokens"], len(ids))
    assert chat["text"] and chat["text"] == plain["text"], (chat, plain)
    with open(os.path.join(d, "messages.json"), "w") as f:
        json.dump(messages, f)
    from_file = json.loads(run(c + ["generate", "--adapter", "a1", "--messages",
                                    os.path.join(d, "messages.json")] + sampling).stdout)
    assert from_file["tokens"] == plain["tokens"], (from_file, plain)
    # Streamed (not --json): the reply is printed as text.
    streamed = run(c + ["generate", "--chat", "--prompt", "hi", "--max-new-tokens", "4"])
    assert "finish_reason: length" in streamed.stdout, streamed.stdout
    # Refusals: a role the server does not know; flags that do not go together.
    with open(os.path.join(d, "bad.json"), "w") as f:
        json.dump([{"role": "wizard", "content": "hi"}], f)
    bad = run(c + ["generate", "--messages", os.path.join(d, "bad.json")], check=False)
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "wizard" in bad.stderr, \
        (bad.returncode, bad.stderr)
    bad = run(c + ["generate", "--system", "x", "--prompt", "hi"], check=False)
    assert bad.returncode == 2, (bad.returncode, bad.stderr)
    bad = run(c + ["generate", "--chat", "--prompt-ids", "1,2"], check=False)
    assert bad.returncode == 2, (bad.returncode, bad.stderr)


def main():
    loraserve, cli = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="loraserve-cli-") as d:
        run([loraserve, "synth", "--preset", "tiny", "--out", d, "--adapters", "2",
             "--ranks", "8,16", "--seed", "9"])
        port_file = os.path.join(d, "port")
        log = open(os.path.join(d, "server.log"), "w")
        server = subprocess.Popen([loraserve, "serve", "--model", f"{d}/model", "--adapter-root",
                                   f"{d}/adapters", "--listen", "127.0.0.1:0", "--port-file",
                                   port_file, "--pool-mb", "32"], stdout=log, stderr=log)
        try:
            for _ in range(200):
                if os.path.exists(port_file) and open(port_file).read().strip():
                    break
                time.sleep(0.05)
            addr = "127.0.0.1:" + open(port_file).read().strip()
            c = [cli, "--addr", addr]
            assert run(c + ["health"]).stdout.strip() == "SERVING"
            run(c + ["load", "--id", "a1", "--path", "adapter-001"])
            listed = json.loads(run(c + ["list", "--json"]).stdout)
            ids = [a["adapter_id"] for a in listed["adapters"]]
            assert "a1" in ids, listed
            served = json.loads(run(c + ["generate", "--adapter", "a1", "--prompt-ids", "1,5,9,200",
                                         "--max-new-tokens", "12", "--ignore-eos", "--json"]).stdout)
            offline = json.loads(run([loraserve, "generate", "--model", f"{d}/model", "--adapter",
                                      f"{d}/adapters/adapter-001", "--prompt-ids", "1,5,9,200",
                                      "--max-new-tokens", "12", "--json"]).stdout)
            assert served["tokens"] == offline["tokens"], (served, offline)
            assert all(abs(a - b) < 1e-3 for a, b in zip(served["logprobs"], offline["logprobs"]))
            assert served["finish_reason"] == "length" and served["completion_tokens"] == 12
            check_chat(loraserve, c, d)
            stats = json.loads(run(c + ["stats", "--json"]).stdout)
            assert int(stats["requests_completed"]) >= 1, stats
            bad = run(c + ["generate", "--adapter", "nope", "--prompt-ids", "1"], check=False)
            assert bad.returncode == 1 and "NOT_FOUND" in bad.stderr, (bad.returncode, bad.stderr)
            bad = run(c + ["load", "--id", "x", "--path", "../model"], check=False)
            assert bad.returncode == 1 and "PERMISSION_DENIED" in bad.stderr, bad.stderr
            run(c + ["unload", "--id", "a1"])
            bad = run(c + ["unload", "--id", "a1"], check=False)
            assert bad.returncode == 1 and "NOT_FOUND" in bad.stderr, bad.stderr
        finally:
            server.terminate()
            server.wait(timeout=30)
    print("lora-cli e2e: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
