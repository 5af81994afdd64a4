"""The network alone on the CPU, every way handseg could run it: speed, and how far each moves the float
model's masks. The default backend and the int8 recipe are chosen from this table.

    python benchmarks/cpu_paths.py [--model NAME] [--data ../shared/data] [--runs 15] [--every 2]

Each row: median ms of one forward pass at the working size of a 1918x1280 frame, at handseg's
default threads, and against float32 PyTorch the share of mask pixels that differ (mean, and the
worst photo) on every --every'th val photo (egohands, hgr, handphotos and the hand-free negatives),
compared at the working size. Rows:
  torch float32                  the reference (backend="torch")
  torch bf16 autocast            backend="bf16", the default on a CPU with bf16 arithmetic
  onnxruntime float32            backend="onnx"
  onnxruntime int8               the model's int8 file (backend="int8"; `python -m train.quantize`)
  onnxruntime int8, first conv quantized too
  onnxruntime int8, after onnxruntime's pre-processing (quant_pre_process), as its warning suggests
  torch int8, PT2E               torchao's X86InductorQuantizer + torch.compile (needs `pip install torchao`
                                 and a C++ compiler; the one-off compile time is printed)
The int8 variants here are calibrated on the same train photos as the model's int8 file.
Run it with ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI to see the torch rows on a CPU without bf16 arithmetic.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import handseg
from benchmarks.stages import median_ms
from handseg import load_working_image, resize_rgb, to_model_input, working_size
from train import DEFAULT_DATA
from train.data import image_input, load_split
from train.quantize import calibration_photos

VAL_SOURCES = ["egohands", "hgr", "handphotos", "negatives"]


def quantize_variant(model, out: Path, photos, *, first_conv_float: bool, preprocess: bool):
    """The runner of an int8 file made with the given switches."""
    handseg.quantize_int8(model, out, photos, first_conv_float=first_conv_float, preprocess=preprocess)
    return handseg.Segmenter(out).runner


def pt2e_int8(model, photos, side: int, example: torch.Tensor):
    """torchao's PT2E int8 for x86, calibrated like the others, compiled for the example's shape."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(torch.export.export(copy.deepcopy(model), (example,)).module(), quantizer)
    height, width = example.shape[-2:]
    for photo in photos:  # fixed shapes: calibrate at the example's size
        prepared(to_model_input(resize_rgb(load_working_image(photo, max_side=side).small, (height, width)))[None])
    compiled = torch.compile(convert_pt2e(prepared))
    started = time.perf_counter()
    compiled(example)
    return compiled, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(parents=[handseg.model_flag()], description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--every", type=int, default=2, help="compare masks on every n-th val photo")
    args = parser.parse_args()

    model = handseg.load_model(args.model, "cpu")
    threads = handseg.default_threads()
    torch.set_num_threads(threads)
    side = model.max_side or handseg.DEFAULT_MAX_SIDE
    height, width = working_size(1280, 1918, max_side=side)
    frame = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    val = load_split(args.data, sources=VAL_SOURCES).val
    inputs = [
        to_model_input(load_working_image(image_input(val[i]["image"]), max_side=side).small)[None]
        for i in range(0, len(val), args.every)
    ]
    photos = calibration_photos(args.data, 6)
    folder = Path(tempfile.mkdtemp(prefix="handseg-cpu-paths-"))
    float_path = handseg.export_onnx(model, folder / "float.onnx")

    def torch_run(x: torch.Tensor, bf16: bool = False) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(x.contiguous(memory_format=torch.channels_last)).float()

    paths: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "torch float32": torch_run,
        "torch bf16 autocast": lambda x: torch_run(x, bf16=True),
        "onnxruntime float32": handseg.Segmenter(float_path, threads=threads).runner,
        "onnxruntime int8 (the model's int8 file)": handseg.Segmenter(model, backend="int8", threads=threads).runner,
        "onnxruntime int8, first conv quantized too": quantize_variant(
            model, folder / "all.onnx", photos, first_conv_float=False, preprocess=False
        ),
        "onnxruntime int8, after quant_pre_process": quantize_variant(
            model, folder / "pre.onnx", photos, first_conv_float=True, preprocess=True
        ),
    }
    notes = []
    try:
        compiled, compile_s = pt2e_int8(model, photos, side, frame)
        paths["torch int8, PT2E (torchao, torch.compile)"] = compiled
        notes.append(f"PT2E: one-off compile {compile_s:.0f} s for the frame's size; its masks compared at that size")
    except ImportError:
        notes.append("PT2E row left out: pip install torchao")

    reference = [torch_run(x) > 0 for x in inputs]
    print(f"torch {torch.__version__}, {threads} thread(s); network input {width}x{height} (a 1918x1280 frame)")
    print(f"CPU bf16 arithmetic: {handseg.cpu_has_native_bf16()}; {len(inputs)} val photos compared")
    print()
    print("| path | network median ms | mask pixels differing from float32, mean % | worst photo % |")
    print("|---|---:|---:|---:|")
    for name, run in paths.items():
        ms = median_ms(lambda run=run: run(frame), args.runs)
        if name.startswith("torch int8"):  # compiled for one shape: compare at that size
            differing = []
            for i in range(0, len(val), args.every):
                small = load_working_image(image_input(val[i]["image"]), max_side=side).small
                x = to_model_input(resize_rgb(small, (height, width)))[None]
                differing.append(float(((run(x) > 0) != (torch_run(x) > 0)).float().mean()))
        else:
            differing = [float(((run(x) > 0) != ref).float().mean()) for x, ref in zip(inputs, reference)]
        print(f"| {name} | {ms:.1f} | {100 * np.mean(differing):.3f} | {100 * max(differing):.2f} |", flush=True)
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
