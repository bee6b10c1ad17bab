#!/usr/bin/python3
"""End-to-end test of lora-bench against the real server (CPU backend, tiny model).

1. `loraserve synth` writes a tiny model and 8 adapters into a temporary directory.
2. `loraserve serve` starts on 127.0.0.1 (port 0, read back from --port-file);
   it is always killed at exit.
3. A bounded lora-bench run with --setup (30 requests, Poisson 20/s) must
   complete every request, agree with the server's requests_completed delta,
   and report every latency field with p50 <= p90 <= p99; exit code 0.
4. A trace naming an unknown adapter must end normally with NOT_FOUND errors
   counted by code and exit code 3 (the run finished, some requests failed).

    /usr/bin/python3 clients/lora_bench/tests/bench_e2e.py \
        --loraserve build/bin/loraserve --lora-bench build/bin/lora-bench
"""

import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

EXIT_OK = 0
EXIT_REQUEST_ERRORS = 3
LATENCY_FIELDS = ("ttft", "itl", "tpot", "e2e")
STAT_FIELDS = ("count", "mean", "min", "max", "p50", "p90", "p99")


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def start_server(loraserve, work):
    port_file = os.path.join(work, "port")
    http_port_file = os.path.join(work, "http-port")
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen(
        [loraserve, "serve", "--model", os.path.join(work, "synth", "model"),
         "--adapter-root", os.path.join(work, "synth", "adapters"),
         "--listen", "127.0.0.1:0", "--port-file", port_file, "--pool-mb", "64",
         "--http-listen", "127.0.0.1:0", "--http-port-file", http_port_file,
         "--log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT)

    def stop():
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()

    atexit.register(stop)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail("server exited early with %d; log:\n%s"
                 % (server.returncode, open(log.name).read()))
        try:
            port = open(port_file).read().strip()
            http_port = open(http_port_file).read().strip()
            if port and http_port:
                return "127.0.0.1:" + port, "127.0.0.1:" + http_port
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    fail("server did not write its port within 30 s")


def run_bench(bench, args, json_path):
    cmd = [bench] + args + ["--json", json_path]
    print("+ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=120)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    check(proc.returncode >= 0, "lora-bench died from signal %d" % -proc.returncode)
    check(os.path.exists(json_path), "lora-bench wrote no JSON")
    with open(json_path) as f:
        return proc.returncode, json.load(f)


def check_good_run(rc, report, expected):
    run = report["run"]
    check(rc == EXIT_OK, "bounded run exited %d, want %d" % (rc, EXIT_OK))
    check(run["issued"] == expected, "issued %d, want %d" % (run["issued"], expected))
    check(run["completed"] == expected, "completed %d, want %d" % (run["completed"], expected))
    check(run["errors"] == 0 and report["errors_by_code"] == {},
          "errors: %s" % report["errors_by_code"])
    check(run["cancelled_at_drain"] == 0, "requests cancelled at drain")
    check(run["short_outputs"] == 0, "ignore_eos did not give the asked output lengths")
    check(run["request_throughput"] > 0 and run["output_throughput"] > 0, "zero throughput")

    server = report["server"]
    before, after = server["before"], server["after"]
    check(before is not None and after is not None, "GetStats before/after missing")
    # proto3 JSON writes uint64 as strings.
    delta = int(after["requests_completed"]) - int(before["requests_completed"])
    check(delta == run["completed"],
          "server completed delta %d != lora-bench completed %d" % (delta, run["completed"]))
    check(server["delta"]["requests_completed"] == delta, "delta block disagrees")
    tokens = int(after["tokens_generated"]) - int(before["tokens_generated"])
    check(tokens == run["output_tokens"],
          "server generated %d tokens, lora-bench received %d" % (tokens, run["output_tokens"]))

    for name in LATENCY_FIELDS:
        dist = report["latency_ms"].get(name)
        check(dist is not None, "latency field %s missing" % name)
        for field in STAT_FIELDS:
            check(field in dist, "latency %s.%s missing" % (name, field))
        check(dist["count"] > 0, "latency %s has no samples" % name)
        check(0 <= dist["min"] <= dist["p50"] <= dist["p90"] <= dist["p99"] <= dist["max"],
              "latency %s not ordered: %s" % (name, dist))
        check(dist["min"] <= dist["mean"] <= dist["max"], "latency %s mean out of range" % name)
    check(report["latency_ms"]["ttft"]["count"] == expected, "one TTFT per request")
    for name in ("ttft", "itl", "e2e"):
        cdf = report["cdf_ms"][name]
        check(len(cdf) == 101 and cdf == sorted(cdf), "cdf %s not 101 sorted points" % name)
    for field in ("ttft_attainment", "itl_attainment", "request_attainment"):
        check(0.0 <= report["slo"][field] <= 1.0, "slo %s out of [0, 1]" % field)
    check(report["setup"] is not None and
          report["setup"]["loaded"] + report["setup"]["already_present"] == 8,
          "setup did not register 8 adapters: %s" % report["setup"])
    check(int(after["registered_adapters"]) >= 8, "server has fewer than 8 adapters")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loraserve", required=True)
    parser.add_argument("--lora-bench", required=True)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="lora_bench_e2e.")
    if not args.keep:
        atexit.register(shutil.rmtree, work, True)
    subprocess.run([args.loraserve, "synth", "--preset", "tiny", "--out",
                    os.path.join(work, "synth"), "--adapters", "8", "--ranks", "8", "16", "32",
                    "64", "--seed", "7"], check=True, stdout=subprocess.DEVNULL, timeout=60)
    addr, http_addr = start_server(args.loraserve, work)
    synth = os.path.join(work, "synth")

    # 1. A bounded open-loop run over the 8 adapters, registered by --setup.
    common = ["--addr", addr, "--prompt-len", "8:32", "--output-len", "4:16", "--seed", "3",
              "--drain-s", "30"]
    rc, report = run_bench(args.lora_bench,
                           common + ["--setup", synth, "--num-adapters", "8", "--rate", "20",
                                     "--num-requests", "30"],
                           os.path.join(work, "good.json"))
    check_good_run(rc, report, 30)
    check(report["distinct_adapters_completed"] >= 2, "requests did not spread over adapters")

    # 1b. The same workload as OpenAI HTTP+SSE streams (--api openai).
    rc, report = run_bench(args.lora_bench,
                           common + ["--api", "openai", "--http-addr", http_addr, "--setup", synth,
                                     "--num-adapters", "8", "--rate", "20", "--num-requests", "30"],
                           os.path.join(work, "openai.json"))
    check_good_run(rc, report, 30)

    # 2. --setup again: the adapters exist already, which is not an error.
    rc, report = run_bench(args.lora_bench,
                           common + ["--setup", synth, "--num-adapters", "8", "--users", "4",
                                     "--num-requests", "12", "--popularity", "powerlaw"],
                           os.path.join(work, "again.json"))
    check(rc == EXIT_OK, "second run exited %d" % rc)
    check(report["setup"]["already_present"] == 8, "ALREADY_EXISTS not counted as present")
    check(report["run"]["completed"] == 12, "closed loop did not complete 12 requests")

    # 2b. More ids than files: ids 8..19 load files 0..7 again (--setup-files).
    rc, report = run_bench(args.lora_bench,
                           common + ["--setup", synth, "--num-adapters", "20", "--setup-files",
                                     "8", "--users", "4", "--num-requests", "16"],
                           os.path.join(work, "cycled.json"))
    check(rc == EXIT_OK, "--setup-files run exited %d" % rc)
    check(report["setup"]["loaded"] == 12 and report["setup"]["already_present"] == 8,
          "--setup-files registered %s, want 12 loaded + 8 present" % report["setup"])
    check(int(report["server"]["after"]["registered_adapters"]) >= 20,
          "server has fewer than 20 adapters")
    check(report["run"]["completed"] == 16, "--setup-files run did not complete 16 requests")

    # 3. A trace that names an unknown adapter: errors by code, no crash.
    trace = os.path.join(work, "unknown.jsonl")
    with open(trace, "w") as f:
        for i in range(5):
            f.write(json.dumps({"arrival_s": 0.01 * i, "adapter": "adapter-999",
                                "prompt_len": 8, "output_len": 4}) + "\n")
        f.write(json.dumps({"arrival_s": 0.05, "adapter": 1, "prompt_ids": [1, 2, 3],
                            "output_len": 4}) + "\n")
    rc, report = run_bench(args.lora_bench, ["--addr", addr, "--trace", trace,
                                             "--num-requests", "100"],
                           os.path.join(work, "unknown.json"))
    check(rc == EXIT_REQUEST_ERRORS, "unknown-adapter run exited %d, want %d"
          % (rc, EXIT_REQUEST_ERRORS))
    check(report["errors_by_code"] == {"NOT_FOUND": 5},
          "errors_by_code %s, want NOT_FOUND: 5" % report["errors_by_code"])
    check(report["run"]["completed"] == 1, "the known-adapter request did not complete")
    check("adapter-999" in report["first_error"], "first_error does not name the adapter")
    rc, report = run_bench(args.lora_bench, ["--addr", addr, "--api", "openai", "--http-addr",
                                             http_addr, "--trace", trace, "--num-requests", "100"],
                           os.path.join(work, "unknown-openai.json"))
    check(rc == EXIT_REQUEST_ERRORS, "unknown-adapter run over HTTP exited %d" % rc)
    check(report["errors_by_code"] == {"NOT_FOUND": 5},
          "HTTP errors_by_code %s, want NOT_FOUND: 5" % report["errors_by_code"])
    check("adapter-999" in report["first_error"], "HTTP first_error does not name the adapter")
    print("PASS")


if __name__ == "__main__":
    main()
