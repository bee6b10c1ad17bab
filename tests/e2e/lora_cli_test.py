#!/usr/bin/env python3
"""lora-cli against the real server on 127.0.0.1: health, load, list,
generate (equal to `loraserve generate` offline), stats, unload, and errors
with exit code 1 and the gRPC code on stderr. Stdlib only."""
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
