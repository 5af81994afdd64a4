"""Hugging Face hub integration shared by handseg models.

`PyTorchModelHubMixin` already turns `__init__` arguments into `config.json` and
weights into `model.safetensors`. This subclass tightens loading: weights must
match the architecture exactly (the mixin's default is `strict=False`, which
would silently leave layers at random init), and only safetensors are read, so
loading never unpickles anything.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import safetensors.torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download, try_to_load_from_cache

from handseg.image import whole_file
from handseg.packaging import INT8_FILE
from handseg.pretrained import PRETRAINED_DIR, available_models, closest_models, shipped_model

#: owner/name, as the Hub spells repo ids.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class ModelNotFoundError(FileNotFoundError):
    """No model folder at the path given, or the name is neither a folder nor a Hub repo id."""


class HubUnreachableError(ConnectionError):
    """The Hugging Face Hub is needed (a repo id not in the local cache, or a push) but cannot be reached."""


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint answers a TCP connection (no retries, a few seconds at most)."""
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_model_source(name: str | Path) -> str | Path:
    """A folder that exists wins; else the name of a model shipped in the package (`arch.tag`) is that
    model's folder, from any working directory; anything else (a repo id) is returned unchanged."""
    if Path(name).expanduser().is_dir():
        return name
    return shipped_model(str(name)) or name


def model_display_name(source: str | Path) -> str:
    """How a loaded model is named to users: a shipped model by its `arch.tag` name, else as given."""
    path = Path(source)
    return path.name if path.parent == PRETRAINED_DIR else str(source)


def check_model_source(name: str | Path, local_files_only: bool = False) -> None:
    """Fail at once, in one line, when `name` cannot be a model: a path-like name with no folder there,
    a folder that is not a model, or a repo id that is neither cached nor reachable."""
    text = str(name)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / constants.CONFIG_NAME).is_file():
            raise ModelNotFoundError(
                f"{text}: this folder has no {constants.CONFIG_NAME}, so it is not a handseg model folder "
                "(make one with save_pretrained, or with `handseg convert MODEL.pth FOLDER`)"
            )
        return
    if path.exists():
        raise ModelNotFoundError(f"{text}: is a file; a model is a folder with config.json and model.safetensors")
    if not _REPO_ID.fullmatch(text):
        close = closest_models(text)
        if close:
            hint = f"; did you mean the shipped model {close[0]}?"
        elif "/" in text or "\\" in text:
            hint = ""
        else:
            shipped = ", ".join(available_models())
            hint = f" or shipped model (shipped: {shipped}; a Hub repo id has the form owner/name)"
        raise ModelNotFoundError(f"{text}: no such model folder{hint}")
    if isinstance(try_to_load_from_cache(text, constants.CONFIG_NAME), str):
        return  # a path: in the local cache, so the mixin loads it without the network
    if constants.HF_HUB_OFFLINE or local_files_only:
        raise HubUnreachableError(
            f"{text}: no such folder here, and not in the local Hugging Face cache; the Hub is not asked "
            "because HF_HUB_OFFLINE is set (or local_files_only=True)"
        )
    if not hub_reachable():
        raise HubUnreachableError(
            f"{text}: no such folder here, not in the local Hugging Face cache, and the Hub "
            f"({constants.ENDPOINT}) cannot be reached: no network connection?"
        )


MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title | default("HandUNet hand segmentation model", true) }}

A handseg `HandUNet`: a U-Net that maps an RGB
image to one logit map (hand vs background).

```python
import handseg

model = handseg.HandUNet.from_pretrained("THIS_FOLDER_OR_REPO_ID")
result = handseg.segment("photo.jpg", model)   # result.mask: bool HxW
```

## Licence

`license: other`: handseg's code is MIT-licensed, but a model's weights take the terms of the data they
were trained on. The models shipped in handseg, and any model fine-tuned from them, learnt from photos
released for non-commercial research use only (EgoHands, HGR, UTKFace faces, among others: see the
shipped model's card), so they are for non-commercial research use. A model trained from scratch on your
own data is yours to license: set `license` in this card.

{% if source_file %}
## Provenance

Converted losslessly with `handseg convert` from the original Hand-Segmentation
checkpoint `{{ source_file }}` (sha256 `{{ source_sha256 }}`).
{% endif %}
{{ details | default("", true) }}
"""


class HandsegHubMixin(PyTorchModelHubMixin):
    """`PyTorchModelHubMixin` with strict, safetensors-only loading and one-line errors for models
    that are not there or a Hub that cannot be reached."""

    #: Where a loaded model came from, as users name it: a shipped model's name, a folder or a repo id
    #: (None: built in code).
    name_or_path: str | None = None

    def _save_pretrained(self, save_directory: Path) -> None:
        """model.safetensors, written as any new file is (the user's umask applies: safetensors' own
        writer leaves it readable to its owner only), under a temporary name, then renamed."""
        tensors = {name: tensor.detach().contiguous() for name, tensor in self.state_dict().items()}
        weights = Path(save_directory) / constants.SAFETENSORS_SINGLE_FILE
        with whole_file(weights) as partial:
            partial.write_bytes(safetensors.torch.save(tensors, metadata={"format": "pt"}))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any):
        """Load from a hub folder, a Hub repo id, or the name of a model shipped in handseg
        (`handseg.available_models()`, e.g. "handunet_lite0.hands_v3"). The loaded model's
        `name_or_path` says which."""
        source = resolve_model_source(pretrained_model_name_or_path)
        check_model_source(source, kwargs.get("local_files_only", False))
        model = super().from_pretrained(source, **kwargs)
        model.name_or_path = model_display_name(source)
        return model

    def push_to_hub(self, repo_id: str, **kwargs: Any):
        if constants.HF_HUB_OFFLINE or not hub_reachable():
            raise HubUnreachableError(
                f"push_to_hub({repo_id!r}): the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached "
                "(no network connection, or HF_HUB_OFFLINE is set). Pushing needs the network and a login: "
                "`hf auth login`, or pass token=..."
            )
        return super().push_to_hub(repo_id, **kwargs)

    @classmethod
    def _from_pretrained(  # type: ignore[override]
        cls,
        *,
        model_id: str,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ):
        model_kwargs.pop("config", None)  # the mixin also passes the raw config.json; __init__ args suffice
        model = cls.from_config(model_kwargs)
        if Path(model_id).is_dir():
            weights = Path(model_id) / constants.SAFETENSORS_SINGLE_FILE
            if not weights.is_file():
                raise FileNotFoundError(f"{model_id} has no {constants.SAFETENSORS_SINGLE_FILE}")
        else:
            download = {"repo_id": model_id, "revision": revision, "cache_dir": cache_dir, "token": token}
            weights = hf_hub_download(
                filename=constants.SAFETENSORS_SINGLE_FILE,
                force_download=force_download,
                local_files_only=local_files_only,
                **download,
            )
            try:  # the repo's int8 file, if it has one, lands beside the weights (handseg's fast CPU path)
                hf_hub_download(filename=INT8_FILE, local_files_only=local_files_only, **download)
            except Exception:  # no such file in the repo, or the Hub unreachable: the model runs without it
                pass
        safetensors.torch.load_model(model, str(weights), strict=strict, device=str(map_location))
        model.source_folder = Path(weights).parent
        return model.eval()
