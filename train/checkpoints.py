"""Checkpoints: hub folders written atomically, the training state for --resume, and their model cards."""

from __future__ import annotations

import argparse
import math
import random
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import handseg
from train.data import SplitData
from train.evaluate import markdown_table

STATE_FILE = "training_state.pt"


def save_atomically(target: Path, write) -> None:
    """Write a folder via `write(tmp)`, then swap it into place, so `target` is never half-written."""
    tmp = target.with_name(f".{target.name}.tmp")
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(target: Path, model: handseg.HandUNet, title: str, details: str, state: dict | None = None):
    """A hub folder (plus training_state.pt when `state` is given), written atomically."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, model_card_kwargs={"title": title, "details": details})
        if state is not None:
            torch.save(state, tmp / STATE_FILE)

    save_atomically(target, write)


def recover_checkpoint(target: Path) -> None:
    """After a crash between the two renames of save_atomically, put the old folder back."""
    old = target.with_name(f".{target.name}.old")
    if not target.exists() and old.exists():
        old.rename(target)


def describe_epoch_mix(counts: Sequence[int], asked: Sequence[float]) -> str:
    """What an epoch actually held (TrainSet.counts), and the --mix asked for when it differs (no
    hand-free photos in the data: no hand-free or composite items, whatever --mix says)."""
    total = max(1, sum(counts))
    used = "/".join(f"{c / total:.2f}" for c in counts)
    text = f"{counts[0]} photos with hands, {counts[1]} hand-free photos, {counts[2]} composites an epoch"
    text += f" (shares {used})"
    asked_shares = np.asarray(asked, float) / sum(asked)
    if not np.allclose(asked_shares, np.asarray(counts, float) / total, atol=0.01):
        text += f"; --mix asked for {'/'.join(str(v) for v in asked)}"
    return text


def model_card_details(
    args: argparse.Namespace,
    split: SplitData,
    epoch: int,
    summary: dict | None,
    counts: Sequence[int],
    speed: str | None = None,
) -> str:
    """The card's training section. `speed`: how fast the training loop ran (crops/s and how)."""
    lines = [
        "## Training",
        "",
        f"- Data: `{args.data}`" + (f" (sources: {args.sources})" if args.sources else ""),
        f"- Split: {split.describe()}",
        f"- Epochs: {epoch}; batch size {args.batch_size}; lr {args.lr}; crops {args.img_size} px of images "
        f"scaled to about {args.max_side} px (the working resolution); seed {args.seed}",
    ]
    lines.append(
        f"- Epoch mix: {describe_epoch_mix(counts, args.mix)}; extra hand pasted onto photos with "
        f"p={args.composite_prob}; "
        f"pasted size {args.paste_size[0]}-{args.paste_size[1]} of the shorter side, "
        f"{args.paste_edge_prob} entering from an edge; strong colour cast or grey p={args.cast_prob}; "
        f"hue turned far round p={args.hue_turn_prob} (on {args.hue_turn_on})"
    )
    lines.append(
        f"- Distractors (hand-free patches pasted like hands, labelled background): p={args.distractor_prob} "
        f"(hand-shaped {args.distractor_hand_shaped}, warmest window {args.distractor_warm_bias}); hands over "
        f"and around faces, in their skin tone and light, p={args.face_overlap_prob}; hard negatives (hand-free "
        f"photos the model marks drawn up to {1 + args.hard_negatives:g}x as often); pasted-on photos "
        f"re-encoded as JPEG p={args.jpeg_prob}; sharpness "
        f"and grain matched: {'yes' if args.match_sharpness else 'no'}"
    )
    if args.composite:
        lines.append(f"- Hand cut-outs on black from `{args.composite}` among the pasted hands")
    policy = "hand up to the wrist" if args.label_policy == "hand" else "masks as labelled"
    lines.append(
        f"- Label policy: {policy}" + (f" (forearm cut from {args.forearm_sources})" * (args.label_policy == "hand"))
    )
    if args.init:
        lines.append(f"- Initialized from `{args.init}`")
    if speed:
        lines.append(f"- Throughput: {speed}")
    lines += ["", "Command:", "", "```bash", "python -m train.run " + shlex.join(sys.argv[1:]), "```", ""]
    if summary and summary["overall"].get("n"):
        lines += [
            f"## Validation (epoch {epoch}, through `handseg.segment`, original resolution)",
            "",
            markdown_table(summary),
            "",
        ]
    return "\n".join(lines)


def training_state(
    args_json: dict, epoch_done: int, best_score: float, interrupted: bool, optimizer: torch.optim.Optimizer, lr: float
) -> dict:
    """What --resume needs besides the weights: where the run is, the optimizer and the random generators."""
    return {
        "args": args_json,
        "epoch": epoch_done,
        "best_score": best_score,
        "interrupted": interrupted,
        "optimizer": optimizer.state_dict(),
        "scheduler": {"kind": "cosine per epoch", "peak_lr": lr, "epochs": args_json["epochs"]},
        "python_rng": random.getstate(),
        "torch_rng": torch.get_rng_state(),
    }


def restore_training_state(run_dir: Path, optimizer: torch.optim.Optimizer, device: torch.device) -> tuple[int, float]:
    """Load last/'s state into `optimizer` and the random generators; (epochs done, best score so far)."""
    state = torch.load(run_dir / "last" / STATE_FILE, map_location=device, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    best_score = state.get("best_score", state.get("best_dice", -math.inf))  # older runs: "best_dice"
    random.setstate(state["python_rng"])
    torch.set_rng_state(state["torch_rng"].cpu())
    return state["epoch"], best_score
