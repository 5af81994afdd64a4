"""int8 on CPUs with and without VNNI: how far each int8 recipe moves the float model's masks, on this
CPU and on an emulated AVX2-only one (QEMU), and how fast it runs here.

    python benchmarks/int8_cpus.py [--model NAME] [--data ../shared/data] [--every 2] [--cpu EPYC-Rome]
                                   [--recipes s8,s7,u8] [--runs 15]

Why: onnxruntime's x86 int8 kernels differ by CPU. With AVX-512 VNNI (or AVX-VNNI), uint8 x int8
products are summed into 32 bits; with AVX2 alone, pairs of them are first summed into 16 bits with
saturation (VPMADDUBSW), so large activations times large weights clip and the masks drift.
Recipes (all QDQ, per-channel weights, uint8 activations, the first convolution float32, calibrated on
the same train photos as `python -m train.quantize`):
  s8   int8 weights, full range: the shipped recipe up to handseg 0.4
  s7   int8 weights in 7 bits (`reduce_range`): a pair of products cannot reach the 16-bit limit
  u8   uint8 weights (onnxruntime's U8U8 kernels, which widen to 16 bits before multiplying)
Each recipe runs twice: with onnxruntime's default kernels ("plain") and with its setting for exact int8
sums on x86 ("exact": `handseg.backends.X64_EXACT_INT8`, which handseg sets where the CPU lacks VNNI).
For each: the share of mask pixels equal to float32 PyTorch's (mean, and the worst photo) and the mean
dice between the two masks, on every --every'th val photo of egohands, hgr, handphotos and the
hand-free negatives, at the working size; here, and in a child process run by `qemu-x86_64 -cpu CPU`
(Debian's qemu-user: `apt-get install qemu-user`), whose CPUID has AVX2 and no AVX-512, so
onnxruntime takes its AVX2 kernels; and the share of pixels on which the two CPUs agree. QEMU's time
is no guide to a real CPU's; the speed column is this CPU's (network alone, default threads).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RECIPES = {
    "s8": {"reduce_range": False, "weight_type": "int8"},
    "s7": {"reduce_range": True, "weight_type": "int8"},
    "u8": {"reduce_range": False, "weight_type": "uint8"},
}


def run_int8(
    paths: dict[str, str], inputs: list[np.ndarray], modes: dict[str, dict[str, str]]
) -> dict[str, list[np.ndarray]]:
    """ "recipe mode" -> the mask (logits > 0) of each input, for each recipe's file and each mode's session
    settings, with onnxruntime alone (no torch: fast under QEMU)."""
    masks = {}
    for recipe, path in paths.items():
        for mode, entries in modes.items():
            session = make_session(path, 1, entries)
            masks[f"{recipe} {mode}"] = [session.run(None, {"image": x})[0][0, 0] > 0 for x in inputs]
    return masks


def make_session(path: str, threads: int, entries: dict[str, str]):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = threads, 3
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def child(folder: Path) -> None:
    """Run under QEMU: read inputs.npz, modes.json and the recipes' files from `folder`, write emulated.npz."""
    with np.load(folder / "inputs.npz") as stored:
        inputs = [stored[k] for k in sorted(stored, key=int)]
    paths = {p.stem: str(p) for p in sorted(folder.glob("*.onnx"))}
    masks = run_int8(paths, inputs, json.loads((folder / "modes.json").read_text()))
    np.savez(folder / "emulated.npz", **{f"{r}|{i}": m for r, ms in masks.items() for i, m in enumerate(ms)})


def agreement(masks: list[np.ndarray], reference: list[np.ndarray]) -> tuple[float, float, float]:
    """(mean share of equal pixels, the worst photo's, mean dice between the masks where the reference has hands)."""
    equal = [float((m == r).mean()) for m, r in zip(masks, reference)]
    dice = [2 * (m & r).sum() / (m.sum() + r.sum()) for m, r in zip(masks, reference) if r.any()]
    return float(np.mean(equal)), min(equal), float(np.mean(dice))


