"""What ``--fsync-every N`` costs: ``python benchmarks/bench_fsync.py [--dir DIR]``.

Frame records with a 224x224 map (a smooth blob plus noise, as saliency maps are, 8-bit) are
appended by one :class:`~edgesal.runtimes.records.RecordWriter` per policy, in interleaved
blocks of ``--block`` records (policies alternate, so drift of a shared disk spreads over all of
them); the median over ``--rounds`` blocks of the mean milliseconds per record is reported. Run it
on the device's own storage (``--dir``): an SD card's fsync costs far more than a server disk's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_info  # noqa: E402
from edgesal.runtimes.records import RecordWriter  # noqa: E402

POLICIES = (0, 100, 10, 1)  # 0: never (the OS flushes when it likes; fsync on close)


def maps(count: int, size: int = 224, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(count):
        cy, cx = rng.random(2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        out.append((blob + 0.05 * rng.random((size, size))).astype(np.float32))
    return out


def measure(folder: Path, rounds: int, block: int) -> dict[int, float]:
    """Median over ``rounds`` of the mean ms per record of each policy's block."""
    pool = maps(block)
    writers = {p: RecordWriter(folder / f"fsync{p}.salrec", {"bench": p}, 8, p) for p in POLICIES}
    samples: dict[int, list[float]] = {p: [] for p in POLICIES}
    index = 0
    for _ in range(rounds):
        for policy, writer in writers.items():
            start = time.perf_counter()
            for m in pool:
                writer.frame({"frame": index, "score": 0.5}, m)
                index += 1
            samples[policy].append((time.perf_counter() - start) / block * 1e3)
    for writer in writers.values():
        writer.close()
    return {p: statistics.median(v) for p, v in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="folder on the storage to measure (default: a temp folder)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgesal-fsync-", dir=args.dir) as tmp:
        ms = measure(Path(tmp), args.rounds, args.block)
        record = (Path(tmp) / "fsync0.salrec").stat().st_size / (args.rounds * args.block)
    print(f"Machine: {machine_info()}; storage of {args.dir or tempfile.gettempdir()}")
    print(f"(shared with other jobs while measured); {record / 1024:.1f} KiB per record\n")
    print("| --fsync-every | ms per record (median of block means) | vs never |")
    print("|---|---|---|")
    for policy in POLICIES:
        name = "0 (never; fsync on close)" if policy == 0 else str(policy)
        print(f"| {name} | {ms[policy]:.3f} | {ms[policy] / ms[0]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
