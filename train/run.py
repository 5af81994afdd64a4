"""Train a HandUNet: `python -m train.run --data DIR --out DIR [--gpu]`.

One process, or many under `torchrun` (DistributedDataParallel: NCCL on GPUs,
gloo on CPU). Each epoch: train, validate through a `handseg.Segmenter` at the
original mask resolution, append to OUT/metrics.jsonl, redraw OUT/curves.png,
write OUT/last/ (with training_state.pt for --resume) and, when the selection
score improves, OUT/best/. Checkpoints are written to a temporary folder and
renamed, so a crash never leaves a broken one; SIGINT/SIGTERM save last/ and exit.

The pieces live one concern to a module: flags (train.arguments), the training set
and its sampler (train.trainset), compositing (train.composite), the epoch loops
(train.loop), checkpoints and resume (train.checkpoints), torchrun (train.distributed),
metrics.jsonl and curves.png (train.metrics_log). This module wires them together.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

import handseg
from train.arguments import WEIGHT_DECAY, args_to_json, parse_args
from train.augment import Augmenter
from train.checkpoints import (
    model_card_details,
    recover_checkpoint,
    restore_training_state,
    save_checkpoint,
    training_state,
)
from train.composite import DistractorSettings, PasteSettings
from train.data import DataError, SplitData, load_split_from_args
from train.distributed import Distributed
from train.evaluate import selection_score
from train.freezing import Freezing
from train.hands_on_faces import face_boxes as read_face_boxes
from train.labels import LabelPolicy
from train.landmarks import LandmarkNoise
from train.loop import hard_negative_weights, set_learning_rate, train_one_epoch, validate
from train.metrics_log import append_record, epoch_record, keep_records_until, plot_curves
from train.quantize import int8_agreement, write_int8
from train.trainset import AslBank, EpochSampler, HueTurns, TrainSet

#: Said once when the training data holds no photo without a hand.
NO_HAND_FREE_NOTE = (
    "note: no hand-free photos in the training data, so the false-alarm protection (hand-free photos, hands "
    "pasted onto them, distractors) is off and the model may learn to mark faces and skin-coloured things; add "
    "photos with no hand in them, each with an all-black mask (images/NAME.jpg + masks/NAME.png), to turn it on. "
    "The int8 file is calibrated on hand-free halves of the training photos instead."
)


def build_model(args: argparse.Namespace) -> handseg.HandUNet:
    if args.resume is not None:
        recover_checkpoint(args.resume / "last")
        return handseg.HandUNet.from_pretrained(args.resume / "last")
    torch.manual_seed(args.seed)
    if args.init:
        start = handseg.HandUNet.from_pretrained(args.init)
        model = handseg.HandUNet.from_config(
            {**start.config, "max_side": args.max_side, "hand_channels": args.hand_channels}
        )
        model.load_state_dict(with_hand_inputs(start.state_dict(), model.state_dict()))
        return model
    if args.encoder:
        # Both EfficientNet-Lite variants expect ImageNet mean/std (benchmarks/check_lite0_weights.py).
        model = handseg.LiteUNet(
            encoder=args.encoder,
            decoder_channels=list(handseg.DEFAULT_DECODER_CHANNELS),
            max_side=args.max_side,
            input_mean=handseg.LITE0_MEAN,
            input_std=handseg.LITE0_STD,
            hand_channels=args.hand_channels,
        )
        if args.pretrained:
            handseg.load_lite_imagenet(model.encoder)
        return model
    if args.pretrained:
        raise SystemExit("error: --pretrained needs --encoder (the original U-Net has no pretrained weights)")
    return handseg.OriginalUNet(base_channels=args.base_channels, max_side=args.max_side)


def with_hand_inputs(start: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The starting model's weights for a network that reads more input channels (hand landmarks): each
    first-layer weight that is too narrow gets zero weights for the new channels, so the network computes
    exactly what the starting model did until training teaches it to use them."""
    weights = dict(start)
    for name, tensor in start.items():
        wanted = target[name].shape
        if tensor.dim() == 4 and tensor.shape[1] < wanted[1] and tensor.shape[0] == wanted[0]:
            extra = torch.zeros(wanted[0], wanted[1] - tensor.shape[1], *tensor.shape[2:], dtype=tensor.dtype)
            weights[name] = torch.cat([tensor, extra], dim=1)
    return weights


def check_prepared(args: argparse.Namespace, prepared: dict) -> str | None:
    """Why a prepared set (train.prepare) does not fit this run's flags, or None when it does."""
    policy = prepared.get("label_policy")
    if policy != args.label_policy:
        return f"it holds label maps under --label-policy {policy}, this run asks for {args.label_policy}"
    if policy == "hand" and sorted(args.forearm_sources.split(",")) != prepared.get("forearm_sources"):
        return f"its forearms were cut in {','.join(prepared.get('forearm_sources', []))}, not {args.forearm_sources}"
    if prepared.get("side", 0) < args.max_side:
        return f"its photos are stored at {prepared.get('side')} px, below this run's --max-side {args.max_side}"
    return None


