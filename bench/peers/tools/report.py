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
        "pgbench": read_json(os.path.join(work, "pgbench.json")),
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


def usable(contender):
    return contender is not None and not contender.get("rejected") and not contender.get("skipped")


def route_result(contender, route):
    if not usable(contender):
        return None
    return contender.get("routes", {}).get(route)


def rps(contender, route):
    result = route_result(contender, route)
    return result["requests_per_s"] if result else None


def cpu(contender, route):
    """The route's CPU per request ({server,store,}us_per_request), or None."""
    result = route_result(contender, route)
    return (result or {}).get("cpu")


def cpu_total(contender, route):
    c = cpu(contender, route)
    return c.get("us_per_request") if c else None


def cookie_bytes(contender):
    if not usable(contender):
        return None
    return (contender.get("load") or {}).get("cookie_bytes")


def fmt_int(value):
    return "—" if value is None else f"{value:,.0f}"


def fmt_us(value):
    return "—" if value is None else f"{value:.1f}"


def fmt_ms(us):
    return "—" if us is None else f"{us / 1000:.2f}"


def fmt_ratio(value):
    return "—" if value is None else f"{value:.2f}×"


def fmt_bytes(value):
    if value is None:
        return "—"
    if value >= 1 << 30:
        return f"{value / (1 << 30):.2f} GiB"
    if value >= 1 << 20:
        return f"{value / (1 << 20):.1f} MiB"
    return f"{value / 1024:.0f} KiB"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def baseline_of(names, contender):
    name = contender.get("baseline")
    if name in (None, "", "-"):
        return None, None
    return name, names.get(name)


def cpu_cell(c):
    """`total` or `total (server + store)`."""
    if not c or c.get("us_per_request") is None:
        return "—"
    if c.get("store_us_per_request") is None:
        return f"**{fmt_us(c['us_per_request'])}**"
    return (
        f"**{fmt_us(c['us_per_request'])}** "
        f"({fmt_us(c['server_us_per_request'])} + {fmt_us(c['store_us_per_request'])})"
    )


