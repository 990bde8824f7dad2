"""Plots p99 latency and resident memory over time from bench/soak.sh's CSVs.

usage: soak-plot.py OUT.png STEADY_SECONDS NAME=FILE.csv [NAME=FILE.csv ...]

STEADY_SECONDS marks when memory should have reached its steady state (the
sessions' lifetime plus the 5-minute retention).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    out, steady = sys.argv[1], int(sys.argv[2])
    runs = [arg.split("=", 1) for arg in sys.argv[3:]]
    fig, (latency, memory) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name, path in runs:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        t = [int(r["second"]) for r in rows]
        p99 = [int(r["p99_us"]) / 1000 for r in rows]
        p50 = [int(r["p50_us"]) / 1000 for r in rows]
        rss = [int(r["rss_kib"]) / 1024 for r in rows]
        ops = sum(int(r["ops"]) for r in rows) / max(len(rows), 1)
        errors = rows[-1]["errors"]
        label = f"{name} ({ops:,.0f} ops/s, {errors} errors)"
        (line,) = latency.plot(t, p99, label=f"{label} p99", linewidth=1)
        latency.plot(t, p50, color=line.get_color(), linestyle=":", linewidth=1, label=f"{name} p50")
        memory.plot(t, rss, color=line.get_color(), label=name)
    latency.set_ylabel("latency per second (ms)")
    latency.set_title("tesserad soak: 100 000 live sessions, 80 % validate / 10 % update / 5 % login / 5 % logout")
    latency.legend(fontsize="small")
    latency.grid(alpha=0.3)
    memory.set_ylabel("resident memory (MiB)")
    memory.axvline(steady, color="grey", linestyle="--", linewidth=0.8)
    memory.annotate(
        "steady state expected: lifetime + 5 min retention",
        (steady + 5, 0),
        fontsize="x-small",
        color="grey",
        va="bottom",
    )
    memory.set_xlabel("seconds")
    memory.set_ylim(bottom=0)
    memory.legend(fontsize="small")
    memory.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
