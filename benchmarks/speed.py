"""Speed of handseg's inference paths beside the original Hand-Segmentation pipeline, in one process,
interleaved after warm-up, with each path's dice on the val split so speed never hides a quality loss.

    python benchmarks/speed.py [--model DIR] [--data ../shared/data] [--runs 7] [--contended] [--json speed.json]

--contended times everything while a second process keeps one core busy (a pure-Python busy loop), as on
a user's machine with a browser or a build running; benchmarks/threads.py compares thread counts that way.

Paths (end to end: JPEG file -> full-size mask):
  original      the 2018 pipeline, re-implemented for reference: 64-wide U-Net (random weights: timing
                only) at scale 0.5 on the two square halves of the frame, sigmoid, merge, dense CRF at full size,
                at torch's own thread count (all cores), as its users ran it
  original@handseg  the same at the thread count handseg's default path runs on (onnxruntime's default:
                every core, `handseg.default_threads`), for the comparison at equal threads
  default       handseg.segment with the model at its own working resolution, default backend ("auto":
                int8 where the model has its int8 file, else bf16 on a CPU with bf16 arithmetic, else float32);
                the hand landmark stage, and each region of the mask confirmed as a hand or dropped
  default+hands the default, and each hand's mask (`result.hands`: the split by hand)
  raw           the default without confirmation (verify=False, --no-verify): the landmark stage runs
                only where the model reads landmarks
  masks-only    the default without the landmark stage (hands=False, --no-hands): the mask alone
  float         the same in float32 (backend="torch"), the default before bf16
  default+crf   the default with CRF (at the working resolution)
  compiled      float32 with torch.compile (compile=True); its one-off compile is in "first call s"
  onnx          onnxruntime, float32
  int8          onnxruntime with the model's int8 file (backend="int8")
  fast          int8 at a lower working resolution (--fast-side)
  full-res      the model at full resolution (the quality reference for working-resolution paths)
Peak RSS, and the time from a fresh process's start to its first mask (imports, model load and one
frame), are measured per path in a fresh subprocess. Paths the model lacks (int8 without an int8 file)
are left out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import handseg
from benchmarks.load import busy_core
from handseg import load_image, resize_rgb, to_model_input
from handseg.crf import refine_with_crf
from handseg.hardware import ONNXRUNTIME_POOL
from train import DEFAULT_DATA

SIZES = {"1918x1280": (1918, 1280), "640x480": (640, 480)}


#: torch's own thread count in this process (all usable cores): what the original pipeline's users ran it
#: with, read before anything sets it.
TORCH_OWN_THREADS = torch.get_num_threads()
#: The threads handseg's default path (int8 network and landmark models, on onnxruntime) runs on.
DEFAULT_PATH_THREADS = handseg.default_threads(pool=ONNXRUNTIME_POOL)


class OriginalPipeline:
    """The original project's test-time path, for timing: scale 0.5, two square halves, merge, full-size CRF,
    at `threads` torch threads (set before each frame, as handseg's runners set theirs)."""

    def __init__(self, threads: int = TORCH_OWN_THREADS) -> None:
        torch.manual_seed(0)
        self.net = handseg.OriginalUNet().eval()  # 64-wide, the original network
        self.threads = threads

    @torch.inference_mode()
    def __call__(self, path: str) -> np.ndarray:
        torch.set_num_threads(self.threads)
        rgb = load_image(path)
        h, w = rgb.shape[:2]
        small = resize_rgb(rgb, (round(h * 0.5), round(w * 0.5)))
        sh, sw = small.shape[:2]
        side = min(sh, sw)
        left, right = small[:, :side], small[:, sw - side :]
        probs = torch.sigmoid(self.net(torch.stack([to_model_input(left), to_model_input(right)])))[:, 0]
        merged = torch.zeros(sh, sw)
        merged[:, : sw // 2] = probs[0][:, : sw // 2]
        merged[:, sw // 2 :] = probs[1][:, side - (sw - sw // 2) :]
        full = F.interpolate(merged[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        return refine_with_crf(rgb, full.numpy()) > 0.5


def make_frames(
    data: Path, folder: Path, sizes: dict[str, tuple[int, int]] = SIZES, per_size: int = 8
) -> dict[str, list[str]]:
    """Real photos (EgoHands and HGR, alternating) resized to each of `sizes` and saved as JPEG files."""
    ego, hgr = (sorted((data / s / "images").glob("*.jpg")) for s in ("egohands", "hgr"))
    photos = [p for pair in zip(ego, hgr) for p in pair][:per_size]
    frames = {}
    for name, size in sizes.items():
        frames[name] = []
        for i, photo in enumerate(photos):
            path = folder / f"{name}_{i}.jpg"
            Image.open(photo).convert("RGB").resize(size, Image.BILINEAR).save(path, quality=90)
            frames[name].append(str(path))
    return frames


def build_segmenters(model_arg: str | None, fast_side: int, only: str | None = None, device: str = "cpu") -> dict:
    """path name -> (Segmenter, segment options) for every path but the original; with `only`, just that
    one (for memory measurements). `device` applies to the torch paths; onnxruntime runs on the CPU."""
    factories = {
        "default": lambda: (handseg.Segmenter(model_arg, device=device), {}),
        "default+hands": lambda: (handseg.Segmenter(model_arg, device=device), {"hands": True}),
        "raw": lambda: (handseg.Segmenter(model_arg, device=device, verify=False), {}),
        "masks-only": lambda: (handseg.Segmenter(model_arg, device=device, hands=False), {}),
        "float": lambda: (handseg.Segmenter(model_arg, device=device, backend="torch"), {}),
        "default+crf": lambda: (handseg.Segmenter(model_arg, device=device), {"crf": True}),
        "compiled": lambda: (handseg.Segmenter(model_arg, device=device, compile=True), {}),
        "onnx": lambda: (handseg.Segmenter(model_arg, device="cpu", backend="onnx"), {}),
        "int8": lambda: (handseg.Segmenter(model_arg, device="cpu", backend="int8"), {}),
        "fast": lambda: (handseg.Segmenter(model_arg, device="cpu", backend="int8", max_side=fast_side), {}),
        "full-res": lambda: (handseg.Segmenter(model_arg, device=device, max_side=None), {}),
    }
    built = {}
    for name, make in factories.items():
        if only in (None, name):
            try:
                built[name] = make()
            except (handseg.Int8UnavailableError, ImportError) as exc:
                print(f"{name} path left out: {exc}", file=sys.stderr)
    return built


def build_paths(model_arg: str | None, fast_side: int, only: str | None = None, device: str = "cpu") -> dict:
    """name -> function(path) -> mask; with `only`, builds just that one (for memory measurements)."""
    paths: dict[str, Callable[[str], np.ndarray]] = {}
    if only in (None, "original"):
        paths["original"] = OriginalPipeline()  # as its users ran it: torch's own threads
    if only in (None, "original@handseg"):
        paths["original@handseg"] = OriginalPipeline(DEFAULT_PATH_THREADS)  # at the default path's threads
    for name, (segmenter, options) in build_segmenters(model_arg, fast_side, only, device).items():
        paths[name] = lambda p, s=segmenter, o=options: _mask(s, p, o)
    return paths


def _mask(segmenter: handseg.Segmenter, path: str, options: dict):
    """The path's mask; with options["hands"], each hand's mask worked out too (as `result.hands` does)."""
    options = dict(options)
    hands = options.pop("hands", False)
    result = segmenter(path, **options)
    if hands:
        result.hands  # noqa: B018 (the work is in the property)
    return result.mask


def fresh_process(
    path_name: str, frame: str, model_arg: str | None, fast_side: int, device: str
) -> tuple[float, float]:
    """(peak resident MB, seconds from start to the first mask) of a fresh process that imports handseg,
    loads the path and runs one frame, then the same frame again."""
    code = (
        "import time; started = time.perf_counter(); "
        "from benchmarks.speed import build_paths; "
        f"f = build_paths({model_arg!r}, {fast_side}, {path_name!r}, {device!r})[{path_name!r}]; "
        f"f({frame!r}); print(time.perf_counter() - started); f({frame!r}); "
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
        "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first_s, peak_kb = done.stdout.strip().splitlines()[-2:]
    return int(peak_kb) / 1024, float(first_s)


def dice_on_val(fn, data: Path) -> dict[str, float]:
    """Mean val dice per source and overall for `fn(image source) -> mask`, scored like quality.py."""
    from benchmarks.quality import PHOTO_SOURCES
    from train.data import image_input, load_split
    from train.evaluate import score_predictions, summarize

    split = load_split(data, sources=PHOTO_SOURCES.split(","))
    summary = summarize(score_predictions(split.val, lambda example: fn(image_input(example["image"]))))
    return {**{s: v["dice"] for s, v in summary["per_source"].items()}, "all": summary["overall"]["dice"]}


def main() -> None:
    parser = argparse.ArgumentParser(parents=[handseg.model_flag()], description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per path and size (after one warm-up)")
    parser.add_argument("--fast-side", type=int, default=320, help="working resolution of the fast path")
    parser.add_argument("--batch", type=int, default=32, help="frames for the images/second measure")
    parser.add_argument("--skip-dice", action="store_true", help="timing only")
    parser.add_argument(
        "--paths", help="comma-separated subset of paths to run (default: all; speed-up needs 'original')"
    )
    parser.add_argument("--device", default="cpu", help="device of the torch paths, e.g. cuda (default cpu)")
    parser.add_argument("--contended", action="store_true", help="with another process keeping one core busy")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with busy_core() if args.contended else contextlib.nullcontext():
        run_benchmark(args)


def run_benchmark(args: argparse.Namespace) -> None:
    paths = build_paths(args.model, args.fast_side, device=args.device)
    if args.paths:
        paths = {name: fn for name, fn in paths.items() if name in args.paths.split(",")}
    segmenters = build_segmenters(args.model, args.fast_side, device=args.device)
    folder = Path(tempfile.mkdtemp(prefix="handseg-speed-"))
    frames = make_frames(args.data, folder)
    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    print(
        f"torch {torch.__version__}{gpu}; the original at torch's own {TORCH_OWN_THREADS} threads (original) and at "
        f"the default path's {DEFAULT_PATH_THREADS} (original@handseg); handseg paths at their defaults; torch "
        f"paths on {args.device}; model: {args.model or 'shipped default'}; "
        f"{'one core busy' if args.contended else 'idle'}"
    )

    timings: dict[str, dict[str, list[float]]] = {p: {s: [] for s in SIZES} for p in paths}
    first_call_s: dict[str, float] = {}
    for size, files in frames.items():
        for name, fn in paths.items():  # warm-up (the compiled path compiles here)
            started = time.perf_counter()
            fn(files[0])
            first_call_s.setdefault(name, time.perf_counter() - started)
        for run in range(args.runs):  # interleaved: every path sees the same machine state
            frame = files[run % len(files)]
            for name, fn in paths.items():
                started = time.perf_counter()
                fn(frame)
                timings[name][size].append((time.perf_counter() - started) * 1000)

    throughput = {}
    batch_files = (frames["1918x1280"] * args.batch)[: args.batch]
    for name, (segmenter, options) in segmenters.items():
        if name not in paths or name in ("default+crf", "full-res", "default+hands"):
            continue
        started = time.perf_counter()
        segmenter.segment_batch(batch_files, **options)  # default batch size
        throughput[name] = args.batch / (time.perf_counter() - started)

    frame = frames["1918x1280"][0]
    fresh = {name: fresh_process(name, frame, args.model, args.fast_side, args.device) for name in paths}
    val_dice = {}
    if not args.skip_dice:
        for name, fn in paths.items():
            if not name.startswith("original"):  # random weights: its dice would mean nothing
                val_dice[name] = dice_on_val(fn, args.data)

    def original_ms(name: str) -> float:
        return statistics.median(timings[name]["1918x1280"]) if name in timings else float("nan")

    base, base_handseg = original_ms("original"), original_ms("original@handseg")
    print()
    print(
        "| path | 1918x1280 median ms | p90 ms | speed-up vs original (its own threads) | vs original at "
        "handseg's threads | 640x480 median ms | peak RSS MB | frames/s, segment_batch of 32 1918x1280 "
        "| first call s | fresh process to first mask s | val dice (all) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    report = {}
    for name in paths:
        big, small = timings[name]["1918x1280"], timings[name]["640x480"]
        med, p90 = statistics.median(big), float(np.percentile(big, 90))
        report[name] = {
            "median_ms_1918x1280": med,
            "p90_ms_1918x1280": p90,
            "median_ms_640x480": statistics.median(small),
            "p90_ms_640x480": float(np.percentile(small, 90)),
            "speedup_vs_original": base / med,
            "speedup_vs_original_at_handseg_threads": base_handseg / med,
            "peak_rss_mb": fresh[name][0],
            "frames_per_s_batch": throughput.get(name),
            "first_call_s": first_call_s[name],
            "fresh_process_first_mask_s": fresh[name][1],
            "val_dice": val_dice.get(name),
        }
        fps = f"{throughput[name]:.1f}" if name in throughput else "–"
        speedup = f"{base / med:.1f}x" if base == base else "–"  # nan without the original path
        speedup_handseg = f"{base_handseg / med:.1f}x" if base_handseg == base_handseg else "–"
        d = (
            f"{val_dice[name]['all']:.3f}"
            if name in val_dice
            else "n/a (random weights)"
            if name.startswith("original")
            else "–"
        )
        print(
            f"| {name} | {med:.0f} | {p90:.0f} | {speedup} | {speedup_handseg} | {statistics.median(small):.0f} | "
            f"{fresh[name][0]:.0f} | {fps} | {first_call_s[name]:.1f} | {fresh[name][1]:.1f} | {d} |"
        )
    if val_dice:
        print()
        for name, per in val_dice.items():
            print(f"val dice per source, {name}: " + ", ".join(f"{s} {v:.3f}" for s, v in per.items() if s != "all"))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
