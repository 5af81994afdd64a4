"""Train a HandUNet: `python -m train.run --data DIR --out DIR [--gpu]`.

One process, or many under `torchrun` (DistributedDataParallel: NCCL on GPUs,
gloo on CPU). Each epoch: train, validate through `handseg.segment` at the
original mask resolution, append to OUT/metrics.jsonl, redraw OUT/curves.png,
write OUT/last/ (with training_state.pt for --resume) and, when validation dice
improves, OUT/best/. Checkpoints are written to a temporary folder and renamed,
so a crash never leaves a broken one; SIGINT/SIGTERM save last/ and exit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

import handseg
from handseg.encoders import LITE0_MEAN, LITE0_STD, LITE_VARIANTS, load_lite_imagenet
from handseg.image import to_model_input
from handseg.model import DEFAULT_DECODER_CHANNELS
from train.augment import Augmenter, fit_longer_side
from train.composite import HandCutout, PasteSettings, cutout_from_black, cutouts_from_photo, paste_hand, paste_hands
from train.data import (
    DataError,
    SplitData,
    add_data_arguments,
    load_pair,
    load_split,
    load_split_from_args,
    mask_is_empty,
)
from train.evaluate import markdown_table, score_dataset, selection_score, summarize
from train.labels import HAND, IGNORE, LabelPolicy

STATE_FILE = "training_state.pt"


# ----------------------------------------------------------------------------- arguments


def _floats(count: int):
    def parse(text: str) -> tuple[float, ...]:
        values = tuple(float(v) for v in text.split(","))
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got {text!r}")
        return values

    return parse


#: Peak learning rates: from scratch or ImageNet, and when fine-tuning a trained model (`--init`),
#: where one epoch at 1e-3 from hands_v2 undid what the model knew; hands_v3 was fine-tuned at 2e-4.
LR_FRESH, LR_FINE_TUNE = 1e-3, 2e-4


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none to show (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.run",
        description="Train a HandUNet hand segmenter. Multi-GPU: torchrun --nproc_per_node N -m train.run --gpu ...",
        formatter_class=_HelpFormatter,
    )
    add_data_arguments(p)
    p.add_argument("--out", type=Path, help="output folder (default: runs/<time>; with --resume: that folder)")
    p.add_argument("--epochs", type=int, default=30, help="train until this epoch (also with --resume)")
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument(
        "--lr",
        type=float,
        help=f"peak AdamW learning rate, cosine decay per epoch (default: {LR_FRESH}; {LR_FINE_TUNE} with --init)",
    )
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--img-size", type=int, default=256, help="side of the square training crops")
    p.add_argument(
        "--max-side",
        type=int,
        help="working resolution: images are scaled so their longer side is about "
        "this before cropping, and segment() runs the model at it (default: the --init model's, else --img-size)",
    )
    p.add_argument(
        "--base-channels", type=int, default=64, help="width of the original U-Net (64 = the original network)"
    )
    p.add_argument(
        "--encoder",
        choices=list(LITE_VARIANTS),
        help="pretrained-capable encoder under a U-Net decoder (default: none, the original U-Net)",
    )
    p.add_argument("--pretrained", action="store_true", help="start the encoder from ImageNet weights")
    p.add_argument(
        "--decoder-channels",
        type=lambda t: [int(v) for v in t.split(",")],
        default=list(DEFAULT_DECODER_CHANNELS),
        help="decoder widths with --encoder (5, comma-separated)",
    )
    p.add_argument(
        "--init",
        help="start from this hub folder or repo id (e.g. a converted MODEL.pth); its architecture, "
        "normalization and working resolution are kept unless given",
    )
    p.add_argument("--resume", type=Path, help="continue the run in this folder from its last/ checkpoint")
    p.add_argument("--gpu", action="store_true", help="train on CUDA (required to be available)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast on GPU")
    p.add_argument("--workers", type=int, default=2, help="data-loading processes per training process")
    mix = p.add_argument_group("hand-free photos, compositing and labels")
    mix.add_argument(
        "--mix",
        type=_floats(3),
        default=(0.5, 0.2, 0.3),
        help="shares of an epoch: photos with hands, hand-free photos (empty masks), and hands pasted onto "
        "hand-free photos; each photo with hands is seen once an epoch",
    )
    mix.add_argument("--composite", help="folder of hand cut-outs on black (images/ + masks/), e.g. ASL cut-outs")
    mix.add_argument(
        "--composite-prob", type=float, default=0.3, help="share of photos with hands given an extra pasted hand"
    )
    mix.add_argument(
        "--paste-size", type=_floats(2), default=(0.3, 0.9), help="pasted hand's longer side / background's shorter"
    )
    mix.add_argument("--paste-edge-prob", type=float, default=0.6, help="share of pasted hands entering from an edge")
    mix.add_argument("--cast-prob", type=float, default=0.25, help="share given a strong colour cast or made grey")
    mix.add_argument(
        "--label-policy",
        choices=["hand", "as-labelled"],
        default="hand",
        help="hand: the hand up to the wrist (forearms in --forearm-sources are cut at the wrist found in "
        "train/wrist_landmarks.csv, or by geometry, and become background); as-labelled: every mask as drawn",
    )
    mix.add_argument(
        "--forearm-sources", default="hgr,indoor", help="sources whose masks include the bare forearm (comma-separated)"
    )
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is not None:
        # Flags given now override those the run was started with.
        given = build_parser()
        for action in given._actions:
            action.default = argparse.SUPPRESS
        explicit = vars(given.parse_args(argv))
        state_path = args.resume / "last" / STATE_FILE
        if not state_path.is_file():
            parser.error(f"--resume: {state_path} not found")
        saved = torch.load(state_path, map_location="cpu", weights_only=True)["args"]
        merged = {**saved, **explicit}
        args = argparse.Namespace(**{**vars(args), **merged})
        args.resume = Path(args.resume)
        args.out = Path(args.out) if args.out else args.resume
    if not args.data:
        parser.error("--data is required")
    if args.init and args.resume is None:
        if args.encoder or args.pretrained:
            parser.error("--init keeps the initial model's architecture: drop --encoder/--pretrained")
        if args.max_side is None:  # keep the working resolution the model was made for
            args.max_side = handseg.HandUNet.from_pretrained(args.init).max_side
    if args.lr is None:
        args.lr = LR_FINE_TUNE if args.init else LR_FRESH
    if getattr(args, "max_side", None) is None:
        args.max_side = args.img_size
    if sum(args.mix) <= 0 or min(args.mix) < 0 or args.mix[0] <= 0:
        parser.error("--mix: three non-negative shares, the first (photos with hands) above 0")
    if args.out is None:
        args.out = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    args.out = Path(args.out)
    return args


def args_to_json(args: argparse.Namespace) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "resume"}


# ----------------------------------------------------------------------------- data


class AslBank:
    """Hand cut-outs on black (with masks), decoded on first use and kept small."""

    def __init__(self, folder: str | Path, max_side: int) -> None:
        self.items = load_split(folder, val_percent=0).train
        self.max_side = max_side
        self.cache: dict[int, HandCutout] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> HandCutout:
        if i not in self.cache:
            self.cache[i] = cutout_from_black(*fit_longer_side(*load_pair(self.items[i]), self.max_side))
        return self.cache[i]


class TrainSet(Dataset):
    """An epoch of augmented training crops: every photo with hands once, then hand-free photos
    and composites (hands pasted onto hand-free photos) in the shares of `mix`.

    Indexed by (epoch, i) so each item is a pure function of (seed, epoch, i): identical with any
    number of workers or ranks. Photos are decoded once, at the largest size augmentation can ask
    for, and given their label map under the label policy (`train.labels`)."""

    def __init__(
        self,
        ds: datasets.Dataset,
        augmenter: Augmenter,
        seed: int,
        *,
        mix: Sequence[float] = (1.0, 0.0, 0.0),
        asl: AslBank | None = None,
        composite_prob: float = 0.0,
        paste: PasteSettings | None = None,
        policy: LabelPolicy | None = None,
    ) -> None:
        self.ds, self.augmenter, self.seed = ds, augmenter, seed
        self.asl, self.composite_prob, self.paste = asl, composite_prob, paste or PasteSettings()
        self.policy = policy or LabelPolicy()
        empty = [mask_is_empty(ds[i]) for i in range(len(ds))]
        self.photos = [i for i, e in enumerate(empty) if not e]
        self.hand_free = [i for i, e in enumerate(empty) if e]
        share = np.asarray(mix, float) / sum(mix)
        if not self.hand_free:
            share = np.array([1.0, 0.0, 0.0])
        if not self.photos and share[0] > 0:
            share = np.array([0.0, 1.0, 0.0])  # only hand-free photos: nothing to paste either
        total = round(len(self.photos) / share[0]) if share[0] > 0 else len(self.hand_free)
        self.counts = (len(self.photos), round(total * share[1]), round(total * share[2]))
        # Hands whose own photo shows a bare forearm, now labelled background: pasted often, so that
        # "an arm is not a hand" is learned from many scenes, not only from these photos' own.
        self.forearm_photos = [i for i in self.photos if ds[i]["source"] in self.policy.forearm_sources]
        self.cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.cutout_cache: dict[int, list[HandCutout]] = {}
        # Decode once, at the largest size augmentation can ask for.
        self.keep_side = int(augmenter.working_side * augmenter.scale_range[1] * 1.1)

    def __len__(self) -> int:
        return sum(self.counts)

    def photo(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Row i of the dataset: RGB and label map (under the label policy), at most keep_side."""
        return self.photo_and_mask(i)[:2]

    def photo_and_mask(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB, label map and the source's own mask (hand plus forearm where the source draws one)."""
        if i not in self.cache:
            example = self.ds[i]
            rgb, mask = load_pair(example)
            # Labels at full size: the wrist landmarks are in the full image's pixels.
            labels = self.policy.labels(mask, example["source"], example["id"])
            small_rgb, labels = fit_longer_side(rgb, labels, self.keep_side)
            self.cache[i] = (small_rgb, labels, fit_longer_side(rgb, mask, self.keep_side)[1])
        return self.cache[i]

    def random_hand(self, rng: np.random.Generator) -> HandCutout:
        """A hand cut from a labelled photo, with whatever forearm its mask drew (labelled as the policy
        says); a quarter of draws are ASL cut-outs when there are any, and a third of the rest come from
        photos with a bare forearm."""
        if self.asl is not None and (not self.photos or rng.random() < 0.25):
            return self.asl[int(rng.integers(len(self.asl)))]
        pool = self.forearm_photos if self.forearm_photos and rng.random() < 1 / 3 else self.photos
        i = pool[int(rng.integers(len(pool)))]
        if i not in self.cutout_cache:
            rgb, labels, mask = self.photo_and_mask(i)
            self.cutout_cache[i] = cutouts_from_photo(rgb, mask, labels) or cutouts_from_photo(
                rgb, mask, labels, min_share=0
            )
        cutouts = self.cutout_cache[i]
        return cutouts[int(rng.integers(len(cutouts)))] if cutouts else self.random_hand(rng)

    def item(self, epoch: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB and label map of item i before augmentation: a photo with hands (sometimes with a hand
        pasted in), a hand-free photo, or a composite, by where i falls in `counts`."""
        rng = np.random.default_rng([self.seed, epoch, i, 1])
        n_photo, n_free, _ = self.counts
        if i < n_photo:
            rgb, labels = self.photo(self.photos[i])
            if (self.photos or self.asl) and rng.random() < self.composite_prob:
                rgb, labels, _ = paste_hand(rgb, labels, self.random_hand(rng), rng, self.paste)
            return rgb, labels
        if i < n_photo + n_free:  # walk through the hand-free photos over the epochs
            j = self.hand_free[(i - n_photo + epoch * n_free) % len(self.hand_free)]
            return self.photo(j)
        rgb, labels = self.photo(self.hand_free[int(rng.integers(len(self.hand_free)))])
        draws = [self.random_hand(rng) for _ in range(1 + int(rng.random() > 0.6) + int(rng.random() > 0.9))]
        rgb, labels = paste_hands(rgb, labels, draws, rng, self.paste)
        return rgb, labels

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = key
        rgb, labels = self.item(epoch, i)
        rng = np.random.default_rng([self.seed, epoch, i])
        rgb, labels = self.augmenter(rgb, labels, rng)
        return to_model_input(rgb), torch.from_numpy(labels[None].copy())


class EpochSampler(Sampler):
    """Wraps a DistributedSampler and yields (epoch, index) keys for TrainSet."""

    def __init__(self, base: DistributedSampler) -> None:
        self.base, self.epoch = base, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, i) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)


# ----------------------------------------------------------------------------- training pieces


def bce_dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft dice (per image, then averaged) over labelled pixels.

    `labels` is a uint8 label map batch (N, 1, H, W): HAND, BACKGROUND or IGNORE (no loss).
    On a hand-free image the dice term is 1/(sum of predicted probability + 1): any hand
    painted there costs."""
    logits = logits.float()
    target = (labels == HAND).float()
    weight = (labels != IGNORE).float()
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum() / weight.sum().clamp(
        min=1
    )
    prob = torch.sigmoid(logits) * weight
    inter = (prob * target).sum(dim=(1, 2, 3))
    total = prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    dice = (2 * inter + 1.0) / (total + 1.0)
    return bce + (1 - dice).mean()


def cosine_factor(epoch_index: int, total_epochs: int, floor: float = 0.02) -> float:
    """LR multiplier for 0-based epoch `epoch_index`: 1 at the first epoch, cosine down to `floor`.

    Depends only on the epoch, so a resumed run with more epochs continues the
    same curve for the epochs already trained."""
    progress = epoch_index / max(1, total_epochs)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class Distributed:
    """Rank, world size and device; a no-op single process outside torchrun."""

    def __init__(self, gpu: bool) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local}" if gpu else "cpu")
        if gpu:
            torch.cuda.set_device(self.device)
        if self.world > 1:
            dist.init_process_group("nccl" if gpu else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.world

    def any(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t)
        return bool(t.item())

    def gather(self, rows: list) -> list:
        if self.world == 1:
            return rows
        out: list = [None] * self.world
        dist.all_gather_object(out, rows)
        return [r for part in out for r in part]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            dist.destroy_process_group()


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
    args: argparse.Namespace, split: SplitData, epoch: int, summary: dict | None, counts: Sequence[int]
) -> str:
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
        f"{args.paste_edge_prob} entering from an edge; strong colour cast or grey p={args.cast_prob}"
    )
    if args.composite:
        lines.append(f"- Hand cut-outs on black from `{args.composite}` among the pasted hands")
    policy = "hand up to the wrist" if args.label_policy == "hand" else "masks as labelled"
    lines.append(
        f"- Label policy: {policy}" + (f" (forearm cut from {args.forearm_sources})" * (args.label_policy == "hand"))
    )
    if args.init:
        lines.append(f"- Initialized from `{args.init}`")
    lines += ["", "Command:", "", "```bash", "python -m train.run " + shlex.join(sys.argv[1:]), "```", ""]
    if summary and summary["overall"].get("n"):
        lines += [
            f"## Validation (epoch {epoch}, through `handseg.segment`, original resolution)",
            "",
            markdown_table(summary),
            "",
        ]
    return "\n".join(lines)