def main() -> None:
    import handseg  # here, not at the top: the emulated runs import it in processes of their own

    parser = argparse.ArgumentParser(parents=[handseg.model_flag()], description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="default: $HANDSEG_DATA or ../shared/data")
    parser.add_argument("--every", type=int, default=2, help="compare masks on every n-th val photo")
    parser.add_argument("--cpu", default="EPYC-Rome", help="QEMU CPU model without AVX-512 (default EPYC-Rome)")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--runs", type=int, default=15, help="timed runs for the speed column")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    import torch

    from benchmarks.stages import median_ms
    from handseg.backends import X64_EXACT_INT8
    from train import DEFAULT_DATA
    from train.data import image_input, load_split
    from train.quantize import calibration_photos

    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        sys.exit("needs QEMU's user-mode emulator for the AVX2-only CPU: apt-get install qemu-user")
    data = args.data or DEFAULT_DATA
    model = handseg.load_model(args.model, "cpu")
    threads = handseg.default_threads()
    torch.set_num_threads(threads)
    side = model.max_side or handseg.DEFAULT_MAX_SIDE
    val = load_split(data, sources=["egohands", "hgr", "handphotos", "negatives"]).val
    rows = range(0, len(val), args.every)
    inputs = [
        handseg.to_model_input(handseg.load_working_image(image_input(val[i]["image"]), max_side=side).small)[None]
        for i in rows
    ]
    with torch.inference_mode():
        reference = [model(x.contiguous(memory_format=torch.channels_last))[0, 0].numpy() > 0 for x in inputs]
    folder = Path(tempfile.mkdtemp(prefix="handseg-int8-cpus-"))
    photos = calibration_photos(data, 6)
    paths = {}
    for recipe in args.recipes.split(","):
        paths[recipe] = str(handseg.quantize_int8(model, folder / f"{recipe}.onnx", photos, **RECIPES[recipe]))
    arrays = [x.numpy() for x in inputs]
    np.savez(folder / "inputs.npz", **{str(i): x for i, x in enumerate(arrays)})
    modes = {"plain": {}, "exact": X64_EXACT_INT8}
    (folder / "modes.json").write_text(json.dumps(modes))
    native = run_int8(paths, arrays, modes)
    started = time.perf_counter()
    # The child is this file run by the base interpreter under QEMU; it needs only numpy and onnxruntime,
    # found where this process finds them.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path[1:] if p)}
    command = [qemu, "-cpu", args.cpu, os.path.realpath(sys.executable), str(Path(__file__).resolve())]
    subprocess.run([*command, "--child", str(folder)], check=True, env=env, stderr=subprocess.DEVNULL)
    emulated_s = time.perf_counter() - started
    with np.load(folder / "emulated.npz") as stored:
        emulated = {r: [stored[f"{r}|{i}"] for i in range(len(arrays))] for r in native}
    frame = torch.rand(
        1, 3, *handseg.working_size(1280, 1918, max_side=side), generator=torch.Generator().manual_seed(0)
    ).numpy()
    print(
        f"{len(arrays)} val photos (every {args.every}th of egohands, hgr, handphotos, negatives), at the working size;"
    )
    print(f"this CPU: {cpu_name()}, adds int8 products exactly (VNNI) {handseg.cpu_multiplies_int8_exactly()}; "
          f"emulated: QEMU -cpu {args.cpu} "
          f"({emulated_s:.0f} s); torch float32 is the reference")  # fmt: skip
    print()
    print("| recipe | kernels | network ms here | equal to float here, mean / worst % | dice here | equal to "
          "float, AVX2 (QEMU), mean / worst % | dice AVX2 | pixels equal between the two CPUs % |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in native:
        recipe, mode = name.split()
        session = make_session(paths[recipe], threads, modes[mode])
        ms = median_ms(lambda session=session: session.run(None, {"image": frame}), args.runs)
        here, there = agreement(native[name], reference), agreement(emulated[name], reference)
        between = float(np.mean([(a == b).mean() for a, b in zip(native[name], emulated[name])]))
        cells = [mode, f"{ms:.1f}", f"{100 * here[0]:.2f} / {100 * here[1]:.2f}", f"{here[2]:.4f}"]
        cells += [f"{100 * there[0]:.2f} / {100 * there[1]:.2f}", f"{there[2]:.4f}", f"{100 * between:.3f}"]
        print(f"| {recipe} | " + " | ".join(cells) + " |", flush=True)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
