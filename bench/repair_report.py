#!/usr/bin/env python3
"""Prints the tables of a bench/repair.sh run from its results file.

  repair_report.py RESULTS [--out FILE]

RESULTS holds one "key<TAB>value" line per figure, as repair.sh records them.
Prints markdown: the refill against rsync (goal: ours at least 0.5x rsync's
speed), then the cost of a pass over a cluster in sync (goal: under 1 s and
under 1 MB per peer).
"""

import argparse
import sys


def load(path: str) -> dict:
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("\t")
            out[key] = value
    return out


def num(r: dict, key: str, default: float = 0.0) -> float:
    try:
        return float(r.get(key, default))
    except ValueError:
        return default


def mib(b: float) -> str:
    return f"{b / 1048576:.1f} MiB"


LABELS = {
    "ours": "ours: repair concurrency 8, fsync on (shipped)",
    "ours_nofsync": "ours: concurrency 8, fsync off",
    "rsync": "rsync -a (daemon on 127.0.0.1)",
    "rsync_fsync": "rsync -a --fsync",
}


def seconds(r: dict, name: str, rnd: str) -> float:
    """Ours: the repair passes' own duration (their report); rsync: its wall time."""
    field = "pass_ms" if name.startswith("ours") else "wall_ms"
    return num(r, f"refill.{name}.{rnd}.{field}") / 1000


def rounds_of(r: dict, name: str) -> list[str]:
    found = {k.split(".")[2] for k in r if k.startswith(f"refill.{name}.r") and k.endswith(".wall_ms")}
    return sorted(found, key=lambda x: int(x[1:]))


def names(r: dict) -> list[str]:
    found = {k.split(".")[1] for k in r if k.startswith("refill.") and k.endswith(".wall_ms")}
    ours = sorted(n for n in found if n.startswith("ours_"))
    return [n for n in ["ours", *ours, "rsync", "rsync_fsync"] if n in found]


def best(r: dict, name: str) -> tuple[str, float]:
    return min(((rnd, seconds(r, name, rnd)) for rnd in rounds_of(r, name)), key=lambda x: x[1])