def build_train_set(args: argparse.Namespace, split: SplitData) -> TrainSet:
    # Cut-outs are pasted at most about the working side, so keep them that small.
    asl = None
    landmarks = args.hand_channels > 0
    if args.composite:
        asl = AslBank.from_folder(args.composite, max_side=args.max_side, landmarks=landmarks)
    elif split.cutouts is not None and len(split.cutouts):  # carried by a prepared set
        asl = AslBank(split.cutouts, max_side=args.max_side, landmarks=landmarks)
    # Hue turns of whole crops happen in the augmenter; of pasted hands or distractors, as they are pasted.
    crop_hue_turns = args.hue_turn_prob if args.hue_turn_on == "crops" else 0.0
    augmenter = Augmenter(
        args.img_size, working_side=args.max_side, cast_prob=args.cast_prob, hue_turn_prob=crop_hue_turns
    )
    face_boxes = {photo_id: box for (_, photo_id), box in read_face_boxes().items()}
    return TrainSet(
        split.train,
        augmenter,
        args.seed,
        mix=args.mix,
        asl=asl,
        composite_prob=args.composite_prob,
        paste=PasteSettings(
            size_range=tuple(args.paste_size),
            edge_prob=args.paste_edge_prob,
            match_sharpness=args.match_sharpness,
            face_overlap_prob=args.face_overlap_prob,
            jpeg_prob=args.jpeg_prob,
        ),
        policy=LabelPolicy.hand_only(args.forearm_sources.split(",")) if args.label_policy == "hand" else None,
        distractors=DistractorSettings(
            prob=args.distractor_prob, hand_shaped=args.distractor_hand_shaped, warm_bias=args.distractor_warm_bias
        ),
        hue_turns=HueTurns(args.hue_turn_prob, args.hue_turn_on),
        face_boxes=face_boxes,
        hand_inputs=args.hand_channels,
        landmark_noise=LandmarkNoise(
            none_prob=args.landmarks_none_prob,
            drop_prob=args.landmarks_drop_prob,
            jitter=args.landmarks_jitter,
            false_prob=args.landmarks_false_prob,
        ),
    )


def build_loader(train_set: TrainSet, args: argparse.Namespace, env: Distributed) -> tuple[DataLoader, EpochSampler]:
    sampler = EpochSampler(
        DistributedSampler(
            train_set,
            num_replicas=env.world,
            rank=env.rank,
            shuffle=True,
            seed=args.seed,
            drop_last=len(train_set) >= env.world,
        ),
        counts=train_set.counts,
        seed=args.seed,
    )
    loader = DataLoader(
        train_set,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        pin_memory=args.gpu,
        persistent_workers=args.workers > 0,
        drop_last=False,
    )
    return loader, sampler


