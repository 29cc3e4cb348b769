"""The PyTorch reference of SimVOS (needs torch and timm); design notes in model/README.md."""
# ruff: noqa: E402 - torch and timm are checked before anything imports them

from ..errors import require

require("torch", "torch", "The PyTorch reference (simvos_trt.model)")
require("timm", "torch", "The PyTorch reference (simvos_trt.model)")

from ..config import PRESETS, SimVOSConfig, preset
from .checkpoint import load_mae_backbone, load_official_checkpoint, random_model, read_state_dict, synthetic_state_dict
from .propagate import propagate
from .simvos import SimVOS, soft_aggregate

__all__ = ["PRESETS", "SimVOS", "SimVOSConfig", "load_mae_backbone", "load_official_checkpoint", "preset", "propagate",
           "random_model", "read_state_dict", "soft_aggregate", "synthetic_state_dict"]
