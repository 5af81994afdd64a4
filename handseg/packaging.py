"""What a model folder holds, and what travels with it when it is saved again.

A handseg model folder: `config.json` and `model.safetensors` (the hub mixin's), `README.md` (its
card), and, for handseg's fast CPU path, `model_int8.onnx`: the same network quantized to int8, which
records a digest of the weights it was made from (`weights_digest`). `carry_int8_file` copies that
file along on `save_pretrained` when it was made from exactly the weights being saved.

The digest is read from the ONNX file's metadata with a few lines of protobuf reading, so neither the
model layer nor saving needs onnx or onnxruntime (running the file is `handseg.backends`' business;
making one, `handseg.export`'s).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import warnings
from pathlib import Path

from torch import nn

from handseg.image import whole_file

#: The int8 file's name in a model folder, beside model.safetensors.
INT8_FILE = "model_int8.onnx"
#: ONNX metadata keys: the precision of the graph ("float32" or "int8"), the digest of the weights an
#: int8 file was made from, and the model's config (max_side, normalization).
PRECISION_KEY = "handseg_precision"
DIGEST_KEY = "handseg_weights_sha256"
CONFIG_KEY = "handseg_config"


class OnnxUnavailableError(ImportError):
    """onnxruntime (or onnx, for export) is not installed."""


class FastPathNotice(UserWarning):
    """A faster path cannot be used (no int8 file, one made from other weights, no bf16 arithmetic),
    and what happens instead; said once."""


def weights_digest(model: nn.Module) -> str:
    """sha256 of the model's parameters and buffers (names and float32 bytes, in name order).
    The same weights give the same digest however they were loaded or saved."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata (`metadata_props`, field 14 of ModelProto) of an ONNX file, read without onnx: the
    top-level fields are walked and every other one (the graph too) is skipped by its length."""
    metadata: dict[str, str] = {}
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while f.tell() < size:
            field, wire = divmod(_varint(f), 8)
            if wire == 0:
                _varint(f)
            elif wire in (1, 5):
                f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
            elif wire == 2:
                length = _varint(f)
                if field != 14:
                    f.seek(length, os.SEEK_CUR)
                    continue
                entry = _fields(f.read(length))
                metadata[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
            else:
                raise ValueError(f"{path}: not an ONNX file (protobuf wire type {wire})")
    return metadata


def _varint(f) -> int:
    value, shift = 0, 0
    while True:
        byte = f.read(1)
        if not byte:
            raise ValueError("truncated protobuf varint")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7


def _fields(message: bytes) -> dict[int, bytes]:
    """The length-delimited fields of a small protobuf message (a StringStringEntryProto)."""
    f, fields = io.BytesIO(message), {}
    while f.tell() < len(message):
        field, wire = divmod(_varint(f), 8)
        if wire != 2:
            raise ValueError(f"unexpected protobuf wire type {wire} in an ONNX metadata entry")
        fields[field] = f.read(_varint(f))
    return fields


def int8_digest(path: str | Path) -> str | None:
    """The weights digest an int8 file records (None if it records none)."""
    return onnx_metadata(path).get(DIGEST_KEY)


def how_to_make_int8(folder: str | Path | None) -> str:
    target = Path(folder) / INT8_FILE if folder else INT8_FILE
    return (
        f"make one with: handseg export --model {folder or 'FOLDER'} --int8 --calibration PHOTOS --onnx {target} "
        "(PHOTOS: a folder of photos like yours, with and without hands)"
    )


def carry_int8_file(model: nn.Module, source: Path | None, folder: Path) -> None:
    """Copy the int8 file of the folder `model` was loaded from (`source`) into `folder` when it was made
    from exactly these weights; when it was not (the model was fine-tuned since), a FastPathNotice says
    so and the file is not copied."""
    found = source / INT8_FILE if source is not None else None
    if found is None or not found.is_file():
        return
    target = folder / INT8_FILE
    fresh = int8_digest(found) == weights_digest(model)
    if found.resolve() == target.resolve():
        if not fresh:
            warnings.warn(f"{target} was made from the weights saved here before; {how_to_make_int8(folder)}",
                          FastPathNotice, stacklevel=3)  # fmt: skip
        return
    if not fresh:
        warnings.warn(
            f"{found} not copied to {folder}: it was made from other weights than these (fine-tuned since?); "
            f"{how_to_make_int8(folder)}",
            FastPathNotice,
            stacklevel=3,
        )
        return
    with whole_file(target) as partial:
        shutil.copyfile(found, partial)
