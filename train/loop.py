"""One epoch of training and one of validation, with the loss and the learning-rate schedule."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import handseg
from train.distributed import Distributed
from train.evaluate import score_dataset, summarize
from train.freezing import Freezing
from train.labels import HAND, IGNORE, LabelPolicy


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


def set_learning_rate(optimizer: torch.optim.Optimizer, peak_lr: float, epoch_index: int, total_epochs: int) -> float:
    """The schedule is a pure function of the epoch (see cosine_factor), so a resumed run with a new
    --epochs continues exactly where it stopped."""
    lr = peak_lr * cosine_factor(epoch_index, total_epochs)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


@dataclass
class EpochStats:
    """What one process's epoch of training did."""

    loss: float  #: mean loss over its batches
    batches: int
    crops: int
    seconds: float  #: the training loop's wall time, data loading included, validation not

    @property
    def crops_per_second(self) -> float:
        return self.crops / self.seconds if self.seconds else 0.0


def train_one_epoch(
    net: torch.nn.Module,
    model: handseg.HandUNet,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    env: Distributed,
    *,
    use_amp: bool,
    stop_requested: Callable[[], bool],
    description: str,
    max_batches: int | None = None,
    freezing: Freezing | None = None,
) -> EpochStats:
    """One epoch of this process's batches. Stops early, after a batch, once `stop_requested()` on any
    rank, or after `max_batches`. `net` runs forward (the model, or its DistributedDataParallel wrapper);
    `model` holds the parameters; `freezing` keeps the parts it names out of training."""
    net.train()
    if freezing is not None:
        freezing.apply(model)
    total, batches, crops = 0.0, 0, 0
    started = time.perf_counter()
    progress = None
    if env.main:
        from tqdm import tqdm

        progress = tqdm(total=len(loader), desc=description, unit="batch", file=sys.stderr, leave=False)
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
        crops += len(x)
        if progress:
            progress.update()
            progress.set_postfix(loss=f"{total / batches:.4f}")
        if env.any(stop_requested()) or (max_batches is not None and batches >= max_batches):
            break
    if progress:
        progress.close()
    return EpochStats(total / max(1, batches), batches, crops, time.perf_counter() - started)


def hard_negative_weights(model: handseg.HandUNet, train_set, strength: float) -> np.ndarray:
    """How often each hand-free training photo is drawn this epoch: 1, up to 1 + `strength` for a photo the
    model now marks (1 + strength * min(1, share marked / 1%)). Scored on the photos as stored (train
    sources only), through a Segmenter at the model's working size (bf16 where the CPU does bf16)."""
    model.eval()
    device = next(model.parameters()).device
    fast = device.type == "cpu" and handseg.cpu_has_native_bf16()
    threads = torch.get_num_threads() if device.type == "cpu" else None
    segmenter = handseg.Segmenter(model, backend="bf16" if fast else "torch", threads=threads)
    marked = np.array([segmenter(train_set.photo(j)[0]).mask.mean() for j in train_set.hand_free])
    return 1.0 + strength * np.minimum(1.0, marked / 0.01)


def validate(model: handseg.HandUNet, val: datasets.Dataset, policy: LabelPolicy, env: Distributed) -> dict | None:
    """Each rank scores its share of the val images through a handseg.Segmenter (float32, the threads
    training runs with); every rank gets the summary. Scored under the label policy it trains: a
    forearm it rightly leaves out is no miss."""
    model.eval()
    threads = torch.get_num_threads() if env.device.type == "cpu" else None
    segmenter = handseg.Segmenter(model, backend="torch", threads=threads)
    shard = range(env.rank, len(val), env.world)
    rows = env.gather(score_dataset(segmenter, val, indices=shard, policy=policy))
    return summarize(rows) if rows else None
