#!/usr/bin/env python3
"""Turns the results file of bench/run.sh into the table of ratios.

  report.py RESULTS.tsv BIG.tsv SMALL.tsv [--out FILE.md]

Targets (SPEC §9) are judged on the shipped defaults (fsync on, info
logging); the other rows show what those settings cost.
"""

import argparse
import sys

MIB = 1024 * 1024


def load(path, big_path, small_path):
    """The single values, plus the best of each case's rounds: the fastest
    large upload and the 140 KB run with the most requests per second (other
    work on the machine only ever makes a figure worse)."""
    r = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("\t")
            r[key] = value
    rounds = {}
    with open(big_path) as f:
        for line in f:
            name, secs, size, cpu = line.split()
            rounds.setdefault(name, []).append(f"{float(secs):.2f}")
            if float(secs) < float(r.get(f"{name}.seconds", "inf")):
                r[f"{name}.seconds"], r[f"{name}.bytes"], r[f"{name}.cpu_s"] = secs, size, cpu
    with open(small_path) as f:
        for line in f:
            name, _, rest = line.rstrip("\n").partition("\t")
            kv = dict(item.split("=", 1) for item in rest.split())
            rounds.setdefault(name, []).append(f"{float(kv['rps']):.0f}")
            for k in ("errors", "unsuccessful"):
                r[f"{name}.{k}"] = str(int(r.get(f"{name}.{k}", "0")) + int(kv[k]))
            if float(kv["rps"]) > float(r.get(f"{name}.rps", "-1")):
                for k in ("rps", "p50_us", "p99_us", "requests", "cpu_ms"):
                    r[f"{name}.{k}"] = kv[k]
    return r, rounds


