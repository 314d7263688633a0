"""What telling a finished video from a replaced one costs the archive: its sampled digest (3 x 1 MiB,
`stream.sinks.results.content_digest`) against a full hash of the file, for files of a few sizes.

    python benchmarks/archive_digest.py [--sizes-mib 16 256 1024] [--repeat 3]

The files are random bytes written to a temporary folder and read from the page cache, so the full hashes
are at their fastest here (CPU-bound); from a cold disk they are slower, the sampled digest barely changes.
Prints milliseconds per file (median of --repeat) and the ratio of the faster full hash to the sampled one.
"""

# ruff: noqa: E402  (the project's imports come after the sys.path fix below)
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT) if Path(p or ".").resolve() == ROOT / "benchmarks" else p for p in sys.path]

from rich.console import Console
from rich.table import Table

from stream.sinks.results import content_digest


def full_hash(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes-mib", type=int, nargs="+", default=[16, 256, 1024])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    table = Table(title="archive: is this the video the results were made from?")
    for column in ("file", "sampled (ms)", "blake2b full (ms)", "sha256 full (ms)", "full / sampled"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for mib in args.sizes_mib:
            path = Path(tmp) / f"{mib}.bin"
            with open(path, "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(1 << 20))
            sampled = median_ms(lambda path=path: content_digest(path), args.repeat)
            blake = median_ms(lambda path=path: full_hash(path, "blake2b"), args.repeat)
            sha = median_ms(lambda path=path: full_hash(path, "sha256"), args.repeat)
            ratio = min(blake, sha) / sampled  # the faster full hash
            table.add_row(f"{mib} MiB", f"{sampled:.2f}", f"{blake:.0f}", f"{sha:.0f}", f"{ratio:.0f}x")
            path.unlink()
    Console().print(table)


if __name__ == "__main__":
    main()
