"""Run the fuzz targets: ``python -m tests.fuzz.run [--seconds S] [TARGET ...]``.

Each target runs in its own child process (libFuzzer ends the process when it stops) under
atheris, coverage-guided over the modules of that target's readers, starting from the committed
corpus ``tests/fuzz/corpus/<target>/``; without atheris (it ships wheels for Linux x86_64 only) a
seeded mutator over the same corpus runs instead. The child caps its own memory (``RLIMIT_AS``),
so an allocation sized from an untrusted number fails as MemoryError -- a finding -- instead of
swapping. A finding is saved as ``<out>/crash-<sha1>`` and the run exits non-zero; copy it into
the corpus with a regression test. ``--seed`` (re)writes the seed files of the corpus.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 6 << 30  # address space of a child: far above any honest input's needs
MAX_LEN = 1 << 16
# a drawn graph reads one byte per choice: let libFuzzer use 128 bytes from the start
FLAGS = {"onnx_graph": ("-len_control=0", "-max_len=128")}


def corpus_dir(name: str) -> Path:
    return Path(__file__).parent / "corpus" / name


def child(name: str, seconds: float, out: Path) -> int:
    """Fuzz ``name`` for ``seconds`` in this process; returns the exit status (0: no finding)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    try:
        import atheris
    except ImportError:
        return _mutate(name, seconds, out)
    from tests.fuzz import targets

    with atheris.instrument_imports(include=targets.modules(name)):
        for module in targets.modules(name):
            importlib.import_module(module)
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    out.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.argv[0],
        str(work),
        str(corpus_dir(name)),
        f"-max_total_time={max(1, int(seconds))}",
        f"-max_len={MAX_LEN}",
        "-timeout=20",
        # libFuzzer's own RSS check reads getrusage's ru_maxrss, which Linux carries over from
        # the parent across fork and exec: a child of a pytest process that peaked at 7 GB read
        # 7 GB before its first input. The memory cap is RLIMIT_AS above (MemoryError: finding).
        "-rss_limit_mb=0",
        f"-artifact_prefix={out}/",
        "-print_final_stats=1",
        *FLAGS.get(name, ()),
    ]
    atheris.Setup(argv, lambda data: targets.run_one(name, data))
    atheris.Fuzz()  # exits the process
    return 0


def _mutate(name: str, seconds: float, out: Path) -> int:
    """Fallback without atheris: random byte edits and splices of the corpus."""
    from tests.fuzz import targets

    rng = random.Random(0)
    pool = [p.read_bytes() for p in sorted(corpus_dir(name).iterdir())] or [b""]
    end, runs = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        data = _edit(rng, bytearray(rng.choice(pool)), pool)
        try:
            targets.run_one(name, bytes(data))
        except BaseException:
            _save(out, bytes(data), traceback.format_exc())
            return 1
        runs += 1
    print(f"{name}: {runs} inputs, no finding (random mutation; atheris not installed)")
    return 0


def _edit(rng: random.Random, data: bytearray, pool: list[bytes]) -> bytearray:
    interesting = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 31]
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(data) + 1)
        kind = rng.randrange(5)
        if kind == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            value = rng.choice(interesting).to_bytes(4, "little")
            data[pos : pos + 4] = value
        elif kind == 2:
            del data[pos : pos + rng.randint(1, 64)]
        elif kind == 3:
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            data[pos:pos] = other[start : start + rng.randint(1, 256)]
        else:
            data[pos:] = b""  # truncation
    return data[:MAX_LEN]


def _save(out: Path, data: bytes, report: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"crash-{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    print(f"finding saved to {path}\n{report}", file=sys.stderr)


def fuzz(name: str, seconds: float, out: Path, timeout: float | None = None):
    """Run one target in a child process; the CompletedProcess (stdout and stderr merged)."""
    return subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", "--child", name, "--seconds", str(seconds)]
        + ["--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",  # libFuzzer echoes the input bytes
        timeout=timeout or seconds * 4 + 60,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


def write_seeds() -> None:
    from tests.fuzz.targets import seeds

    for name, files in seeds().items():
        folder = corpus_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        for file, data in files.items():
            (folder / (f"seed{file}" if file.startswith(".") else f"seed-{file}")).write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="default: all of them")
    parser.add_argument("--seconds", type=float, default=60.0, help="per target")
    parser.add_argument("--out", default="fuzz-findings", help="folder for findings")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--seed", action="store_true", help="rewrite the corpus seed files")
    args = parser.parse_args(argv)
    if args.seed:
        write_seeds()
        return 0
    if args.child:  # imports the targets itself, instrumented
        return child(args.child, args.seconds, Path(args.out).resolve())
    from tests.fuzz.targets import TARGETS

    failed = []
    for name in args.targets or list(TARGETS):
        proc = fuzz(name, args.seconds, Path(args.out).resolve())
        print(proc.stdout[-3000:] if proc.returncode else f"{name}: no finding")
        if proc.returncode:
            failed.append(name)
    print(f"findings in: {', '.join(failed)} (see {args.out}/)" if failed else "no findings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