def num(r, key):
    v = r.get(key)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt_rate(gbps):
    return "-" if gbps is None else f"{gbps:.2f} GB/s"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("results")
    p.add_argument("big")
    p.add_argument("small")
    p.add_argument("--out")
    a = p.parse_args()
    r, rounds = load(a.results, a.big, a.small)

    def gbps(case):
        s, b = num(r, f"{case}.seconds"), num(r, f"{case}.bytes")
        return None if not s or b is None else b / s / 1e9

    def rps(case):
        return num(r, f"{case}.rps")

    def p99(case):
        v = num(r, f"{case}.p99_us")
        return "-" if v is None else f"{v / 1000:.1f} ms"

    def small(case):
        o = rps(case)
        if not o:
            return "-"
        return f"{o:.0f} req/s, p99 {p99(case)}, {num(r, case + '.cpu_ms') or 0:.2f} ms CPU/req"

    def large(case):
        g = gbps(case)
        if g is None:
            return "-"
        return f"{fmt_rate(g)} ({num(r, case + '.seconds'):.2f} s, {num(r, case + '.cpu_s') or 0:.2f} CPU-s)"

    def mib(key):
        v = num(r, key)
        return None if v is None else v / 1024

    def ratio(x, y):
        return None if x is None or not y else x / y

    def check(value, ok):
        if value is None:
            return "-"
        return "met" if ok(value) else "MISSED"

    rows = []
    met = []

    def row(case, ours, ref, value, target, ok=None, shown=None):
        verdict = check(value, ok) if ok else ""
        if ok:
            met.append((case, verdict))
        text = "-" if value is None else (shown or f"{value:.2f}×")
        rows.append((case, ours, ref, text, target, verdict))

    big = int(num(r, "run.big_bytes") or 0)
    big_label = "1 GiB" if big == 1 << 30 else f"{big / MIB:.0f} MiB"
    conns = int(num(r, "run.connections") or 32)

    # Case 1 (SPEC §9: fsync off against nginx writing the body to a file)
    ours, nginx = gbps("big.ours_nofsync"), gbps("big.nginx")
    row(f"1. {big_label} multipart upload (curl), fsync off, throughput",
        large("big.ours_nofsync"), f"nginx {large('big.nginx')}", ratio(ours, nginx), "≥ 0.8×",
        lambda v: v >= 0.8)
    hwm = max(filter(None, [mib("big.ours.hwm_kib"), mib("big.ours_nofsync.hwm_kib"),
                            mib("big.peer.hwm_kib"), mib("big.peer.peer_hwm_kib")]), default=None)
    row(f"1. {big_label}: peak RSS (VmHWM) of the service",
        "-" if hwm is None else f"{hwm:.1f} MiB", "", hwm, "< 64 MiB", lambda v: v < 64,
        shown="-" if hwm is None else f"{hwm:.1f} MiB")

    h2 = max(filter(None, [mib("small.ours.hwm_kib"), mib("small.peer.hwm_kib"), mib("small.peer.peer_hwm_kib")]),
             default=None)
    row(f"2. peak RSS after the 140 KB cases ({conns} connections)",
        "-" if h2 is None else f"{h2:.1f} MiB", "", h2, "(info)", shown="-" if h2 is None else f"{h2:.1f} MiB")

    # Case 2 (shipped settings, fsync on, against nginx body-to-file)
    n = rps("small.nginx")
    for case, label, target, bound in [
        ("small.ours", "no peer", "≥ 1.0×", 1.0),
        ("small.peer", "one peer", "≥ 0.4×", 0.4),
    ]:
        o = rps(case)
        row(f"2. 140 KB JPEG, {conns} connections, {label}",
            small(case), f"nginx {small('small.nginx')}",
            ratio(o, n), target, lambda v, b=bound: v >= b)

    # Case 3
    t1, t0 = num(r, "big.peer.seconds"), num(r, "big.ours.seconds")
    row(f"3. {big_label} with one peer vs none (time)",
        f"{t1:.2f} s, {num(r, 'big.peer.cpu_s') or 0:.2f} CPU-s (both servers)" if t1 else "-",
        f"no peer {t0:.2f} s" if t0 else "-",
        ratio(t1, t0), "≤ 1.5×", lambda v: v <= 1.5)

    # Case 5: the S3 backend against a direct PUT into Garage (bench/s3.sh)
    for key, label in [("s3.small", "140 KB"), ("s3.big", big_label)]:
        o, d = num(r, f"{key}.ours"), num(r, f"{key}.direct")
        if o is not None or d is not None:
            row(f"5. S3 backend, {label}, three-node Garage, vs a direct PUT",
                r.get(f"{key}.ours_text", "-"), f"direct PUT {r.get(f'{key}.direct_text', '-')}",
                ratio(o, d), "≥ 0.8×", lambda v: v >= 0.8)

    # Case 4 and context
    for case, label in [("small.ours_nofsync", "no peer"), ("small.peer_nofsync", "one peer")]:
        o = rps(case)
        row(f"4. 140 KB, {label}, fsync off",
            small(case), f"nginx {n:.0f} req/s" if n else "-", ratio(o, n), "(info)")
    o, on = rps("small.ours_nofsync"), rps("small.ours")
    row("4. 140 KB, no peer: fsync off vs on", "", "", ratio(o, on), "(info)")
    o, on = rps("small.peer_nofsync"), rps("small.peer")
    row("4. 140 KB, one peer: fsync off vs on", "", "", ratio(o, on), "(info)")
    o = gbps("big.ours")
    row(f"1. {big_label}, fsync on", large("big.ours"), f"nginx {fmt_rate(nginx)}", ratio(o, nginx), "(info)")
    e = rps("small.express")
    row("140 KB, Express+multer (context)", small("small.ours"), f"Express+multer {small('small.express')}",
        ratio(rps("small.ours"), e), "(info: ours ÷ Express)")
    w = rps("small.ours_warn")
    row("140 KB, no peer, RUST_LOG=warn vs info", small("small.ours_warn"), "", ratio(w, rps("small.ours")), "(info)")
    x = gbps("big.express")
    xh = mib("big.express.hwm_kib")
    row(f"{big_label}, Express+multer (context)", large("big.ours"),
        f"Express+multer {large('big.express')}, peak RSS {xh:.0f} MiB" if xh else large("big.express"),
        ratio(ours, x), "(info: ours ÷ Express)")

    lines = []
    lines.append(f"Machine: {r.get('machine.nproc')} cores, {r.get('machine.cpu')}, kernel {r.get('machine.kernel')}; "
                 f"load average before {r.get('machine.load_before')}, after {r.get('machine.load_after')}")
    lines.append(f"Commit: {r.get('run.commit')}")
    lines.append(f"Runs: 140 KB ({r.get('run.small_bytes')} bytes): wrk, {conns} connections, "
                 f"{r.get('run.seconds')} s per case, best of {r.get('run.rounds')} rounds; "
                 f"large ({big} bytes): curl, fastest of {r.get('run.repeat')} rounds")
    for key in ("big.peer.journaled", "small.peer.journaled", "small.peer_nofsync.journaled"):
        if r.get(key) not in (None, "", "0"):
            lines.append(f"WARNING: {key} = {r[key]}: some replications failed; the peer figures are not valid")
    for key, v in r.items():
        if key.endswith((".errors", ".unsuccessful")) and v not in ("0", ""):
            lines.append(f"WARNING: {key} = {v}")
    lines.append("")
    head = ("Case", "Ours", "Reference", "Ratio", "Target", "")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for rw in rows:
        lines.append("| " + " | ".join(rw) + " |")
    lines.append("")
    lines.append("Every round (large uploads: seconds; 140 KB: req/s):")
    lines.append("")
    for name, values in rounds.items():
        lines.append(f"- {name}: {', '.join(values)}")
    lines.append("")
    missed = [c for c, v in met if v != "met"]
    lines.append(f"Targets met: {sum(1 for _, v in met if v == 'met')} of {len(met)}"
                 + (f"; missed: {'; '.join(missed)}" if missed else ""))
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
