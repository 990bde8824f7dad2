#!/usr/bin/env python3
"""Turns the raw results of bench/peers/run.sh and scale.sh into
docs/benchmarks.md and its chart.

    report.py collect-peers --work DIR --json OUT      raw run -> results JSON
    report.py collect-scale --work DIR --json OUT      raw scaling run -> JSON
    report.py render --peers JSON [--scale JSON] [--out MD --chart PNG]

Without --out, render prints the Markdown to stdout and draws no chart.
"""

import argparse
import glob
import json
import os
import sys

ROUTES = [("me", "GET /me"), ("incr", "POST /incr"), ("login", "POST /login")]

TESSERA = {
    "memory": "Tessera memory",
    "embedded": "Tessera embedded",
    "redis": "Tessera Redis",
    "near": "Tessera Redis near cache",
    "postgres": "Tessera PostgreSQL",
    "sealed": "Tessera sealed cookie",
}


def read_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


# ----- collect ---------------------------------------------------------------


def collect_peers(work):
    contenders = []
    for dir in sorted(glob.glob(os.path.join(work, "[0-9]*"))):
        meta = read_json(os.path.join(dir, "meta.json"))
        if meta is None:
            continue
        entry = dict(meta)
        entry["skipped"] = read_text(os.path.join(dir, "skipped"))
        entry["rejected"] = read_text(os.path.join(dir, "rejected"))
        entry["load"] = read_json(os.path.join(dir, "load.json"))
        entry["memory"] = read_json(os.path.join(dir, "memory.json"))
        entry["routes"] = {}
        for route, _ in ROUTES:
            result = read_json(os.path.join(dir, route + ".json"))
            if result is not None:
                entry["routes"][route] = result
        contenders.append(entry)
    return {
        "machine": read_json(os.path.join(work, "machine.json"), {}),
        "parameters": read_json(os.path.join(work, "parameters.json"), {}),
        "contenders": contenders,
    }


def collect_scale(work):
    rows = []
    for path in sorted(glob.glob(os.path.join(work, "*", "row.json"))):
        row = read_json(path)
        if row is not None:
            rows.append(row)
    return {
        "machine": read_json(os.path.join(work, "machine.json"), {}),
        "parameters": read_json(os.path.join(work, "parameters.json"), {}),
        "rows": rows,
    }


# ----- render ----------------------------------------------------------------


def by_name(peers):
    return {c["name"]: c for c in peers["contenders"]}


def rps(contender, route):
    if contender is None or contender.get("rejected") or contender.get("skipped"):
        return None
    result = contender.get("routes", {}).get(route)
    return result["requests_per_s"] if result else None


def fmt_int(value):
    return "—" if value is None else f"{value:,.0f}"


def fmt_ms(us):
    return "—" if us is None else f"{us / 1000:.2f}"


def fmt_ratio(value):
    return "—" if value is None else f"{value:.2f}×"


def fmt_bytes(value):
    if value is None:
        return "—"
    if value >= 1 << 20:
        return f"{value / (1 << 20):.1f} MiB"
    return f"{value / 1024:.0f} KiB"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def results_table(peers):
    lines = [
        "| contender | store | "
        + " | ".join(f"{label} req/s | p50 ms | p99 ms" for _, label in ROUTES)
        + " | server RSS | store RSS | cookie bytes |",
        "|---|---|" + "---:|" * (3 * len(ROUTES) + 3),
    ]
    for c in peers["contenders"]:
        if c.get("skipped"):
            lines.append(f"| {c['name']} | {c['store']} | skipped: {c['skipped']} |")
            continue
        if c.get("rejected"):
            lines.append(f"| {c['name']} | {c['store']} | rejected: {c['rejected']} |")
            continue
        cells = []
        for route, _ in ROUTES:
            r = c["routes"].get(route)
            cells += [fmt_int(r and r["requests_per_s"]), fmt_ms(r and r["p50_us"]), fmt_ms(r and r["p99_us"])]
        memory = c.get("memory") or {}
        load = c.get("load") or {}
        lines.append(
            f"| {c['name']} | {c['store']} | "
            + " | ".join(cells)
            + f" | {fmt_bytes(memory.get('server_rss_bytes'))} | {fmt_bytes(memory.get('store_rss_bytes'))}"
            + f" | {load.get('cookie_bytes', '—')} |"
        )
    return "\n".join(lines)


