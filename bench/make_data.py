#!/usr/bin/env python3
"""Writes the benchmark's input files into a folder (never into the repo).

  small.jpg       a 140 KB "JPEG": a real JFIF header, then random bytes
  small.body      small.jpg as a complete multipart/form-data body (for wrk)
  big.jpg         a 1 GiB "JPEG" (size from --big-bytes), same header

The large file repeats one 16 MiB block of random bytes, so it is written at
disk speed instead of /dev/urandom speed; nothing on the way compresses or
deduplicates, so that makes no difference to the measurement.
"""

import argparse
import os
import sys

# SOI, APP0 "JFIF" 1.1, no thumbnail, then a baseline frame header (SOF0,
# 640x480, three components): what every JPEG camera file starts with, and
# where the service reads the dimensions.
JPEG_HEAD = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000"
    "ffc0001108" "01e0" "0280" "03012200021101031101"
)
BOUNDARY = "----multiserverUploadBench7MA4YWxkTrZu0gW"


def write_small(folder: str, size: int) -> None:
    data = JPEG_HEAD + os.urandom(size - len(JPEG_HEAD))
    with open(os.path.join(folder, "small.jpg"), "wb") as f:
        f.write(data)
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    with open(os.path.join(folder, "small.body"), "wb") as f:
        f.write(head + data + tail)
    with open(os.path.join(folder, "boundary"), "w") as f:
        f.write(BOUNDARY)


def write_big(folder: str, size: int) -> None:
    block = os.urandom(16 * 1024 * 1024)
    fd = os.open(os.path.join(folder, "big.jpg"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, JPEG_HEAD)
        left = size - len(JPEG_HEAD)
        view = memoryview(block)
        while left > 0:
            n = os.write(fd, view[: min(left, len(block))])
            left -= n
    finally:
        os.close(fd)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--small-bytes", type=int, default=140_000)
    p.add_argument("--big-bytes", type=int, default=1 << 30)
    p.add_argument("--no-big", action="store_true")
    a = p.parse_args()
    os.makedirs(a.folder, exist_ok=True)
    write_small(a.folder, a.small_bytes)
    if not a.no_big:
        write_big(a.folder, a.big_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
