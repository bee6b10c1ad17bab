#!/usr/bin/python3
"""Plots a lora-bench matrix: throughput vs number of adapters, TTFT and ITL CDFs.

Reads the --json files that clients/bench/run_matrix.sh writes (one per point)
and writes one PNG with three panels. Needs Debian's python3-matplotlib.

    /usr/bin/python3 clients/bench/plot.py --out matrix.png results/*.json
"""

import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def point_n(report):
    """Number of adapters the point's requests used (0 = base model)."""
    cfg = report["config"]
    return 0 if cfg.get("base_only") else int(cfg.get("num_adapters", 0))


def label(report):
    n = point_n(report)
    return "base" if n == 0 else "N=%d" % n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="lora-bench --json files")
    parser.add_argument("--out", default="matrix.png")
    parser.add_argument("--title", default="")
    args = parser.parse_args()

    reports = []
    for path in args.json:
        with open(path) as f:
            report = json.load(f)
        if report.get("tool") != "lora-bench":
            print("plot.py: skipping %s (not a lora-bench report)" % path, file=sys.stderr)
            continue
        reports.append(report)
    if not reports:
        sys.exit("plot.py: no lora-bench reports")
    reports.sort(key=point_n)

    fig, (ax_tp, ax_ttft, ax_itl) = plt.subplots(1, 3, figsize=(15, 4.2))
    base = [r for r in reports if point_n(r) == 0]
    with_adapters = [r for r in reports if point_n(r) > 0]

    # Throughput vs N (output tokens/s), base model as a horizontal line.
    xs = [point_n(r) for r in with_adapters]
    ys = [r["run"]["output_throughput"] for r in with_adapters]
    if xs:
        ax_tp.plot(xs, ys, "o-", label="with adapters")
        for x, y, r in zip(xs, ys, with_adapters):
            errors = r["run"]["errors"]
            if errors:
                ax_tp.annotate("%d errors" % errors, (x, y), textcoords="offset points",
                               xytext=(0, 6), ha="center", fontsize=7, color="red")
        ax_tp.set_xscale("log")
    if base:
        b = base[0]["run"]["output_throughput"]
        ax_tp.axhline(b, color="gray", linestyle="--", label="base model")
        ax_tp.axhline(0.9 * b, color="gray", linestyle=":", label="90% of base")
    ax_tp.set_xlabel("adapters (N)")
    ax_tp.set_ylabel("output tokens/s")
    ax_tp.set_ylim(bottom=0)
    ax_tp.set_title("throughput at the same offered load")
    ax_tp.grid(True, which="both", alpha=0.3)
    ax_tp.legend(fontsize=8)

    # CDFs: cdf_ms holds the nearest-rank percentiles p0..p100.
    fractions = [p / 100.0 for p in range(101)]
    for ax, key, name in ((ax_ttft, "ttft", "TTFT"), (ax_itl, "itl", "inter-token latency")):
        for r in reports:
            cdf = r["cdf_ms"][key]
            if cdf:
                ax.plot(cdf, fractions[:len(cdf)], label=label(r),
                        linestyle="--" if point_n(r) == 0 else "-")
        ax.set_xlabel(name + " (ms)")
        ax.set_ylabel("fraction of " + ("requests" if key == "ttft" else "gaps"))
        ax.set_xscale("log")
        ax.set_title(name + " CDF")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)

    cfg = reports[0]["config"]
    title = args.title or ("lora-bench: %s, rate %.3g req/s, prompt %d:%d, output %d:%d" % (
        reports[0]["server"]["after"]["backend"] if reports[0]["server"]["after"] else "?",
        cfg["rate"], cfg["prompt_len"][0], cfg["prompt_len"][1],
        cfg["output_len"][0], cfg["output_len"][1]))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print("wrote " + args.out)


if __name__ == "__main__":
    main()
