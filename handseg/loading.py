"""Loading models, and the one cache of what is loaded and built: models by where they come from,
runners by model and how they run, landmark stages by thread count (as timm's `_builder`/`_hub` keep
building and fetching apart from the architectures).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from handseg.hardware import resolve_device
from handseg.hub import resolve_model_source
from handseg.model import HandUNet
from handseg.pretrained import pretrained_path

#: A model: a HandUNet, a hub folder or repo id, a shipped model's name, an exported `.onnx` file,
#: or None for the shipped default model.
ModelInput = HandUNet | str | Path | None


class Cache:
    """Loaded models and built runners, least recently used first out. Entries hold their model, so a
    model object's id stays its own while its entry lives."""

    def __init__(self, size: int = 8) -> None:
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._size = size
        self._lock = threading.RLock()

    def get(self, key: tuple, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            value = self._entries[key] = build()
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
            return value

    def drop(self, key: tuple) -> None:
        with self._lock:
            self._entries.pop(key, None)


#: The process's one cache, shared by every Segmenter.
cache = Cache()


def source_key(model: str | Path | None) -> tuple:
    """What a model given by name depends on: its folder (or repo id) and, for a folder, when its
    weights were written, so a model saved anew is loaded anew."""
    source = str(pretrained_path() if model is None else resolve_model_source(model))
    weights = Path(source) / "model.safetensors"
    return (source, weights.stat().st_mtime_ns if weights.is_file() else None)


def load_model(model: ModelInput = None, device: str | torch.device | None = None) -> HandUNet:
    """The float network, ready for inference (eval mode): the given module (moved to `device` when
    given), a hub folder or repo id, the name of a model shipped in the package
    (`handseg.available_models()`, e.g. "handunet_lite0.hands_v2"), or (None) the shipped default
    model. Models loaded by name are cached and reused.

    `device`: "cpu", "cuda", "cuda:N" (None: CUDA when available); one this machine lacks raises
    DeviceUnavailableError. To choose how it runs (int8, bf16, threads, ...), build a `Segmenter`."""
    if isinstance(model, HandUNet):
        return model.eval() if device is None else model.to(resolve_device(device)).eval()
    if model is not None and str(model).endswith(".onnx"):
        raise ValueError(f"{model}: an .onnx file runs with onnxruntime only; use handseg.Segmenter({str(model)!r})")
    target = resolve_device(device)
    key = ("model", *source_key(model), str(target))
    source = key[1]
    return cache.get(key, lambda: HandUNet.from_pretrained(source, map_location=str(target)).eval())
