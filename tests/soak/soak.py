#!/usr/bin/env python3
"""Soak: one server under steady mixed load for DURATION seconds, then checks
that it leaked nothing and failed nothing it was not meant to.

The load, all at once, over both transports:
  - steady: lora-bench over gRPC, open loop, 16 adapters of ranks 8..64
    (power-law popularity) in a pool small enough that adapters are evicted
    and swapped in again all the time. Every request must complete.
  - deadlines: lora-bench over gRPC with a per-request deadline shorter than
    most generations (0.1 s for 256-512 tokens: more than 2500 tokens/s per
    sequence would be needed, which no backend here reaches while the other
    loads share its steps). Only DEADLINE_EXCEEDED may fail.
  - quota: lora-bench as a tenant allowed 2 requests in flight, open loop
    at a rate that often has more. Only RESOURCE_EXHAUSTED may fail.
  - churn: over HTTP, load_lora_adapter of a fresh id, a streamed and a
    plain completion on it, unload_lora_adapter; again and again. Nothing
    may fail.
  - cancels: over HTTP, streamed completions whose client hangs up after
    two chunks. The server must count them as client cancels.
Every 2 s: the server's RSS and open file descriptors (/proc) and its
/metrics. After the load: the queue and the running batch drain, the KV
pages return to zero, RSS is flat (after warm-up), descriptors are back to
where they were before the load, /health is 200.

  tests/soak/soak.py --bin build/bin --duration 60 [--out DIR] [--json FILE]
Exit 0 when every check holds; the summary (figures and checks) is printed
and written to --json. Standard library only.
"""
import argparse
import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

BASE_MODEL = "model"  # the served name of the base: the model directory's name
KEYS = {"steady": "soak-steady-key-0123456789", "capped": "soak-capped-key-0123456789"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, **kw).stdout


