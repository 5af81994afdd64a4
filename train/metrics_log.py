"""A run's record: one JSON line per epoch in OUT/metrics.jsonl, and OUT/curves.png drawn from it."""

from __future__ import annotations

import json
from pathlib import Path

from train.evaluate import selection_score


def epoch_record(
    epoch: int, train_loss: float, summary: dict | None, lr: float, seconds: float, crops_per_second: float = 0.0
) -> dict:
    """The metrics.jsonl line of one epoch: train loss, validation dice/IoU overall and per source on
    photos with hands, false alarms on hand-free val photos, the selection score, lr, seconds (training
    and validation) and the training loop's throughput in crops per second."""
    val_dice = summary["overall"].get("dice") if summary else None
    hand_free = summary["overall"].get("hand_free") if summary else None
    return {
        "epoch": epoch,
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
        "seconds": round(seconds, 2),
        "train_crops_per_s": round(crops_per_second, 2),
    }


def append_record(metrics_path: Path, record: dict) -> None:
    with open(metrics_path, "a") as f:
        f.write(json.dumps(record) + "\n")


def keep_records_until(metrics_path: Path, epoch: int) -> None:
    """Drop the lines past `epoch`: a resumed run continues from its checkpoint, not from a later crash."""
    if metrics_path.exists():
        lines = [line for line in metrics_path.read_text().splitlines() if line.strip()]
        keep = [line for line in lines if json.loads(line)["epoch"] <= epoch]
        metrics_path.write_text("".join(line + "\n" for line in keep))


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
    """Redraw the curves from metrics.jsonl; written to a temporary file and renamed."""
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    fig = curves_figure(rows)
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(png_path)