class StopSignal:
    """SIGINT/SIGTERM ask the run to save last/ and stop after the current batch."""

    def __init__(self, log) -> None:
        self.signum: int | None = None
        self.log = log
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.request)

    def request(self, signum, _frame) -> None:
        self.signum = signum
        self.log(f"\n{signal.Signals(signum).name}: saving last/ and stopping", file=sys.stderr)

    def requested(self) -> bool:
        return self.signum is not None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.gpu and not torch.cuda.is_available():
        print(
            "error: --gpu was given but CUDA is not available (torch.cuda.is_available() is False); "
            "drop --gpu to train on the CPU, or install a CUDA build of torch",
            file=sys.stderr,
        )
        return 2
    try:
        split = load_split_from_args(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env = Distributed(args.gpu)
    log = print if env.main else (lambda *a, **k: None)
    for line in split.problems.report():
        log(line, file=sys.stderr)
    log(f"data: {split.describe()}", file=sys.stderr)

    model = build_model(args).to(env.device)
    if args.gpu:
        model = model.to(memory_format=torch.channels_last)
    if len(split.train) == 0:
        print("error: no training pairs (only val/test): " + split.describe(), file=sys.stderr)
        return 2
    if split.prepared is not None:
        mismatch = check_prepared(args, split.prepared)
        if mismatch:
            print(f"error: --data {args.data} was prepared differently: {mismatch}", file=sys.stderr)
            return 2
        log(f"prepared data: {split.prepared.get('image_format')} at {split.prepared.get('side')} px", file=sys.stderr)
    train_set = build_train_set(args, split)
    log("epoch: {} photos with hands, {} hand-free photos, {} composites".format(*train_set.counts), file=sys.stderr)
    if not train_set.hand_free:
        log(NO_HAND_FREE_NOTE, file=sys.stderr)
    loader, sampler = build_loader(train_set, args, env)
    net = model
    if env.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[env.device.index] if args.gpu else None)

    freezing = Freezing(batchnorm=args.freeze_bn, encoder_blocks=args.freeze_encoder_blocks)
    try:
        freezing.frozen_modules(model)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    use_amp = amp_available(args)
    where = f"{env.world} x {env.device.type}" if env.world > 1 else env.device.type
    how_it_trains = f"{where}, bf16 autocast {'on' if use_amp else 'off'}, frozen: {freezing.describe()}"
    log(f"training on {how_it_trains}", file=sys.stderr)
    speed = None
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=WEIGHT_DECAY)
    start_epoch, best_score = 0, -math.inf
    if args.resume is not None:
        start_epoch, best_score = restore_training_state(args.resume, optimizer, env.device)
        if start_epoch >= args.epochs:
            print(
                f"error: {args.resume} has already trained {start_epoch} epochs and --epochs is {args.epochs}: "
                f"nothing to do; raise --epochs (e.g. --epochs {start_epoch + 10}) to train on",
                file=sys.stderr,
            )
            return 2
        log(f"resumed {args.resume} at epoch {start_epoch}", file=sys.stderr)

    out = args.out
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        keep_records_until(out / "metrics.jsonl", start_epoch)
    stop = StopSignal(log)

    def save_last(epoch_done: int, interrupted: bool) -> None:
        if env.main:
            state = training_state(args_to_json(args), epoch_done, best_score, interrupted, optimizer, args.lr)
            title = f"HandUNet, last checkpoint (epoch {epoch_done})"
            details = model_card_details(args, split, epoch_done, None, train_set.counts, speed)
            save_checkpoint(out / "last", model, title, details, state)

    steps_left = args.max_steps
    for epoch in range(start_epoch, args.epochs):
        if steps_left is not None and steps_left <= 0:
            break
        started = time.perf_counter()
        weights = None
        if args.hard_negatives and train_set.hand_free:
            weights = hard_negative_weights(model, train_set, args.hard_negatives)
            log(f"hard negatives: {int((weights > 1).sum())} of {len(weights)} hand-free photos marked, drawn up to "
                f"{1 + args.hard_negatives:g}x as often", file=sys.stderr)  # fmt: skip
        sampler.set_epoch(epoch, weights)
        lr = set_learning_rate(optimizer, args.lr, epoch, args.epochs)
        stats = train_one_epoch(
            net,
            model,
            loader,
            optimizer,
            env,
            use_amp=use_amp,
            stop_requested=stop.requested,
            description=f"epoch {epoch + 1}/{args.epochs}",
            max_batches=steps_left,
            freezing=freezing,
        )
        if steps_left is not None:
            steps_left -= stats.batches
        if env.any(stop.requested()):
            save_last(epoch, interrupted=True)  # weights mid-epoch; --resume redoes this epoch
            log(f"saved {out / 'last'} (interrupted in epoch {epoch + 1})", file=sys.stderr)
            env.close()
            return 128 + (stop.signum or signal.SIGTERM)
        train_loss = env.mean(stats.loss)
        crops_per_second = env.mean(stats.crops_per_second) * env.world  # every process's crops
        speed = f"{crops_per_second:.1f} crops/s in epoch {epoch + 1} ({how_it_trains})"
        summary = validate(model, split.val, train_set.policy, env)
        record = epoch_record(epoch + 1, train_loss, summary, lr, time.perf_counter() - started, crops_per_second)
        # Best epoch: dice on photos with hands minus the share of hand-free photos' pixels marked.
        score_for_best = selection_score(summary) if summary else -train_loss
        improved = score_for_best > best_score
        if improved:
            best_score = score_for_best
        if env.main:
            append_record(out / "metrics.jsonl", record)
            plot_curves(out / "metrics.jsonl", out / "curves.png")
            save_last(epoch + 1, interrupted=False)
            if improved:
                title = f"HandUNet, best validation epoch (epoch {epoch + 1})"
                details = model_card_details(args, split, epoch + 1, summary, train_set.counts, speed)
                save_checkpoint(out / "best", model, title, details)
            log_epoch(record, improved)
        env.barrier()
    if env.main and args.int8 and (out / "best").is_dir():
        write_best_int8(out / "best", split, log)
    env.close()
    return 0


def write_best_int8(best: Path, split: SplitData, log) -> None:
    """best/model_int8.onnx for handseg's default CPU path, and how often its masks agree with the float
    model's on val photos. A failure here is reported and leaves the checkpoints as they are."""
    try:
        path = write_int8(best, split.train)
    except (ImportError, OSError, ValueError) as exc:
        log(f"no int8 file written: {exc}", file=sys.stderr)
        return
    agree = int8_agreement(best, split.val)
    detail = f"; masks equal to the float model's on {100 * agree:.2f}% of val pixels" if agree is not None else ""
    log(f"wrote {path}{detail}")


def amp_available(args: argparse.Namespace) -> bool:
    """bf16 autocast where the hardware does bf16 arithmetic: CUDA, or a CPU with AVX512-BF16 or AMX. On
    other CPUs bf16 is emulated, many times slower than float32, so --amp never turns it on there."""
    return args.amp and (args.gpu or handseg.cpu_has_native_bf16())


def log_epoch(record: dict, improved: bool) -> None:
    dice = f"{record['val_dice']:.4f}" if record["val_dice"] is not None else "n/a"
    hand_free = record["val_hand_free"]
    marked = f", hand-free marked {100 * hand_free['mean_marked']:.1f}%" if hand_free else ""
    print(
        f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, val dice {dice}{marked}"
        f"{' (best)' if improved else ''}, {record['seconds']:.0f} s, {record['train_crops_per_s']:.1f} crops/s",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
