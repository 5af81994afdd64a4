"""Convert original Hand-Segmentation checkpoints (`MODEL.pth`) into hub folders.

The original repository saved `net.state_dict()` with torch 0.3.1 (legacy,
non-zip serialization, BatchNorm without `num_batches_tracked`), sometimes from
a `DataParallel` model (`module.` prefix) or wrapped in a dict. Key names are
those of its classes: `inc.conv.conv.{0,1,3,4}`, `down{1..4}.mpconv.1.conv.*`,
`up{1..4}.conv.conv.*` (plus `up{1..4}.up.*` when it used transposed
convolutions), `outc.conv.*`.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path

import torch

from handseg.networks import OriginalUNet


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the HandUNet architecture."""


def original_key_to_handseg(key: str) -> str:
    """Map one original state-dict key to the HandUNet key, or raise CheckpointError."""
    if m := re.fullmatch(r"inc\.conv\.conv\.(\d+)\.(\w+)", key):
        return f"inc.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"down([1-4])\.mpconv\.1\.conv\.(\d+)\.(\w+)", key):
        return f"downs.{int(m[1]) - 1}.1.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"up([1-4])\.conv\.conv\.(\d+)\.(\w+)", key):
        return f"ups.{int(m[1]) - 1}.conv.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"up([1-4])\.up\.(weight|bias)", key):
        return f"ups.{int(m[1]) - 1}.up.{m[2]}"
    if m := re.fullmatch(r"outc\.conv\.(weight|bias)", key):
        return f"outc.{m[1]}"
    raise CheckpointError(f"unexpected key {key!r}: not part of the original Hand-Segmentation UNet")


#: File signatures named when a "checkpoint" is something else.
_OTHER_FORMATS = {
    b"\xff\xd8\xff": "a JPEG image",
    b"\x89PNG": "a PNG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"<": "an HTML or XML text file",
    b"{": "a JSON text file",
    b"version https://git-lfs": "a Git LFS pointer (the real file was never downloaded: git lfs pull)",
}


def _checkpoint_format_problem(path: Path) -> str | None:
    """Why `path` cannot be a torch.save file (zip archive, or a legacy pickle), or None if it may be one."""
    with open(path, "rb") as f:
        head = f.read(32)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):  # zip (torch >= 1.6), pickle (older)
        return None
    what = next((name for magic, name in _OTHER_FORMATS.items() if head.startswith(magic)), None)
    return f"it is {what}" if what else f"it starts with bytes {head[:8].hex(' ')}"


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an original checkpoint's state dict without executing any code in it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    problem = _checkpoint_format_problem(path)
    if problem:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint: {problem}, not the zip archive or pickle that torch.save writes"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: the file's pickle asks to run code or build objects "
            f"that a plain state dict never contains, so nothing in it was executed ({exc})"
        ) from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, ... for non-checkpoints
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors, found {type(obj).__name__}")
    state = {}
    for key, value in obj.items():
        key = key.removeprefix("module.")
        if key.endswith("num_batches_tracked"):
            continue  # torch >= 0.4 adds this counter; it plays no part in inference
        state[key] = value
    return state


def model_from_original_state_dict(state: dict[str, torch.Tensor]) -> OriginalUNet:
    """Build an OriginalUNet whose weights are exactly those of an original state dict.

    Widths and channel counts are inferred from the tensors; every tensor must be
    used and every parameter and buffer of the model must be provided.
    """
    for required in ("inc.conv.conv.0.weight", "outc.conv.weight"):
        if required not in state:
            raise CheckpointError(f"missing key {required!r}: not an original Hand-Segmentation UNet")
    first = state["inc.conv.conv.0.weight"]
    model = OriginalUNet(
        in_channels=first.shape[1],
        num_classes=state["outc.conv.weight"].shape[0],
        base_channels=first.shape[0],
        bilinear="up1.up.weight" not in state,
    )
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        new_key = original_key_to_handseg(key)
        if new_key not in expected:
            raise CheckpointError(f"unexpected key {key!r} for this architecture")
        if tuple(tensor.shape) != tuple(expected[new_key].shape):
            raise CheckpointError(
                f"key {key!r} has shape {tuple(tensor.shape)}, expected {tuple(expected[new_key].shape)}"
            )
        mapped[new_key] = tensor.to(expected[new_key].dtype)
    missing = sorted(set(expected) - set(mapped))
    if missing:
        raise CheckpointError(f"missing keys: {', '.join(missing)}")
    model.load_state_dict(mapped, strict=False)  # num_batches_tracked keeps its default
    return model.eval()


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> OriginalUNet:
    """Convert an original `MODEL.pth` into a hub folder (config.json, model.safetensors, README.md). A
    folder that holds a model already is refused (FileExistsError) unless `overwrite`."""
    checkpoint = Path(checkpoint)
    model = model_from_original_state_dict(load_checkpoint(checkpoint))
    model.save_pretrained(
        out_dir,
        overwrite=overwrite,
        model_card_kwargs={
            "title": f"HandUNet converted from {checkpoint.name}",
            "source_file": checkpoint.name,
            "source_sha256": sha256_of(checkpoint),
        },
    )
    return model