def ratio_table(peers):
    names = by_name(peers)
    bare = names.get("bare axum")
    lines = [
        "| contender | compared with | "
        + " | ".join(f"{label} ×peer | {label} ×bare" for _, label in ROUTES)
        + " |",
        "|---|---|" + "---:|" * (2 * len(ROUTES)),
    ]
    for c in peers["contenders"]:
        if c.get("skipped") or c.get("rejected") or c["name"] == "bare axum":
            continue
        baseline_name = c.get("baseline")
        baseline = names.get(baseline_name) if baseline_name not in (None, "", "-") else None
        cells = []
        for route, _ in ROUTES:
            cells.append(fmt_ratio(ratio(rps(c, route), rps(baseline, route))))
            cells.append(fmt_ratio(ratio(rps(c, route), rps(bare, route))))
        shown = baseline_name if baseline is not None else "—"
        lines.append(f"| {c['name']} | {shown} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(peers, scale):
    """The issue's targets, each with the measured figure."""
    n = by_name(peers)
    rows = []

    def add(label, value, goal, higher_is_better=True):
        if value is None:
            rows.append((label, "—", goal, "not measured"))
            return
        met = value >= goal if higher_is_better else value <= goal
        rows.append((label, f"{value:.2f}", f"{'≥' if higher_is_better else '≤'} {goal}", "met" if met else "missed"))

    mem, bare = n.get(TESSERA["memory"]), n.get("bare axum")
    add("memory store: GET /me ÷ bare axum", ratio(rps(mem, "me"), rps(bare, "me")), 0.9)
    add("memory store: POST /incr ÷ bare axum", ratio(rps(mem, "incr"), rps(bare, "incr")), 0.85)
    add("memory store: POST /login ÷ bare axum", ratio(rps(mem, "login"), rps(bare, "login")), 0.8)
    red = n.get(TESSERA["redis"])
    for route, label in ROUTES:
        add(f"Redis: {label} ÷ tower-sessions Redis", ratio(rps(red, route), rps(n.get("tower-sessions Redis"), route)), 1.4)
    for route, label in ROUTES:
        add(f"Redis: {label} ÷ actix-session Redis", ratio(rps(red, route), rps(n.get("actix-session Redis"), route)), 1.2)
    add("near cache: GET /me ÷ Tessera memory", ratio(rps(n.get(TESSERA["near"]), "me"), rps(mem, "me")), 0.8)
    for store, express in (("memory", "express-session memory"), ("redis", "express-session Redis")):
        for route, label in ROUTES:
            add(
                f"{TESSERA[store]} ÷ {express}: {label}",
                ratio(rps(n.get(TESSERA[store]), route), rps(n.get(express), route)),
                5,
            )
    if scale:
        rows_by = {}
        for row in scale["rows"]:
            rows_by[(row["contender"], row["sessions"])] = row
        for contender in (TESSERA["memory"], TESSERA["redis"]):
            small, large = rows_by.get((contender, 10_000)), rows_by.get((contender, 1_000_000))
            slowdown = None
            if small and large and small.get("requests_per_s") and large.get("requests_per_s"):
                slowdown = small["requests_per_s"] / large["requests_per_s"]
            add(f"{contender}: GET /me slowdown 10 000 → 1 000 000 sessions", slowdown, 1.3, higher_is_better=False)
        ours = rows_by.get((TESSERA["memory"], 1_000_000))
        theirs = rows_by.get(("tower-sessions memory", 1_000_000))
        per = None
        if ours and theirs and ours.get("bytes_per_session") and theirs.get("bytes_per_session"):
            per = ours["bytes_per_session"] / theirs["bytes_per_session"]
        add("resident bytes per session ÷ tower-sessions memory (1 000 000)", per, 0.5, higher_is_better=False)
    lines = ["| target | measured | goal | |", "|---|---:|---:|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def scale_table(scale):
    lines = [
        "| contender | sessions | GET /me req/s | p50 ms | p99 ms | server RSS | store RSS | bytes per session |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in scale["rows"]:
        if row.get("rejected"):
            lines.append(f"| {row['contender']} | {row['sessions']:,} | rejected: {row['rejected']} |")
            continue
        lines.append(
            f"| {row['contender']} | {row['sessions']:,} | {fmt_int(row.get('requests_per_s'))}"
            f" | {fmt_ms(row.get('p50_us'))} | {fmt_ms(row.get('p99_us'))}"
            f" | {fmt_bytes(row.get('server_rss_bytes'))} | {fmt_bytes(row.get('store_rss_bytes'))}"
            f" | {fmt_int(row.get('bytes_per_session'))} |"
        )
    return "\n".join(lines)


def machine_line(run):
    m, p = run.get("machine", {}), run.get("parameters", {})
    if isinstance(p.get("sessions"), int):
        sessions = f"{p['sessions']:,} sessions."
    else:
        sessions = f"sessions: {p.get('sizes', '?')}."
    return (
        f"{m.get('date', '?')}; {m.get('cpus', '?')} × {m.get('cpu', '?')}, Linux {m.get('kernel', '?')}, "
        f"load average {m.get('load_average', 0):.2f} at the start; {m.get('rustc', '?')}, node {m.get('node', '?')}, "
        f"{m.get('redis', '?').split(' sha=')[0]}, {m.get('wrk', '?').split(' [')[0]}. "
        f"wrk: {p.get('connections', '?')} connections, {p.get('threads', '?')} threads, "
        f"{p.get('warmup_s', '?')} s warm-up then {p.get('duration_s', '?')} s per route; {sessions}"
    )


def draw_chart(peers, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in peers["contenders"] if not c.get("skipped") and not c.get("rejected")]
    colours = {
        "Tessera": "#1f6f8b",
        "tower-sessions": "#e07b39",
        "actix-session": "#8c5fb0",
        "express-session": "#6a994e",
        "axum": "#888888",
    }
    fig, axes = plt.subplots(1, len(ROUTES), figsize=(15, 0.45 * len(shown) + 1.6), sharey=True)
    names = [c["name"] for c in shown][::-1]
    for ax, (route, label) in zip(axes, ROUTES):
        values = [rps(c, route) or 0 for c in shown][::-1]
        colors = [colours.get(c["library"], "#444444") for c in shown][::-1]
        bars = ax.barh(names, values, color=colors)
        ax.set_title(label)
        ax.set_xlabel("requests/s")
        top = max(values) if values else 1
        for bar, value in zip(bars, values):
            ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2,
                    f"{value / 1000:.1f}k", va="center", fontsize=8)
        ax.set_xlim(0, top * 1.18)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Same app, same load, one run: requests per second (higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def render(peers, scale, chart_name, notes):
    out = ["# Benchmarks: Tessera and its peers, side by side", ""]
    out += [
        "Generated by `bench/peers/run.sh` (and `bench/peers/scale.sh` for the scaling table);",
        "do not edit by hand. Every contender serves the same three routes: `POST /login`",
        "(create a session, regenerate its id, store `{\"user_id\": n, \"counter\": 0}`, set the",
        "cookie), `GET /me` (read, no write) and `POST /incr` (load, increment, save), with an",
        "idle timeout of one hour. Each contender runs alone on loopback with its own",
        "redis-server where it needs one; `POST /login` is driven without a cookie (a new",
        "visitor logs in), the other routes round-robin the cookies of the sessions created",
        "first. Absolute figures drift by 5–8 % between runs; compare ratios within one run.",
        "",
        f"Run: {machine_line(peers)}",
        "",
    ]
    if chart_name:
        out += [f"![requests per second by contender and route]({chart_name})", ""]
    out += ["## Results", "", results_table(peers), ""]
    out += [
        "*server RSS*: the server process's resident memory after the sessions were created",
        "(`VmRSS`); *store RSS*: the private redis-server's, where there is one; *cookie bytes*:",
        "the `Cookie` header each request carries.",
        "",
        "## Ratios",
        "",
        "*×peer*: requests/s divided by those of the peer in the second column: tower-sessions",
        "on the same store, or for sealed cookies actix-session's cookie store (tower-sessions",
        "has none); *×bare*: divided by bare axum (no sessions).",
        "",
        ratio_table(peers),
        "",
        "## Targets",
        "",
        targets(peers, scale),
        "",
    ]
    if scale:
        out += [
            "## Scaling with the number of live sessions",
            "",
            "`GET /me` over all live sessions (the wrk script round-robins every cookie) after a",
            "bench-only in-process preload (`--preload N`). *bytes per session*: growth of",
            "resident memory from an empty store, divided by N (the store's process: the",
            "redis-server for the Redis store).",
            "",
            f"Run: {machine_line(scale)}",
            "",
            scale_table(scale),
            "",
        ]
    if notes:
        out += [notes, ""]
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("collect-peers", "collect-scale"):
        p = sub.add_parser(name)
        p.add_argument("--work", required=True)
        p.add_argument("--json", required=True)
    p = sub.add_parser("render")
    p.add_argument("--peers", required=True)
    p.add_argument("--scale")
    p.add_argument("--notes")
    p.add_argument("--out")
    p.add_argument("--chart")
    args = parser.parse_args()

    if args.command in ("collect-peers", "collect-scale"):
        data = collect_peers(args.work) if args.command == "collect-peers" else collect_scale(args.work)
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        return

    peers = read_json(args.peers)
    if peers is None:
        sys.exit(f"cannot read {args.peers}")
    scale = read_json(args.scale) if args.scale else None
    notes = read_text(args.notes) if args.notes else None
    chart_name = None
    if args.out and args.chart:
        draw_chart(peers, args.chart)
        chart_name = os.path.relpath(args.chart, os.path.dirname(os.path.abspath(args.out)))
    text = render(peers, scale, chart_name, notes)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
