"""Float16 emulation of an FP16 TensorRT engine on the CPU.

``to_fp16`` keeps what the engines keep in float32 and halves everything else:
every LayerNorm (its statistics overflow or lose precision in float16) computes in
float32 between casts, and soft aggregation already runs in float32 in ``propagate``
(in the engines it is its own float32 graph). Used to show FP16 safety without a GPU.
"""

from __future__ import annotations

import torch
from torch import nn

from .simvos import SimVOS


class Float32LayerNorm(nn.Module):
    """A LayerNorm evaluated in float32 whatever its input dtype; output in the input dtype."""

    def __init__(self, ln: nn.LayerNorm) -> None:
        super().__init__()
        self.ln = ln.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.float()).to(x.dtype)


def to_fp16(model: SimVOS) -> SimVOS:
    """Convert ``model`` in place to float16 with float32 LayerNorms; returns it."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(module, name, Float32LayerNorm(child))
    kept = {id(p) for m in model.modules() if isinstance(m, Float32LayerNorm) for p in m.parameters()}
    for param in model.parameters():
        if id(param) not in kept:
            param.data = param.data.half()
    return model
