"""CPU threads per segmentation, idle and with another process keeping one core busy.

    python benchmarks/threads.py [--model DIR] [--data ../shared/data] [--runs 9] [--cli-frames 10]

For each thread count (1, handseg's default, every core) and each condition (idle; a pure-Python
busy loop in a second process), the median and p90 time of `handseg.segment` on a 1280x720 and a
1918x1280 JPEG, with each CPU backend: PyTorch in float32 ("torch") and in bf16, onnxruntime in float32
("onnx") and int8 (the model's int8 file, when it has one), the hand landmark stage at the same count;
the default backend, and each backend's default count, are marked; then `handseg segment --viz` on GTEA
frames end to end (a fresh process, as a user runs it) with the default and with one thread and every
core. The defaults (`handseg.default_threads`, per thread pool) are chosen from this table.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import handseg
from benchmarks.load import busy_core
from benchmarks.speed import make_frames
from handseg import default_threads, usable_cores
from handseg.hardware import ONNXRUNTIME_POOL, TORCH_POOL
from train import DEFAULT_DATA

SIZES = {"1280x720": (1280, 720), "1918x1280": (1918, 1280)}


def time_ms(fn, files: list[str], runs: int) -> list[float]:
    fn(files[0])  # warm-up
    times = []
    for run in range(runs):
        started = time.perf_counter()
        fn(files[run % len(files)])
        times.append((time.perf_counter() - started) * 1000)
    return times


def cli_seconds(model: str | None, inputs: list[Path], out: Path, threads: int | None) -> float:
    command = [
        sys.executable,
        "-m",
        "handseg",
        "segment",
        "-q",
        "--viz",
        "--overwrite",
        "-i",
        *map(str, inputs),
        "-o",
        str(out),
    ]
    command += ["--model", model] if model else []
    command += ["--threads", str(threads)] if threads else []
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(parents=[handseg.model_flag()], description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--cli-frames", type=int, default=10, help="GTEA frames for the end-to-end CLI rows (0: none)")
    args = parser.parse_args()

    cores = usable_cores()
    counts = sorted({1, default_threads(), default_threads(pool=ONNXRUNTIME_POOL), cores})
    pools = {"torch": TORCH_POOL, "bf16": TORCH_POOL, "onnx": ONNXRUNTIME_POOL, "int8": ONNXRUNTIME_POOL}
    folder = Path(tempfile.mkdtemp(prefix="handseg-threads-"))
    files = make_frames(args.data, folder, SIZES, per_size=3)
    model = handseg.load_model(args.model, "cpu")
    backends = ["torch", "bf16", "onnx"]
    try:
        handseg.Segmenter(model, backend="int8")
        backends.append("int8")
    except handseg.Int8UnavailableError as exc:
        print(f"int8 rows left out: {exc}", file=sys.stderr)
    segmenters = {(b, n): handseg.Segmenter(model, backend=b, threads=n) for b in backends for n in counts}
    default_backend = handseg.Segmenter(model).backend
    print(
        f"torch {torch.__version__}; {cores} usable cores; handseg's default threads: torch "
        f"{default_threads()}, onnxruntime {default_threads(pool=ONNXRUNTIME_POOL)}"
    )
    print()
    print("| backend | threads | load | " + " | ".join(f"{s} median ms | {s} p90 ms" for s in SIZES) + " |")
    print("|---|---:|---|" + "---:|---:|" * len(SIZES))
    for condition in ("idle", "one core busy"):
        with busy_core() if condition != "idle" else contextlib.nullcontext():
            for backend in backends:
                for n in counts:
                    cells = []
                    for paths in files.values():
                        run = lambda p, s=segmenters[backend, n]: s(p).mask  # noqa: E731
                        t = time_ms(run, paths, args.runs)
                        cells.append(f"{statistics.median(t):.0f} | {np.percentile(t, 90):.0f}")
                    label = f"{n}" + (" (default)" if n == default_threads(pool=pools[backend]) else "")
                    name = backend + (" (default)" if backend == default_backend else "")
                    print(f"| {name} | {label} | {condition} | " + " | ".join(cells) + " |", flush=True)
    if args.cli_frames:
        inputs = sorted((args.data / "gtea_unlabeled").glob("*.jpg"))[: args.cli_frames]
        print()
        print(f"`handseg segment --viz`, {len(inputs)} GTEA frames, a fresh process each (s, model load included):")
        print()
        print("| threads | idle s | one core busy s |")
        print("|---|---:|---:|")
        default_count = default_threads(pool=pools[default_backend])
        rows = {1: "1", cores: f"every core ({cores})", default_count: f"default ({default_count})"}
        for threads, label in sorted(rows.items()):
            threads = None if threads == default_count else threads
            idle = cli_seconds(args.model, inputs, folder / "cli", threads)
            with busy_core():
                busy = cli_seconds(args.model, inputs, folder / "cli", threads)
            print(f"| {label} | {idle:.1f} | {busy:.1f} |", flush=True)


if __name__ == "__main__":
    main()