def cpu_table(peers):
    lines = [
        "| contender | store | " + " | ".join(f"{label} µs/req" for _, label in ROUTES) + " |",
        "|---|---|" + "---:|" * len(ROUTES),
    ]
    for c in peers["contenders"]:
        if c.get("skipped"):
            lines.append(f"| {c['name']} | {c['store']} | skipped: {c['skipped']} |")
            continue
        if c.get("rejected"):
            lines.append(f"| {c['name']} | {c['store']} | rejected: {c['rejected']} |")
            continue
        cells = [cpu_cell(cpu(c, route)) for route, _ in ROUTES]
        lines.append(f"| {c['name']} | {c['store']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_table(peers):
    lines = [
        "| contender | store | "
        + " | ".join(f"{label} req/s | p50 ms | p99 ms" for _, label in ROUTES)
        + " | server RSS | store RSS | Redis `used_memory` per session | cookie bytes |",
        "|---|---|" + "---:|" * (3 * len(ROUTES) + 4),
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
            + f" | {fmt_int(memory.get('redis_used_memory_per_session'))}"
            + f" | {load.get('cookie_bytes', '—')} |"
        )
    return "\n".join(lines)


def ratio_table(peers):
    names = by_name(peers)
    bare = names.get("bare axum")
    lines = [
        "| contender | compared with | "
        + " | ".join(f"{label} req/s ×peer | CPU/req ×peer | req/s ×bare" for _, label in ROUTES)
        + " |",
        "|---|---|" + "---:|" * (3 * len(ROUTES)),
    ]
    for c in peers["contenders"]:
        if not usable(c) or c["name"] == "bare axum":
            continue
        baseline_name, baseline = baseline_of(names, c)
        cells = []
        for route, _ in ROUTES:
            cells.append(fmt_ratio(ratio(rps(c, route), rps(baseline, route))))
            cells.append(fmt_ratio(ratio(cpu_total(c, route), cpu_total(baseline, route))))
            cells.append(fmt_ratio(ratio(rps(c, route), rps(bare, route))))
        shown = baseline_name if baseline is not None else "—"
        lines.append(f"| {c['name']} | {shown} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The sizes the targets name.
BYTES_AT = 1_000_000
SCALE_FROM, SCALE_TO = 10_000, 10_000_000
# The contenders of the scaling run, by role.
SCALE = {
    "memory": "Tessera memory",
    "redis": "Tessera Redis",
    "tower memory": "tower-sessions memory",
    "actix redis": "actix-session Redis",
}


def scale_rows(scale):
    rows = {}
    for row in (scale or {}).get("rows", []):
        if not row.get("rejected"):
            rows[(row["contender"], row["sessions"])] = row
    return rows


def targets(peers, scale):
    """Issue 13's targets (bench/peers/notes.md), each with its figures."""
    n = by_name(peers)
    rows = []

    def add(label, value, goal, figures, higher_is_better=True, unit="×"):
        sign = "≥" if higher_is_better else "≤"
        goal_shown = f"{sign} {goal:.2f}×" if unit == "×" else f"{sign} {goal:,.0f}{unit}"
        if value is None:
            rows.append((label, "—", goal_shown, figures, "not measured"))
            return
        met = value >= goal if higher_is_better else value <= goal
        shown = f"{value:,.2f}{unit}" if unit == "×" else f"{value:,.0f}{unit}"
        rows.append((label, shown, goal_shown, figures, "met" if met else "missed"))

    def rps_vs(ours, theirs, route, goal, label):
        a, b = rps(n.get(ours), route), rps(n.get(theirs), route)
        figures = f"{fmt_int(a)} vs {fmt_int(b)} req/s" if a is not None and b is not None else ""
        add(label, ratio(a, b), goal, figures)

    def cpu_vs(ours, theirs, route, label):
        a, b = cpu_total(n.get(ours), route), cpu_total(n.get(theirs), route)
        figures = f"{fmt_us(a)} vs {fmt_us(b)} µs/req" if a is not None and b is not None else ""
        add(label, ratio(a, b), 1.0, figures, higher_is_better=False)

    for ours, theirs, goal, store in (
        (TESSERA["redis"], "actix-session Redis", 1.0, "Redis"),
        (TESSERA["memory"], "tower-sessions memory", 1.1, "Memory"),
    ):
        for route, label in ROUTES:
            rps_vs(ours, theirs, route, goal, f"{store}: {label} req/s ÷ {theirs}")
            cpu_vs(ours, theirs, route, f"{store}: {label} CPU/req ÷ {theirs} (server + store)")
    for route, label in ROUTES:
        rps_vs(TESSERA["sealed"], "actix-session cookie", route, 1.0, f"Sealed: {label} req/s ÷ actix-session cookie")
    ours, theirs = cookie_bytes(n.get(TESSERA["sealed"])), cookie_bytes(n.get("actix-session cookie"))
    add(
        "Sealed: cookie bytes ÷ actix-session cookie",
        ratio(ours, theirs),
        2.0,
        f"{ours} vs {theirs} bytes" if ours is not None and theirs is not None else "",
        higher_is_better=False,
    )

    rows_by = scale_rows(scale)

    def per_session(contender, key):
        row = rows_by.get((contender, BYTES_AT))
        return row.get(key) if row else None

    a, b = per_session(SCALE["memory"], "bytes_per_session"), per_session(SCALE["tower memory"], "bytes_per_session")
    add(
        f"Bytes per session at {BYTES_AT:,}: memory store ÷ tower-sessions MemoryStore (resident)".replace(",", " "),
        ratio(a, b),
        0.6,
        f"{fmt_int(a)} vs {fmt_int(b)} B" if a is not None and b is not None else "",
        higher_is_better=False,
    )
    a = per_session(SCALE["redis"], "used_memory_per_session")
    b = per_session(SCALE["actix redis"], "used_memory_per_session")
    add(
        f"Bytes per session at {BYTES_AT:,}: Redis `used_memory` ÷ actix-session Redis".replace(",", " "),
        ratio(a, b),
        1.0,
        f"{fmt_int(a)} vs {fmt_int(b)} B" if a is not None and b is not None else "",
        higher_is_better=False,
    )

    pg = n.get(TESSERA["postgres"])
    bench = peers.get("pgbench") or {}
    a, b = rps(pg, "me"), bench.get("tps")
    add(
        "PostgreSQL: GET /me req/s ÷ `pgbench -S` tps (same concurrency)",
        ratio(a, b),
        0.8,
        f"{fmt_int(a)} req/s vs {fmt_int(b)} tps" if a is not None and b is not None else "",
    )
    add(
        "Embedded: POST /login req/s (durable logins, wrk's connections)",
        rps(n.get(TESSERA["embedded"]), "login"),
        10_000,
        "",
        unit="/s",
    )

    largest = max((size for (_, size) in rows_by), default=None)
    for contender in (SCALE["memory"], SCALE["redis"]):
        small, large = rows_by.get((contender, SCALE_FROM)), rows_by.get((contender, SCALE_TO))
        slowdown, figures = None, ""
        if small and large and small.get("requests_per_s") and large.get("requests_per_s"):
            slowdown = small["requests_per_s"] / large["requests_per_s"]
            figures = f"{fmt_int(small['requests_per_s'])} → {fmt_int(large['requests_per_s'])} req/s"
        elif small and largest and largest > SCALE_FROM and rows_by.get((contender, largest)):
            top = rows_by[(contender, largest)]
            if small.get("requests_per_s") and top.get("requests_per_s"):
                figures = (
                    f"not run at {SCALE_TO:,}; to {largest:,}: "
                    f"{small['requests_per_s'] / top['requests_per_s']:.2f}×"
                ).replace(",", " ")
        add(
            f"Scaling: {contender} GET /me slowdown {SCALE_FROM:,} → {SCALE_TO:,} sessions".replace(",", " "),
            slowdown,
            1.3,
            figures,
            higher_is_better=False,
        )
    lines = ["| target | measured | goal | figures | |", "|---|---:|---:|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return "\n".join(lines)


def scale_table(scale):
    lines = [
        "| contender | sessions | GET /me req/s | p50 ms | p99 ms | CPU µs/req | server RSS | store RSS"
        " | resident bytes per session | Redis `used_memory` per session |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in scale["rows"]:
        if row.get("rejected"):
            lines.append(f"| {row['contender']} | {row['sessions']:,} | rejected: {row['rejected']} |")
            continue
        lines.append(
            f"| {row['contender']} | {row['sessions']:,} | {fmt_int(row.get('requests_per_s'))}"
            f" | {fmt_ms(row.get('p50_us'))} | {fmt_ms(row.get('p99_us'))}"
            f" | {cpu_cell(row.get('cpu'))}"
            f" | {fmt_bytes(row.get('server_rss_bytes'))} | {fmt_bytes(row.get('store_rss_bytes'))}"
            f" | {fmt_int(row.get('bytes_per_session'))} | {fmt_int(row.get('used_memory_per_session'))} |"
        )
    return "\n".join(lines)


def machine_line(run):
    m, p = run.get("machine", {}), run.get("parameters", {})
    if isinstance(p.get("sessions"), int):
        sessions = f"{p['sessions']:,} sessions."
    else:
        sessions = f"sessions: {p.get('sizes', '?')}."
        if p.get("wrk_cookies"):
            sessions += f" wrk cycles through at most {p['wrk_cookies']:,} of them, spread evenly."
    return (
        f"{m.get('date', '?')}; {m.get('cpus', '?')} × {m.get('cpu', '?')}, Linux {m.get('kernel', '?')}, "
        f"load average {m.get('load_average', 0):.2f} at the start; {m.get('rustc', '?')}, node {m.get('node', '?')}, "
        f"{m.get('redis', '?').split(' sha=')[0]}, {m.get('wrk', '?').split(' [')[0]}. "
        f"wrk: {p.get('connections', '?')} connections, {p.get('threads', '?')} threads, "
        f"{p.get('warmup_s', '?')} s warm-up then {p.get('duration_s', '?')} s per route; {sessions}"
    )


COLOURS = {
    "Tessera": "#1f6f8b",
    "tower-sessions": "#e07b39",
    "actix-session": "#8c5fb0",
    "express-session": "#6a994e",
    "axum": "#888888",
}


def draw_chart(peers, scale, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in peers["contenders"] if usable(c)]
    names = [c["name"] for c in shown][::-1]
    colors = [COLOURS.get(c["library"], "#444444") for c in shown][::-1]
    scale_data = scale_rows(scale)
    rows = 3 if scale_data else 2
    bar_height = 0.42 * len(shown) + 1.4
    fig = plt.figure(figsize=(15, 2 * bar_height + (4.2 if scale_data else 0)))
    grid = fig.add_gridspec(rows, len(ROUTES), height_ratios=[bar_height, bar_height] + ([4.2] if scale_data else []))

    def label_bars(ax, bars, values, text, top):
        # Each label right of its bar's end (the total, for stacked bars).
        for bar, value in zip(bars, values):
            if value:
                ax.text(value + top * 0.01, bar.get_y() + bar.get_height() / 2,
                        text(value), va="center", fontsize=8)

    first = None
    for column, (route, label) in enumerate(ROUTES):
        # CPU per request: the server's part solid, the store's process hatched.
        ax = fig.add_subplot(grid[0, column], sharey=first)
        first = first or ax
        server = [((cpu(c, route) or {}).get("server_us_per_request") or 0) for c in shown][::-1]
        store = [((cpu(c, route) or {}).get("store_us_per_request") or 0) for c in shown][::-1]
        total = [a + b for a, b in zip(server, store)]
        ax.barh(names, server, color=colors)
        bars = ax.barh(names, store, left=server, color=colors, alpha=0.45, hatch="///", edgecolor="white")
        top = max(total) if total and max(total) else 1
        label_bars(ax, bars, total, lambda v: f"{v:.0f}", top)
        ax.set_xlim(0, top * 1.15)
        ax.set_title(f"{label}: CPU per request")
        ax.set_xlabel("µs per request, lower is better (hatched: store)")
        ax.grid(axis="x", alpha=0.3)
        if column:
            ax.tick_params(labelleft=False)
        # Requests per second.
        ax = fig.add_subplot(grid[1, column], sharey=first)
        values = [rps(c, route) or 0 for c in shown][::-1]
        bars = ax.barh(names, values, color=colors)
        top = max(values) if values and max(values) else 1
        label_bars(ax, bars, values, lambda v: f"{v / 1000:.1f}k", top)
        ax.set_xlim(0, top * 1.18)
        ax.set_title(f"{label}: requests/s")
        ax.set_xlabel("requests/s, higher is better")
        ax.grid(axis="x", alpha=0.3)
        if column:
            ax.tick_params(labelleft=False)

    if scale_data:
        contenders = []
        for (contender, _) in sorted(scale_data):
            if contender not in contenders:
                contenders.append(contender)
        panels = (
            ("requests_per_s", "scaling run: GET /me requests/s", "requests/s"),
            ("cpu", "scaling run: GET /me CPU per request", "µs of CPU per request"),
            ("bytes", "scaling run: bytes per session", "bytes (resident; Redis: used_memory)"),
        )
        for column, (key, title, ylabel) in enumerate(panels):
            ax = fig.add_subplot(grid[2, column])
            for contender in contenders:
                points = sorted((size, row) for (name, size), row in scale_data.items() if name == contender)
                xs, ys = [], []
                for size, row in points:
                    if key == "cpu":
                        value = (row.get("cpu") or {}).get("us_per_request")
                    elif key == "bytes":
                        value = row.get("used_memory_per_session") or row.get("bytes_per_session")
                    else:
                        value = row.get(key)
                    if value is not None:
                        xs.append(size)
                        ys.append(value)
                library = contender.split(" ")[0]
                style = "-" if "memory" in contender else "--"
                ax.plot(xs, ys, style, marker="o", label=contender, color=COLOURS.get(library, "#444444"))
            ax.set_xscale("log")
            ax.set_ylim(bottom=0)
            ax.set_xlabel("live sessions")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.grid(alpha=0.3)
            if column == 0:
                ax.legend(fontsize=8)

    fig.suptitle("Same app, same load, one run per contender")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def render(peers, scale, chart_name, notes):
    out = ["# Benchmarks: Tessera and its peers, side by side", ""]
    out += [
        "Generated by `bench/peers/run.sh` (and `bench/peers/scale.sh` for the scaling table);",
        "do not edit by hand. Every contender serves the same three routes: `POST /login`",
        "(create a session, regenerate its id, store `user_id` and `counter` with one `insert`",
        "each, set the cookie), `GET /me` (two `get`s, no write) and `POST /incr` (`get` the user,",
        "then read, increment and save the counter), with an idle timeout of one hour. Each",
        "contender runs alone on loopback with its own redis-server where it needs one;",
        "`POST /login` is driven without a cookie (a new visitor logs in), the other routes",
        "round-robin the cookies of the sessions created first.",
        "",
        "**CPU per request** is the CPU time (user + system, `/proc/PID/stat`) the server process",
        "and the store's process (the private redis-server; for PostgreSQL every `postgres`",
        "process) used during the measured wrk run, divided by the requests wrk counted. On a",
        "shared machine it is steadier than requests/s, which depend on what else runs; it",
        "leaves out wrk's own CPU and the kernel's work outside the two processes.",
        "",
        f"Run: {machine_line(peers)}",
        "",
    ]
    if chart_name:
        out += [f"![CPU per request and requests per second by contender and route]({chart_name})", ""]
    out += [
        "## CPU per request",
        "",
        "Microseconds of CPU per request, lower is better: **total** (server + store's process)",
        "where the store runs in a process of its own.",
        "",
        cpu_table(peers),
        "",
        "## Requests per second",
        "",
        results_table(peers),
        "",
        "*server RSS*: the server process's resident memory after the sessions were created",
        "(`VmRSS`); *store RSS*: the private redis-server's, where there is one; *Redis",
        "`used_memory` per session*: its growth (`INFO memory`) while the sessions were created,",
        "divided by their number; *cookie bytes*: the `Cookie` header each request carries.",
        "",
        "## Ratios",
        "",
        "*×peer*: divided by the figure of the peer in the second column (the one its targets",
        "name: tower-sessions' MemoryStore, actix-session's Redis or cookie store); *×bare*:",
        "requests/s divided by bare axum's (no sessions).",
        "",
        ratio_table(peers),
        "",
        "## Targets",
        "",
        "The targets of this round, from this run (and the scaling run for bytes per session",
        "and scaling). CPU per request is the total of server and store.",
        "",
        targets(peers, scale),
        "",
    ]
    bench = peers.get("pgbench")
    if bench:
        out += [
            f"`pgbench -S` ({bench.get('mode')}, {bench.get('clients')} clients, {bench.get('threads')}"
            f" threads): {fmt_int(bench.get('tps'))} transactions/s, {fmt_us(bench.get('postgres_us_per_transaction'))}"
            " µs of PostgreSQL CPU per transaction.",
            "",
        ]
    if scale:
        out += [
            "## Scaling with the number of live sessions",
            "",
            "`GET /me` over the live sessions after a bench-only in-process preload",
            "(`--preload N`, the same calls as `POST /login`). *resident bytes per session*:",
            "growth of resident memory (server + redis-server) from the same contender with an",
            "empty store, divided by N; *Redis `used_memory` per session*: the same for",
            "redis-server's `used_memory`.",
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
        draw_chart(peers, scale, args.chart)
        chart_name = os.path.relpath(args.chart, os.path.dirname(os.path.abspath(args.out)))
    text = render(peers, scale, chart_name, notes)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
