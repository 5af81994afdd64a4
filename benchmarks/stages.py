"""Where one 1918x1280 frame's time goes in the default CPU path, and what each speed choice buys.

    python benchmarks/stages.py [--model DIR] [--data ../shared/data] [--runs 15]

Every row is a median over --runs after a warm-up, on real photos resized to 1918x1280 (JPEG q90):
  decode + resize        load_image, then resize_rgb to the working size (decode everything)
  reduced decode         load_working_image: JPEG draft mode at the smallest DCT scale still at least
                         the working size, then resize (what handseg.segment does)
  network ...            the model alone at the working size, at handseg's default threads (torch's for
                         torch, onnxruntime's for onnxruntime: `handseg.default_threads`): float32 with
                         contiguous and channels_last input, bf16 autocast (the default backend on a
                         CPU with bf16 arithmetic), a batch of 8 (time per frame), torch.compile'd, on
                         every core, and with onnxruntime in float32 and int8 (the model's int8 file)
  to full size           bilinear up-sampling of the logits, sigmoid, threshold
  hand landmarks         the landmark stage on the working image (palm detector, landmark model per hand;
                         benchmarks/hands_speed.py has more), and the full-size mask split by hand
  confirmation           each region of the working-size mask confirmed as a hand or dropped
                         (`HandLandmarker.confirm`: regions, landmark model on crops of those no found hand
                         explains), then the kept regions at full size and split by hand, cut at the wrist
  training step          forward, backward and AdamW step of a 16xCx256x256 batch (the shipped model's
                         training crops), contiguous and channels_last (what train.run does)
The end-to-end figures, with val dice beside them, are benchmarks/speed.py's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import handseg
from benchmarks.load import median_ms
from handseg import load_image, load_working_image, resize_rgb, to_model_input, usable_cores, working_size
from handseg.hands import hand_channels
from handseg.hands.confirm import confirmed_labels
from handseg.hardware import ONNXRUNTIME_POOL
from handseg.segmenter import small_probability as small_probability_of
from train import DEFAULT_DATA

#: The threads the landmark models and the int8 network run on by default (onnxruntime's pool).
ONNX_THREADS = handseg.default_threads(pool=ONNXRUNTIME_POOL)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[handseg.model_flag()], description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    model = handseg.load_model(args.model, "cpu")
    torch.set_num_threads(handseg.default_threads())  # what handseg.Segmenter runs torch with by default
    side = model.max_side or handseg.DEFAULT_MAX_SIDE
    photo = sorted((args.data / "egohands" / "images").glob("*.jpg"))[0]
    frame = Path(tempfile.mkdtemp(prefix="handseg-stages-")) / "frame.jpg"
    Image.open(photo).convert("RGB").resize((1918, 1280), Image.BILINEAR).save(frame, quality=90)
    size = working_size(1280, 1918, max_side=side)

    small = load_working_image(frame, max_side=side).small
    reference = resize_rgb(load_image(frame), size)
    # A network that reads landmarks gets them drawn, as handseg.Segmenter gives them.
    drawn = None
    if model.hand_channels:
        hands = handseg.hands.HandLandmarker(threads=ONNX_THREADS)(small)
        drawn = hand_channels([hand.landmarks for hand in hands], *small.shape[:2])[: model.hand_channels]
    # to_model_input's permuted HWC array is already laid out channels_last; make the contrast explicit
    batch = to_model_input(small, drawn)[None].contiguous()
    channels_last = batch.contiguous(memory_format=torch.channels_last)
    rows: list[tuple[str, float]] = []
    with torch.inference_mode():
        rows.append(("decode + resize", median_ms(lambda: resize_rgb(load_image(frame), size), args.runs)))
        rows.append(("reduced decode", median_ms(lambda: load_working_image(frame, max_side=side), args.runs)))
        rows.append(("network, contiguous input", median_ms(lambda: model(batch), args.runs)))
        rows.append(("network, channels_last input", median_ms(lambda: model(channels_last), args.runs)))
        batch_of_8 = channels_last.expand(8, -1, -1, -1).contiguous(memory_format=torch.channels_last)
        rows.append(
            ("network, channels_last, batch of 8, per frame", median_ms(lambda: model(batch_of_8), args.runs) / 8)
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rows.append(("network, channels_last, bf16 autocast", median_ms(lambda: model(channels_last), args.runs)))
        threads = torch.get_num_threads()
        torch.set_num_threads(usable_cores())
        every_core_ms = median_ms(lambda: model(channels_last), args.runs)
        rows.append((f"network, channels_last, every core ({usable_cores()})", every_core_ms))
        torch.set_num_threads(threads)
        onnx_runner = handseg.Segmenter(model, backend="onnx").runner
        rows.append(("network, onnxruntime float32", median_ms(lambda: onnx_runner(batch), args.runs)))
        try:
            int8_runner = handseg.Segmenter(model, backend="int8").runner
            rows.append(("network, onnxruntime int8", median_ms(lambda: int8_runner(batch), args.runs)))
        except (handseg.Int8UnavailableError, ImportError) as exc:
            print(f"int8 row left out: {exc}")
        compiled = torch.compile(model, dynamic=False)  # as Segmenter(compile=True) runs it
        started = time.perf_counter()
        compiled(channels_last)
        compile_s = time.perf_counter() - started
        rows.append(("network, torch.compile", median_ms(lambda: compiled(channels_last), args.runs)))
        landmarker = handseg.hands.HandLandmarker(threads=ONNX_THREADS)  # as handseg.Segmenter builds it
        found = landmarker(small)
        rows.append((f"hand landmarks ({len(found)} hands)", median_ms(lambda: landmarker(small), args.runs)))
        logits = model(channels_last)
        rows.append(
            (
                "to full size",
                median_ms(
                    lambda: (
                        torch.sigmoid(F.interpolate(logits, size=(1280, 1918), mode="bilinear"))[0, 0].numpy() > 0.5
                    ),
                    args.runs,
                ),
            )
        )

    full = torch.sigmoid(F.interpolate(logits, size=(1280, 1918), mode="bilinear"))[0, 0].numpy() > 0.5
    scale_up = 1918 / small.shape[1]
    points = [hand.landmarks * scale_up for hand in found]
    rows.append(("full-size mask split by hand", median_ms(lambda: handseg.label_hands(full, points), args.runs)))
    small_probability = small_probability_of(logits[0])
    small_mask = small_probability > 0.5
    hands, kept = landmarker.confirm(small_mask, small, found, small_probability)
    confirm_ms = median_ms(lambda: landmarker.confirm(small_mask, small, found, small_probability), args.runs)
    rows.append((f"confirmation: regions ({len(hands) - len(found)} hands confirmed)", confirm_ms))
    at_full_size = [hand.scaled(scale_up) for hand in hands]
    rows.append(
        (
            "confirmation: kept regions at full size, split by hand",
            median_ms(lambda: confirmed_labels(full, kept, at_full_size), args.runs),
        )
    )

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    crops = torch.rand(16, 3 + model.hand_channels, 256, 256, generator=torch.Generator().manual_seed(0))
    targets = (torch.rand(16, 1, 256, 256, generator=torch.Generator().manual_seed(1)) > 0.5).float()

    def training_step(x: torch.Tensor) -> None:
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(model(x), targets).backward()
        optimizer.step()

    train_runs = max(3, args.runs // 5)
    rows.append(("training step, contiguous", median_ms(lambda: training_step(crops), train_runs)))
    crops_cl = crops.contiguous(memory_format=torch.channels_last)
    rows.append(("training step, channels_last", median_ms(lambda: training_step(crops_cl), train_runs)))

    print(
        f"torch {torch.__version__}, {threads} threads (onnxruntime {ONNX_THREADS}); working size {size[1]}x{size[0]} "
        "for a 1918x1280 JPEG"
    )
    print()
    print("| stage | median ms |")
    print("|---|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")
    print()
    print(f"torch.compile: {compile_s:.1f} s one-off, on the first frame of a new size")
    diff = np.abs(small.astype(int) - reference.astype(int))
    print(f"reduced decode vs decode + resize: mean |difference| {diff.mean():.2f} of 255, max {diff.max()}")


if __name__ == "__main__":
    main()
