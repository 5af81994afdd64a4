"""Shipped pretrained weights: metadata only, kept apart from the architecture.

Each shipped model is a hub folder (config.json, model.safetensors, README.md)
next to this file, named `arch.tag`. `DEFAULT_MODEL` names the one that
`handseg.segment(image)`, the CLI and the app use when no model is given.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent

#: Name of the shipped default model (a folder next to this file).
DEFAULT_MODEL: str | None = "handunet_lite0.hands_v5"


class NoDefaultModelError(RuntimeError):
    """No model was given and this handseg build ships no default weights."""


def available_models() -> list[str]:
    """Names of the hub folders shipped inside the package: the default first, then the newest first
    (`arch.tag_vN` by N)."""
    names = [p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").is_file()]
    return sorted(names, key=lambda name: (name != DEFAULT_MODEL, -_version(name), name))


def _version(name: str) -> int:
    """N of a name ending in `_vN` (0 for none)."""
    match = re.search(r"_v(\d+)$", name)
    return int(match.group(1)) if match else 0


def model_summary(name: str) -> str:
    """One line about a shipped model, from its card's title (`# arch.tag: what it is`)."""
    card = PRETRAINED_DIR / name / "README.md"
    if card.is_file():
        for line in card.read_text(encoding="utf-8").splitlines():
            if line.startswith("# "):
                return line[2:].removeprefix(f"{name}:").strip()
    return ""


def closest_models(name: str) -> list[str]:
    """Shipped model names that look like `name` (a typo), closest first."""
    return difflib.get_close_matches(name, available_models(), n=3, cutoff=0.6)


def shipped_model(name: str) -> Path | None:
    """The folder of the shipped model called `name` (an `arch.tag` name), or None if there is none."""
    if not name or any(sep in name for sep in "/\\") or name in (".", ".."):
        return None
    path = PRETRAINED_DIR / name
    return path if (path / "config.json").is_file() else None


def pretrained_path(name: str | None = None) -> Path:
    """Folder of a shipped model (`None`: the default one)."""
    if name is None:
        if DEFAULT_MODEL is None:
            raise NoDefaultModelError(
                "this handseg version ships no default weights yet: pass a model, e.g. a hub folder made "
                "with `handseg convert MODEL.pth OUT_DIR` (--model OUT_DIR on the command line)"
            )
        name = DEFAULT_MODEL
    path = PRETRAINED_DIR / name
    if not (path / "config.json").is_file():
        close = closest_models(name)
        hint = f" (did you mean {close[0]}?)" if close else ""
        shipped = ", ".join(available_models()) or "none"
        raise NoDefaultModelError(f"no shipped model named {name!r}{hint}; shipped: {shipped}")
    return path