class Server:
    def __init__(self, bin_dir, data, out, tenants, pool_mb):
        self.grpc = f"127.0.0.1:{free_port()}"
        self.http_port = free_port()
        self.log = open(os.path.join(out, "server.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir, "loraserve"), "serve", "--model", os.path.join(data, "model"),
             "--adapter-root", os.path.join(data, "adapters"), "--listen", self.grpc,
             "--http-listen", f"127.0.0.1:{self.http_port}", "--tenants", tenants,
             # Small enough that 16 adapters of ranks up to 64 and the KV of
             # the running batch do not all fit: evictions and swap-ins.
             "--pool-mb", str(pool_mb), "--max-running", "32", "--http-threads", "2",
             "--log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited at start; see server.log")
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become healthy in 60 s")

    def request(self, method, path, body=None, key=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            headers = {"content-type": "application/json"}
            if key:
                headers["authorization"] = "Bearer " + key
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def get(self, path):
        return self.request("GET", path)

    def metrics(self):
        status, text = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        out = {}
        for line in text.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def proc_figures(self):
        pid = self.proc.pid
        rss_kb = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        threads = len(os.listdir(f"/proc/{pid}/task"))
        return rss_kb / 1024.0, fds, threads

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, what, n=1):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + n


def churn_loop(server, stop, tally, adapters):
    """Hot load / use / unload of fresh ids, over HTTP, as tenant `steady`."""
    k = 0
    rng = random.Random(11)
    while not stop.is_set():
        name = f"churn-{k}"
        k += 1
        path = rng.choice(adapters)
        status, body = server.request("POST", "/v1/load_lora_adapter",
                                      {"lora_name": name, "lora_path": path}, KEYS["steady"])
        tally.add(f"load {status}")
        if status != 200:
            tally.add("unexpected")
            sys.stderr.write(f"churn load {name}: {status} {body[:200]!r}\n")
            continue
        for stream in (True, False):
            status, body = server.request(
                "POST", "/v1/completions",
                {"model": name, "prompt": "The soak test says", "max_tokens": 12,
                 "temperature": 0, "stream": stream}, KEYS["steady"])
            ok = status == 200 and (not stream or body.rstrip().endswith(b"data: [DONE]"))
            tally.add("completion ok" if ok else f"completion {status}")
            if not ok:
                tally.add("unexpected")
                sys.stderr.write(f"churn completion {name}: {status} {body[-200:]!r}\n")
        status, body = server.request("POST", "/v1/unload_lora_adapter", {"lora_name": name},
                                      KEYS["steady"])
        tally.add(f"unload {status}")
        if status != 200:
            tally.add("unexpected")
            sys.stderr.write(f"churn unload {name}: {status} {body[:200]!r}\n")


def cancel_loop(server, stop, tally):
    """Streams whose client hangs up after two chunks."""
    while not stop.is_set():
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        try:
            conn.request("POST", "/v1/completions", body=json.dumps(
                {"model": BASE_MODEL, "prompt": "A long story begins", "max_tokens": 200,
                 "ignore_eos": True, "stream": True}),
                headers={"content-type": "application/json",
                         "authorization": "Bearer " + KEYS["steady"]})
            r = conn.getresponse()
            if r.status != 200:
                tally.add(f"cancel-stream {r.status}")
                tally.add("unexpected")
                continue
            chunks = 0
            while chunks < 2:
                line = r.fp.readline()
                if not line:
                    break
                if line.startswith(b"data: "):
                    chunks += 1
            tally.add("hung up" if chunks == 2 else "ended early")
            if chunks != 2:
                tally.add("unexpected")
        except OSError as e:
            tally.add("unexpected")
            sys.stderr.write(f"cancel stream: {e}\n")
        finally:
            # Closing the socket mid-stream is the client going away.
            conn.sock and conn.sock.close()
            conn.close()
        time.sleep(0.3)


def bench(bin_dir, server, out, name, args):
    """A lora-bench run in the background; its JSON report is read at the end."""
    report = os.path.join(out, f"bench-{name}.json")
    log = open(os.path.join(out, f"bench-{name}.log"), "w")
    p = subprocess.Popen([os.path.join(bin_dir, "lora-bench"), "--addr", server.grpc,
                          "--json", report, "--quiet", "--drain-s", "30"] + args,
                         stdout=log, stderr=subprocess.STDOUT)
    return p, report, log


def pct(a, b):
    return 100.0 * (b - a) / a if a else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="directory with loraserve and lora-bench")
    ap.add_argument("--duration", type=float, default=60, help="seconds of load")
    ap.add_argument("--rate", type=float, default=6, help="steady gRPC requests/s")
    ap.add_argument("--pool-mb", type=int, default=8,
                    help="the unified pool; the default holds the KV of the batch but not "
                         "every adapter at once")
    ap.add_argument("--out", help="work directory (default: a fresh temporary one)")
    ap.add_argument("--json", help="write the summary here too")
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="loraserve-soak-")
    os.makedirs(out, exist_ok=True)
    data = os.path.join(out, "data")
    if not os.path.isdir(os.path.join(data, "model")):
        run([os.path.join(a.bin, "loraserve"), "synth", "--preset", "tiny", "--out", data,
             "--adapters", "16", "--ranks", "8", "16", "32", "64", "--seed", "3"])
    adapters = sorted(os.listdir(os.path.join(data, "adapters")))
    hashes = {t: run([os.path.join(a.bin, "loraserve"), "hash-key"], input=k + "\n").strip()
              for t, k in KEYS.items()}
    tenants = os.path.join(out, "tenants.yaml")
    with open(tenants, "w") as f:
        f.write("tenants:\n"
                f"  - name: steady\n    keys: [\"{hashes['steady']}\"]\n"
                f"  - name: capped\n    keys: [\"{hashes['capped']}\"]\n"
                "    quotas: {max_concurrent_requests: 2}\n")

    server = Server(a.bin, data, out, tenants, a.pool_mb)
    samples = []
    summary = {"duration_s": a.duration, "rate": a.rate, "out": out}
    checks = []
    try:
        rss0, fds0, threads0 = server.proc_figures()
        m0 = server.metrics()
        stop = threading.Event()
        tally = Tally()
        t_start = time.time()

        def sampler():
            while not stop.is_set():
                rss, fds, threads = server.proc_figures()
                m = server.metrics()
                samples.append({"t": round(time.time() - t_start, 1), "rss_mb": round(rss, 1),
                                "fds": fds, "threads": threads,
                                "kv_pages": m.get('loraserve_pool_pages{use="kv"}', -1),
                                "adapter_pages": m.get('loraserve_pool_pages{use="adapter"}', -1),
                                "free_pages": m.get('loraserve_pool_pages{use="free"}', -1),
                                "running": m.get("loraserve_num_requests_running", -1),
                                "waiting": m.get("loraserve_num_requests_waiting", -1)})
                stop.wait(2)

        dur = str(a.duration)
        benches = {
            "steady": bench(a.bin, server, out, "steady", [
                "--api-key", KEYS["steady"], "--setup", data, "--num-adapters", "16",
                "--popularity", "powerlaw", "--rate", str(a.rate), "--duration-s", dur,
                "--prompt-len", "8:48", "--output-len", "8:48", "--seed", "1"]),
            "deadlines": bench(a.bin, server, out, "deadlines", [
                "--api-key", KEYS["steady"], "--base-only", "--rate", "2", "--duration-s", dur,
                "--prompt-len", "8:16", "--output-len", "256:512", "--request-timeout-s", "0.1",
                "--seed", "2"]),
            "quota": bench(a.bin, server, out, "quota", [
                "--api-key", KEYS["capped"], "--base-only", "--rate", "4", "--duration-s", dur,
                "--prompt-len", "8:16", "--output-len", "32:96", "--seed", "3"]),
        }
        threads = [threading.Thread(target=sampler),
                   threading.Thread(target=churn_loop, args=(server, stop, tally, adapters)),
                   threading.Thread(target=cancel_loop, args=(server, stop, tally))]
        for t in threads:
            t.start()
        # The HTTP loops and the sampler run as long as the benches issue.
        reports = {}
        for name, (p, report, log) in benches.items():
            p.wait()
            log.close()
            with open(report) as f:
                reports[name] = json.load(f)
        stop.set()
        for t in threads:
            t.join()

        # Drain: nothing running or waiting, every KV page back.
        drained = False
        deadline = time.time() + 60
        while time.time() < deadline:
            m = server.metrics()
            if (m.get("loraserve_num_requests_running") == 0 and
                    m.get("loraserve_num_requests_waiting") == 0 and
                    m.get('loraserve_pool_pages{use="kv"}') == 0):
                drained = True
                break
            time.sleep(0.5)
        time.sleep(1)  # closed connections and finished threads settle
        rss1, fds1, threads1 = server.proc_figures()
        m1 = server.metrics()
        health = server.get("/health")[0]

        def delta(name):
            return m1.get(name, 0) - m0.get(name, 0)

        runs = {n: {"issued": r["run"]["issued"], "completed": r["run"]["completed"],
                    "errors": r["run"]["errors"], "errors_by_code": r["errors_by_code"]}
                for n, r in reports.items()}
        # RSS after warm-up: the first sample past a quarter of the run (the
        # allocator's arenas and the caches fill first).
        warm = next((s for s in samples if s["t"] >= a.duration / 4), samples[0])
        peak = max(s["rss_mb"] for s in samples)
        summary.update({
            "requests": {n: r["issued"] for n, r in runs.items()},
            "runs": runs,
            "http": tally.counts,
            "server_counters": {
                "success_stop": delta('loraserve_request_success_total{finished_reason="stop"}'),
                "success_length": delta('loraserve_request_success_total{finished_reason="length"}'),
                "client_cancel": delta('loraserve_request_aborts_total{cause="client_cancel"}'),
                "deadline": delta('loraserve_request_aborts_total{cause="deadline"}'),
                "error": delta('loraserve_request_aborts_total{cause="error"}'),
                "swap_ins": delta("loraserve_lora_swap_ins_total"),
                "evictions": delta("loraserve_lora_evictions_total"),
                "preemptions": delta("loraserve_preemptions_total"),
                "steps": delta("loraserve_steps_total")},
            "rss_mb": {"start": round(rss0, 1), "after_warmup": warm["rss_mb"],
                       "peak": peak, "end": round(rss1, 1)},
            "fds": {"start": fds0, "peak": max(s["fds"] for s in samples), "end": fds1},
            "threads": {"start": threads0, "end": threads1},
            "kv_pages_end": m1.get('loraserve_pool_pages{use="kv"}'),
            "samples": samples,
        })

        def check(name, ok, detail):
            checks.append({"check": name, "ok": bool(ok), "detail": detail})

        check("server alive, /health 200", server.proc.poll() is None and health == 200,
              f"health {health}")
        st = runs["steady"]
        check("steady: every request completed", st["errors"] == 0 and st["completed"] > 0,
              f"{st['completed']}/{st['issued']} completed, errors {st['errors_by_code']}")
        dl = runs["deadlines"]
        check("deadlines: only DEADLINE_EXCEEDED, and some",
              set(dl["errors_by_code"]) <= {"DEADLINE_EXCEEDED"} and dl["errors"] > 0,
              f"errors {dl['errors_by_code']}")
        qt = runs["quota"]
        check("quota: only RESOURCE_EXHAUSTED, and some completed",
              set(qt["errors_by_code"]) <= {"RESOURCE_EXHAUSTED"} and qt["completed"] > 0,
              f"{qt['completed']} completed, errors {qt['errors_by_code']}")
        check("churn and cancels over HTTP: nothing unexpected",
              tally.counts.get("unexpected", 0) == 0 and tally.counts.get("hung up", 0) > 0 and
              tally.counts.get("unload 200", 0) > 0, json.dumps(tally.counts))
        check("the server counted the hang-ups as client cancels",
              summary["server_counters"]["client_cancel"] >= tally.counts.get("hung up", 0),
              f"client_cancel +{summary['server_counters']['client_cancel']}, "
              f"hung up {tally.counts.get('hung up', 0)}")
        check("no request failed inside the server", summary["server_counters"]["error"] == 0,
              f"error +{summary['server_counters']['error']}")
        check("drained: nothing running or waiting, KV pages back to 0", drained,
              f"kv pages {summary['kv_pages_end']}")
        # Flat: a leak grows with the requests served; after warm-up the
        # resident set may move by what the allocator keeps, not more.
        slack = max(24.0, 0.10 * warm["rss_mb"])
        check("RSS flat after warm-up", rss1 - warm["rss_mb"] <= slack,
              f"{warm['rss_mb']} MB after warm-up, {round(rss1, 1)} MB at the end "
              f"(allowed +{slack:.0f} MB)")
        check("file descriptors back to the start", fds1 <= fds0 + 4,
              f"{fds0} at the start, {fds1} at the end")
    finally:
        server.stop()
    summary["checks"] = checks
    text = json.dumps(summary, indent=1)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)
    brief = {k: v for k, v in summary.items() if k != "samples"}
    print(json.dumps(brief, indent=1))
    failed = [c for c in checks if not c["ok"]]
    for c in checks:
        print(("ok     " if c["ok"] else "FAILED ") + c["check"] + ": " + c["detail"])
    if failed:
        print(f"soak: {len(failed)} check(s) failed; server log {out}/server.log")
        return 1
    print("soak: every check held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
