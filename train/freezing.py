"""Parts of a model kept out of training when fine-tuning: BatchNorm statistics, and the first blocks of a
Lite encoder. Fewer gradients to compute makes each CPU step cheaper (`python -m train.run` prints crops/s),
and a model that already knows its early features keeps them."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

import handseg


@dataclass(frozen=True)
class Freezing:
    """`batchnorm`: every BatchNorm keeps its running statistics (eval mode; its scale and shift still
    train). `encoder_blocks`: the stem and the first N MBConv blocks of a Lite encoder get no gradient
    (and their BatchNorm is in eval mode)."""

    batchnorm: bool = False
    encoder_blocks: int = 0

    def frozen_modules(self, model: nn.Module) -> list[nn.Module]:
        if not self.encoder_blocks:
            return []
        if not isinstance(model, handseg.LiteUNet):
            raise ValueError("--freeze-encoder-blocks applies to a Lite encoder (LiteUNet); this model has none")
        blocks = model.encoder.blocks
        if not 0 < self.encoder_blocks <= len(blocks):
            raise ValueError(f"--freeze-encoder-blocks must be 1 to {len(blocks)} for {model.config['encoder']}")
        return [model.encoder.stem, *blocks[: self.encoder_blocks]]

    def apply(self, model: nn.Module) -> None:
        """After model.train(): freeze what this names (cheap; called at the start of every epoch)."""
        for module in self.frozen_modules(model):
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        if self.batchnorm:
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def describe(self) -> str:
        parts = ["BatchNorm statistics"] * self.batchnorm
        if self.encoder_blocks:
            parts.append(f"the encoder's stem and first {self.encoder_blocks} blocks")
        return " and ".join(parts) or "nothing"