def curves_figure(rows: list[dict]):
    """Loss and validation curves over whole-numbered epochs, from metrics.jsonl rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], marker="o")
    ax_loss.set(title="train loss (BCE + soft dice)", xlabel="epoch")
    if any(r.get("val_dice") is not None for r in rows):
        ax_dice.plot(epochs, [r.get("val_dice") for r in rows], marker="o", label="all")
        for source in sorted({s for r in rows for s in r.get("val_per_source", {})}):
            ax_dice.plot(
                epochs, [r["val_per_source"].get(source, {}).get("dice") for r in rows], label=source, alpha=0.6
            )
        marked = [(r.get("val_hand_free") or {}).get("mean_marked") for r in rows]
        if any(m is not None for m in marked):
            ax_dice.plot(epochs, marked, linestyle="--", color="black", label="hand-free: share marked")
        ax_dice.legend(fontsize=8)
    ax_dice.set(title="validation dice (photos with hands)", xlabel="epoch")
    for ax in (ax_loss, ax_dice):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
    fig.tight_layout()
    return fig


def plot_curves(metrics_path: Path, png_path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    fig = curves_figure(rows)
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(png_path)


# ----------------------------------------------------------------------------- main


def build_model(args: argparse.Namespace) -> handseg.HandUNet:
    if args.resume is not None:
        recover_checkpoint(args.resume / "last")
        return handseg.HandUNet.from_pretrained(args.resume / "last")
    torch.manual_seed(args.seed)
    if args.init:
        start = handseg.HandUNet.from_pretrained(args.init)
        config = {**start._hub_mixin_config, "max_side": args.max_side}
        model = handseg.HandUNet(**config)
        model.load_state_dict(start.state_dict())
        return model
    if args.encoder:
        # Both EfficientNet-Lite variants expect ImageNet mean/std (benchmarks/check_lite0_weights.py).
        model = handseg.HandUNet(
            encoder=args.encoder,
            decoder_channels=args.decoder_channels,
            max_side=args.max_side,
            input_mean=LITE0_MEAN,
            input_std=LITE0_STD,
        )
        if args.pretrained:
            load_lite_imagenet(model.encoder)
        return model
    if args.pretrained:
        raise SystemExit("error: --pretrained needs --encoder (the original U-Net has no pretrained weights)")
    return handseg.HandUNet(base_channels=args.base_channels, max_side=args.max_side)


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
    # Cut-outs are pasted at most about the working side, so keep them that small.
    asl = AslBank(args.composite, max_side=args.max_side) if args.composite else None
    augmenter = Augmenter(args.img_size, working_side=args.max_side, cast_prob=args.cast_prob)
    train_set = TrainSet(
        split.train,
        augmenter,
        args.seed,
        mix=args.mix,
        asl=asl,
        composite_prob=args.composite_prob,
        paste=PasteSettings(size_range=tuple(args.paste_size), edge_prob=args.paste_edge_prob),
        policy=LabelPolicy.hand_only(args.forearm_sources.split(",")) if args.label_policy == "hand" else None,
    )
    log("epoch: {} photos with hands, {} hand-free photos, {} composites".format(*train_set.counts), file=sys.stderr)
    sampler = EpochSampler(
        DistributedSampler(
            train_set,
            num_replicas=env.world,
            rank=env.rank,
            shuffle=True,
            seed=args.seed,
            drop_last=len(train_set) >= env.world,
        )
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
    net = model
    if env.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[env.device.index] if args.gpu else None)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    start_epoch, best_score = 0, -math.inf
    if args.resume is not None:
        state = torch.load(args.resume / "last" / STATE_FILE, map_location=env.device, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"]
        if start_epoch >= args.epochs:
            print(
                f"error: {args.resume} has already trained {start_epoch} epochs and --epochs is {args.epochs}: "
                f"nothing to do; raise --epochs (e.g. --epochs {start_epoch + 10}) to train on",
                file=sys.stderr,
            )
            return 2
        best_score = state.get("best_score", state.get("best_dice", -math.inf))  # older runs: "best_dice"
        random.setstate(state["python_rng"])
        torch.set_rng_state(state["torch_rng"].cpu())
        log(f"resumed {args.resume} at epoch {start_epoch}", file=sys.stderr)

    out = args.out
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        metrics_path = out / "metrics.jsonl"
        if metrics_path.exists():  # drop lines past the checkpoint we continue from
            keep = [
                line
                for line in metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line)["epoch"] <= start_epoch
            ]
            metrics_path.write_text("".join(line + "\n" for line in keep))

    stop = {"signal": None}

    def request_stop(signum, _frame):
        stop["signal"] = signum
        log(f"\n{signal.Signals(signum).name}: saving last/ and stopping", file=sys.stderr)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)

    def save_last(epoch_done: int, interrupted: bool) -> None:
        if not env.main:
            return
        state = {
            "args": args_to_json(args),
            "epoch": epoch_done,
            "best_score": best_score,
            "interrupted": interrupted,
            "optimizer": optimizer.state_dict(),
            "scheduler": {"kind": "cosine per epoch", "peak_lr": args.lr, "epochs": args.epochs},
            "python_rng": random.getstate(),
            "torch_rng": torch.get_rng_state(),
        }

        title = f"HandUNet, last checkpoint (epoch {epoch_done})"
        details = model_card_details(args, split, epoch_done, None, train_set.counts)
        save_checkpoint(out / "last", model, title, details, state)

    use_amp = args.gpu and args.amp
    for epoch in range(start_epoch, args.epochs):
        started = time.perf_counter()
        net.train()
        sampler.set_epoch(epoch)
        # The schedule is a pure function of the epoch (see cosine_factor), so a
        # resumed run with a new --epochs continues exactly where it stopped.
        lr = args.lr * cosine_factor(epoch, args.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        total, batches = 0.0, 0
        progress = None
        if env.main:
            from tqdm import tqdm

            progress = tqdm(
                total=len(loader), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", file=sys.stderr, leave=False
            )
        for x, y in loader:
            x, y = x.to(env.device, non_blocking=True), y.to(env.device, non_blocking=True)
            # channels_last on every device: on a CPU too it halves the step time (the model keeps the
            # layout through its padding; `python benchmarks/stages.py`, training-step rows).
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=env.device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = net(x)
            loss = bce_dice_loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total += float(loss.detach())
            batches += 1
            if progress:
                progress.update()
                progress.set_postfix(loss=f"{total / batches:.4f}")
            if env.any(stop["signal"] is not None):
                break
        if progress:
            progress.close()
        if env.any(stop["signal"] is not None):
            save_last(epoch, interrupted=True)  # weights mid-epoch; --resume redoes this epoch
            log(f"saved {out / 'last'} (interrupted in epoch {epoch + 1})", file=sys.stderr)
            env.close()
            return 128 + (stop["signal"] or signal.SIGTERM)
        train_loss = env.mean(total / max(1, batches))

        # Validation: each rank scores its share of images; rank 0 gets them all.
        model.eval()
        # Scored under the label policy it trains: a forearm it rightly leaves out is no miss.
        shard = range(env.rank, len(split.val), env.world)
        rows = env.gather(score_dataset(model, split.val, indices=shard, policy=train_set.policy))
        summary = summarize(rows) if rows else None
        val_dice = summary["overall"].get("dice") if summary else None
        hand_free = summary["overall"].get("hand_free") if summary else None
        record = {
            "epoch": epoch + 1,
            "train_loss": round(train_loss, 6),
            "val_dice": round(val_dice, 6) if val_dice is not None else None,
            "val_iou": round(summary["overall"]["iou"], 6) if val_dice is not None else None,
            "val_per_source": {
                s: {"dice": round(v["dice"], 6), "iou": round(v["iou"], 6), "n": v["n"]}
                for s, v in (summary["per_source"].items() if summary else [])
                if v["n"]
            },
            "val_hand_free": {**hand_free, "mean_marked": round(hand_free["mean_marked"], 6)} if hand_free else None,
            "selection_score": round(selection_score(summary), 6) if summary else None,
            "lr": lr,
            "seconds": round(time.perf_counter() - started, 2),
        }
        # Best epoch: dice on photos with hands minus the share of hand-free photos' pixels marked.
        score_for_best = selection_score(summary) if summary else -train_loss
        improved = score_for_best > best_score
        if improved:
            best_score = score_for_best
        if env.main:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            plot_curves(out / "metrics.jsonl", out / "curves.png")
            save_last(epoch + 1, interrupted=False)
            if improved:
                title = f"HandUNet, best validation epoch (epoch {epoch + 1})"
                details = model_card_details(args, split, epoch + 1, summary, train_set.counts)
                save_checkpoint(out / "best", model, title, details)
            dice_text = f"{val_dice:.4f}" if val_dice is not None else "n/a"
            marked_text = f", hand-free marked {100 * hand_free['mean_marked']:.1f}%" if hand_free else ""
            print(
                f"epoch {epoch + 1}: train loss {train_loss:.4f}, val dice {dice_text}{marked_text}"
                f"{' (best)' if improved else ''}, {record['seconds']:.0f} s",
                flush=True,
            )
        env.barrier()
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
