#!/usr/bin/env python3
"""Writes a data folder as the service stores it, for bench/repair.sh.

  {yyyy}/{M}/{d}/{uuid}.jpg   FILES files over DAYS day folders (the days
                              before today), each a real JFIF header (as in
                              make_data.py) followed by random bytes

Sizes are log-uniform between --min-bytes and --max-bytes (equal bounds: all
files the same size). Names, days and sizes come from --seed, so two runs
build the same tree; the content comes from os.urandom (no two files alike,
nothing compressible). Every folder given gets the same tree, byte for byte
(two servers in sync). Prints "files bytes" when done.
"""

import argparse
import datetime
import math
import os
import random
import sys
import uuid

# Importing make_data would leave a __pycache__ folder in bench/.
sys.dont_write_bytecode = True
from make_data import JPEG_HEAD  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", help="data folders to fill (created)")
    p.add_argument("--files", type=int, required=True)
    p.add_argument("--days", type=int, default=20)
    p.add_argument("--min-bytes", type=int, default=20_000)
    p.add_argument("--max-bytes", type=int, default=2_000_000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if a.min_bytes < len(JPEG_HEAD) + 16 or a.max_bytes < a.min_bytes or a.days < 1:
        p.error("sizes must be at least a JPEG header, max >= min, days >= 1")

    rng = random.Random(a.seed)
    today = datetime.date.today()
    days = [today - datetime.timedelta(days=i) for i in range(1, a.days + 1)]
    for folder in a.folders:
        for d in days:
            os.makedirs(os.path.join(folder, str(d.year), str(d.month), str(d.day)), exist_ok=True)
    lo, hi = math.log(a.min_bytes), math.log(a.max_bytes)
    total = 0
    for i in range(a.files):
        d = days[i % len(days)]
        name = f"{uuid.UUID(int=rng.getrandbits(128), version=4)}.jpg"
        size = int(math.exp(rng.uniform(lo, hi))) if hi > lo else a.min_bytes
        data = JPEG_HEAD + os.urandom(size - len(JPEG_HEAD))
        rel = os.path.join(str(d.year), str(d.month), str(d.day), name)
        for folder in a.folders:
            with open(os.path.join(folder, rel), "wb") as f:
                f.write(data)
        total += size
    print(a.files, total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
