"""The PyTorch reference of SimVOS (needs torch and timm).

    from simvos_trt.model import SimVOSConfig, load_official_checkpoint, propagate
    model = load_official_checkpoint(path, config)
    prob = propagate(model, frames, first_mask)   # (T, K+1, H, W) float32
"""

from ..errors import require

require("torch", "torch", "The PyTorch reference (simvos_trt.model)")
require("timm", "torch", "The PyTorch reference (simvos_trt.model)")

from ..config import PRESETS, SimVOSConfig, preset  # noqa: E402
from .checkpoint import (  # noqa: E402
    load_mae_backbone,
    load_official_checkpoint,
    random_model,
    read_state_dict,
    synthetic_state_dict,
)
from .propagate import propagate  # noqa: E402
from .simvos import SimVOS, soft_aggregate  # noqa: E402

__all__ = [
    "PRESETS",
    "SimVOS",
    "SimVOSConfig",
    "load_mae_backbone",
    "load_official_checkpoint",
    "preset",
    "propagate",
    "random_model",
    "read_state_dict",
    "soft_aggregate",
    "synthetic_state_dict",
]
