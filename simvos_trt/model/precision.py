"""The FP16 graphs' precision in PyTorch: float16 with the float32 islands of ``simvos_trt.precision``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..precision import ISLANDS
from .layers import FrameInput
from .token_refinement import RefinementWeights

#: The module class of each island of ``simvos_trt.precision.ISLANDS``.
ISLAND_MODULES: dict[str, type[nn.Module]] = {
    "LayerNormalization": nn.LayerNorm,
    "Sigmoid": nn.Sigmoid,
    "frame_input": FrameInput,
    "refinement_weights": RefinementWeights,
}


class Float32Island(nn.Module):
    """Runs ``inner`` in float32: float inputs cast up on entry, float outputs cast to ``out_dtype`` (None:
    kept float32); bool and integer tensors pass unchanged."""

    def __init__(self, inner: nn.Module, out_dtype: torch.dtype | None) -> None:
        super().__init__()
        self.inner = inner.float()
        self.out_dtype = out_dtype

    def forward(self, *args: Any) -> Any:
        out = self.inner(*(_cast(a, torch.float32) for a in args))
        if self.out_dtype is None:
            return out
        return tuple(_cast(o, self.out_dtype) for o in out) if isinstance(out, tuple) else _cast(out, self.out_dtype)


def _cast(x: Any, dtype: torch.dtype) -> Any:
    return x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x


def to_fp16(module: nn.Module) -> nn.Module:
    """Convert ``module`` in place to the FP16 graphs' precision (islands wrapped in ``Float32Island``
    once, everything else float16); returns it."""
    kinds = tuple((ISLAND_MODULES[i.name], None if i.keep_float32 else torch.float16) for i in ISLANDS)
    for parent in [m for m in module.modules() if not isinstance(m, Float32Island)]:
        for name, child in list(parent.named_children()):
            for cls, out_dtype in kinds:
                if isinstance(child, cls):
                    setattr(parent, name, Float32Island(child, out_dtype))
    kept = {id(t) for m in module.modules() if isinstance(m, Float32Island) for t in (*m.parameters(), *m.buffers())}
    for tensor in (*module.parameters(), *module.buffers()):
        if id(tensor) not in kept and tensor.is_floating_point():
            tensor.data = tensor.data.half()
    return module