def refill_rows(r: dict) -> list[str]:
    files, size = num(r, "refill.files"), num(r, "refill.bytes")
    rows = [
        "| copy | time (best round) | MB/s | files/s | CPU-s receiver | CPU-s sender | peak RSS receiver | speed vs rsync -a |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rsync_s = best(r, "rsync")[1] if "rsync" in names(r) else 0
    for name in names(r):
        rnd, secs = best(r, name)
        k = f"refill.{name}.{rnd}"
        ours = name.startswith("ours")
        label = LABELS.get(name) or f"ours: concurrency {name.removeprefix('ours_c')}, fsync on"
        extra = ""
        if ours:
            extra = f" ({num(r, k + '.wall_ms') / 1000:.1f} s from listening to the last file, {int(num(r, k + '.passes'))} pass)"
        ratio = f"{rsync_s / secs:.2f}×" if secs and rsync_s else ""
        hwm = f"{num(r, k + '.hwm_kib') / 1024:.1f} MiB" if ours else ""
        rows.append(
            f"| {label} | {secs:.1f} s{extra} | {size / secs / 1e6:.0f} | {files / secs:.0f} |"
            f" {r.get(k + '.cpu_s', '')} | {r.get(k + '.source_cpu_s', '')} | {hwm} | {ratio} |"
        )
    return rows


def refill_rounds(r: dict) -> list[str]:
    out = ["Every round (seconds; ours: pass duration, then time from listening to the last file):", ""]
    for name in names(r):
        cells = []
        for rnd in rounds_of(r, name):
            k = f"refill.{name}.{rnd}"
            cell = f"{seconds(r, name, rnd):.1f}"
            if name.startswith("ours"):
                cell += f" ({num(r, k + '.wall_ms') / 1000:.1f})"
                if num(r, k + ".errors") or num(r, k + ".passes") > 1:
                    cell += f" [{num(r, k + '.passes'):.0f} passes, {num(r, k + '.errors'):.0f} errors]"
            cells.append(cell)
        out.append(f"- {name}: {', '.join(cells)}")
    return out


def sync_rows(r: dict) -> list[str]:
    rows = ["| figure | t1 (asks t2) | t2 (asks t1) |", "|---|---|---|"]
    for side_key, label in [
        ("index_build_ms", "start, index built from the files (ms)"),
        ("indexed", "files indexed"),
    ]:
        rows.append(f"| {label} | {r.get(f'sync.t1_{side_key}', '')} | {r.get(f'sync.t2_{side_key}', '')} |")
    rows.append(
        "| first complete pass: ms, days listed, files fetched |"
        + "|".join(
            f" {r.get(f'sync.first_pass.{s}.ms', '')} ms, {r.get(f'sync.first_pass.{s}.days_compared', '')},"
            f" {r.get(f'sync.first_pass.{s}.files_fetched', '')} "
            for s in ("t1", "t2")
        )
        + "|"
    )
    cells = {}
    for s in ("t1", "t2"):
        passes = num(r, f"sync.in_sync.{s}.passes")
        ms = [int(x) for x in r.get(f"sync.in_sync.{s}.pass_ms", "").split()]
        reqs = num(r, f"sync.in_sync.{s}.requests_to_peer")
        b = num(r, f"sync.in_sync.{s}.bytes_from_peer")
        cells[s] = {
            "passes": f"{passes:.0f} ({num(r, f'sync.in_sync.{s}.roots_agreed'):.0f} with the roots equal)",
            "ms": f"{', '.join(map(str, ms))} (max {max(ms) if ms else 0})",
            "reqs": f"{reqs / passes:.1f}" if passes else "",
            "bytes": f"{b / passes:.0f} B" if passes else "",
        }
    for key, label in [
        ("passes", "passes in sync measured"),
        ("ms", "duration of each (ms)"),
        ("reqs", "digest/list requests per pass"),
        ("bytes", "answer bodies per pass, from the peer"),
    ]:
        rows.append(f"| {label} | {cells['t1'][key]} | {cells['t2'][key]} |")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results")
    p.add_argument("--out")
    a = p.parse_args()
    r = load(a.results)
    out = []
    out.append(
        f"Machine: {r.get('machine.nproc', '?')} cores, {r.get('machine.cpu', '?')}, kernel {r.get('machine.kernel', '?')},"
        f" {r.get('machine.rsync', '?')}; commit {r.get('run.commit', '?')};"
        f" load average {r.get('machine.load_before', '?')} before, {r.get('machine.load_after', '?')} after."
    )
    out.append("")
    files, size = num(r, "refill.files"), num(r, "refill.bytes")
    out.append(
        f"1. Refilling an emptied server: {files:.0f} files, {mib(size)} ({size / max(files, 1) / 1000:.0f} KB average),"
        f" {r.get('refill.days', '?')} day folders. s1 indexed them at start in"
        f" {num(r, 'refill.s1_index_build_ms') / 1000:.1f} s."
    )
    out.append("")
    out.extend(refill_rows(r))
    out.append("")
    out.extend(refill_rounds(r))
    if "ours" in names(r) and "rsync" in names(r):
        ratio = best(r, "rsync")[1] / best(r, "ours")[1]
        verdict = "met" if ratio >= 0.5 else "MISSED"
        out.append("")
        out.append(f"Ours (shipped settings) ÷ rsync -a, speed: **{ratio:.2f}×** (goal ≥ 0.5×: {verdict}).")
    out.append("")
    out.append(
        f"2. A pass over a cluster in sync: {num(r, 'sync.files'):.0f} files of {num(r, 'sync.file_bytes'):.0f} bytes"
        f" on each server (t1 one more), {r.get('sync.days', '?')} day folders."
    )
    out.append("")
    out.extend(sync_rows(r))
    out.append("")
    worst_ms = max(
        (int(x) for s in ("t1", "t2") for x in r.get(f"sync.in_sync.{s}.pass_ms", "").split()),
        default=0,
    )
    worst_b = max(
        num(r, f"sync.in_sync.{s}.bytes_from_peer") / max(num(r, f"sync.in_sync.{s}.passes"), 1) for s in ("t1", "t2")
    )
    out.append(
        f"Longest pass in sync {worst_ms} ms (goal < 1000 ms: {'met' if worst_ms < 1000 else 'MISSED'}),"
        f" most answer bytes per pass and peer {worst_b:.0f} B (goal < 1 MB: {'met' if worst_b < 1e6 else 'MISSED'})."
    )
    out.append(
        f"First passes (one day differs): {r.get('sync.first_passes.list_answers', '?')} day list(s) answered,"
        f" {num(r, 'sync.first_passes.list_bytes') / 1000:.0f} KB in all;"
        f" {r.get('sync.first_passes.stopped', '0')} pass(es) stopped before both servers listened."
        f" Restart of t2 with its index in place: {num(r, 'sync.t2_restart_ms') / 1000:.1f} s to listen."
        f" One root digest exchange (curl: answer body, answer headers, request):"
        f" {r.get('sync.in_sync.digest_exchange', '?').replace(' ', ' + ')} bytes."
        f" CPU of both servers over the passes in sync: {r.get('sync.in_sync.cpu_s', '?')} s"
        f" in {num(r, 'sync.in_sync.elapsed_ms') / 1000:.0f} s."
    )
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
