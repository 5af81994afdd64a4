"""Hugging Face hub integration shared by handseg models.

`PyTorchModelHubMixin` already turns `__init__` arguments into `config.json` and
weights into `model.safetensors`. This subclass tightens loading: weights must
match the architecture exactly (the mixin's default is `strict=False`, which
would silently leave layers at random init), and only safetensors are read, so
loading never unpickles anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download

MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title | default("HandUNet hand segmentation model", true) }}

A [handseg](https://github.com/handseg/handseg) `HandUNet`: a U-Net that maps an RGB
image to one logit map (hand vs background).

```python
import handseg

model = handseg.HandUNet.from_pretrained("THIS_FOLDER_OR_REPO_ID")
result = handseg.segment("photo.jpg", model)   # result.mask: bool HxW
```

{% if source_file %}
## Provenance

Converted losslessly with `handseg convert` from the original Hand-Segmentation
checkpoint `{{ source_file }}` (sha256 `{{ source_sha256 }}`).
{% endif %}
{{ details | default("", true) }}
"""


class HandsegHubMixin(PyTorchModelHubMixin):
    """`PyTorchModelHubMixin` with strict, safetensors-only loading."""

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
        model = cls(**model_kwargs)
        if Path(model_id).is_dir():
            weights = Path(model_id) / constants.SAFETENSORS_SINGLE_FILE
            if not weights.is_file():
                raise FileNotFoundError(f"{model_id} has no {constants.SAFETENSORS_SINGLE_FILE}")
        else:
            weights = hf_hub_download(
                repo_id=model_id,
                filename=constants.SAFETENSORS_SINGLE_FILE,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                token=token,
                local_files_only=local_files_only,
            )
        return cls._load_as_safetensor(model, str(weights), map_location, strict)
