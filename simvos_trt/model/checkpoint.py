"""Building SimVOS from weights: official SimVOS checkpoints, MAE/timm backbones, or seeded random; loading
is strict: every key the configuration uses must be there with its shape (model/README.md)."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import zlib
from collections.abc import Mapping
from pathlib import Path

import torch

from ..config import BACKBONES, SimVOSConfig
from ..errors import InputError
from .simvos import SimVOS, resize_tokens

log = logging.getLogger(__name__)

#: Keys the official model holds but never uses at inference.
UNUSED_PREFIXES = ("pos_embed", "cls_token", "fc_norm.", "head.")
_TR_PREFIXES = ("tlearner.", "tlearner_back.")
_MAE_IGNORED = ("cls_token", "fc_norm.", "head.", "decoder", "mask_token")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict read with ``torch.load(weights_only=True)``, unwrapped from ``{"model": ...}`` or
    ``{"state_dict": ...}`` and a ``module.`` prefix; InputError says what is wrong with a bad file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} {'is not a file' if path.exists() else 'does not exist'}; check the path")
    if path.stat().st_size == 0:
        raise InputError(f"checkpoint {path} is empty (0 bytes): the download or copy did not finish; "
                         "fetch the file again")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        first = (str(exc).splitlines() or [""])[0]
        raise InputError(f"cannot read checkpoint {path} ({type(exc).__name__}: {first}); "
                         "the file is truncated or not a PyTorch state_dict saved with torch.save") from exc
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict"):
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"checkpoint {path} does not hold a state_dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def state_dict_contents(state: Mapping[str, torch.Tensor]) -> str:
    """What a state_dict holds, in the configuration's terms (for error messages)."""
    parts = []
    if "patch_embed.proj.weight" in state:
        C = state["patch_embed.proj.weight"].shape[0]
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
        depth = 1 + max(blocks, default=-1)
        name = next((n for n, (c, d, _) in BACKBONES.items() if (c, d) == (C, depth)), "unknown")
        parts.append(f"a {name} ViT (C={C}, {depth} blocks)")
    if "pos_embed_new" in state:
        n = state["pos_embed_new"].shape[1] - 1
        g = math.isqrt(n)
        parts.append(f"pos_embed_new for a {g}x{g} grid" if g * g == n else f"pos_embed_new of {n} tokens")
    for branch, label in (("tlearner", "kf"), ("tlearner_back", "kb")):
        key = f"{branch}.patch_to_cluster_linear.weight"
        if key in state:
            parts.append(f"{label}={state[key].shape[0]}")
    return ", ".join(parts) or "no SimVOS weights"


def load_official_state(model: SimVOS, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load an official-layout state_dict into ``model`` strictly (model/README.md)."""
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    unused = UNUSED_PREFIXES + (() if model.config.token_refinement else _TR_PREFIXES)
    unexpected = sorted(k for k in state if k not in expected and (k == "pos_embed_new" or not k.startswith(unused)))
    wrong = sorted(f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
                   for k, v in expected.items() if k in state and state[k].shape != v.shape)
    if missing or unexpected or wrong:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                shown = ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")
                problems.append(f"{label}: {shown}")
        c = model.config
        raise InputError(f"{source} does not match the configuration {c.name} ({c.backbone}, L={c.layer_index}, "
                         f"token_refinement={c.token_refinement}, kf={c.kf}, kb={c.kb}, train_grid={c.train_grid}); "
                         f"the file holds {state_dict_contents(state)}. {'; '.join(problems)}. Choose the variant "
                         "the checkpoint was trained as.")
    model.load_state_dict({k: state[k] for k in expected}, strict=True)


def load_official_checkpoint(path: str | Path, config: SimVOSConfig) -> SimVOS:
    """An evaluation-mode SimVOS with the weights of an official SimVOS checkpoint."""
    model = SimVOS(config)
    load_official_state(model, read_state_dict(path), source=f"checkpoint {path}")
    return model.eval()


def resize_grid(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(1, 1 + g*g, C) position embedding with a leading extra slot -> (1, 1 + h*w, C), bicubic."""
    g = math.isqrt(pos.shape[1] - 1)
    return torch.cat((pos[:, :1], resize_tokens(pos[:, 1:], (g, g), grid)), dim=1)


def load_mae_backbone(path: str | Path, config: SimVOSConfig, seed: int = 0) -> SimVOS:
    """SimVOS with a MAE / timm ViT backbone and the other parts seeded random (model/README.md)."""
    state = read_state_dict(path)
    if "pos_embed" not in state:
        raise InputError(f"{path} has no pos_embed; it is not a timm/MAE ViT checkpoint")
    backbone = {k: v for k, v in state.items() if not k.startswith(_MAE_IGNORED)}
    full = synthetic_state_dict(config, seed=seed)
    full.update(backbone)
    full["pos_embed_new"] = resize_grid(state["pos_embed"], config.train_grid)
    model = SimVOS(config)
    load_official_state(model, full, source=f"MAE backbone {path}")
    return model.eval()


def random_model(config: SimVOSConfig, seed: int = 1) -> SimVOS:
    """An evaluation-mode SimVOS with seeded random weights (benchmarking only)."""
    model = SimVOS(config)
    load_official_state(model, synthetic_state_dict(config, seed=seed), source="random weights")
    return model.eval()


def official_layout(config: SimVOSConfig) -> dict[str, tuple[int, ...]]:
    """Every key of an official checkpoint for ``config`` with its shape, unused keys (and both token-refinement
    branches, which the official model always holds) included."""
    full = dataclasses.replace(config, layer_index=max(config.layer_index, 1), token_refinement=True)
    shapes = {k: tuple(v.shape) for k, v in SimVOS(full).state_dict().items()}
    C = config.embed_dim
    shapes.update({"cls_token": (1, 1, C), "pos_embed": (1, 197, C), "fc_norm.weight": (C,),
                   "fc_norm.bias": (C,), "head.weight": (1000, C), "head.bias": (1000,)})
    return shapes


_NORM = re.compile(r"(^|\.)(norm|norm1|norm2|ln|input_norm|fc_norm)\.(weight|bias)$")


def synthetic_state_dict(config: SimVOSConfig, seed: int = 1) -> dict[str, torch.Tensor]:
    """Seeded random weights in the official layout (the golden checkpoint's recipe: model/README.md)."""
    state = {}
    for key, shape in official_layout(config).items():
        g = torch.Generator()
        g.manual_seed((seed * 1000003 + zlib.crc32(key.encode())) % 2**63)
        mean, sd = _init_stats(key, shape)
        state[key] = torch.randn(shape, generator=g, dtype=torch.float32) * sd + mean
    state["stcn_decoder.pred.bias"].fill_(-1.0)
    return state


def _init_stats(key: str, shape: tuple[int, ...]) -> tuple[float, float]:
    norm = _NORM.search(key)
    if norm:
        return (1.0, 0.1) if norm.group(3) == "weight" else (0.0, 0.1)
    if key.endswith(".weight") and len(shape) >= 2:
        if key.startswith(("fpn1.0", "fpn1.3", "fpn2.0")):  # ConvTranspose2d (in, out, kh, kw), stride 2
            fan_in = shape[0] * shape[2] * shape[3] // 4
        else:  # Linear (out, in) or Conv2d (out, in, kh, kw)
            fan_in = math.prod(shape[1:])
        return 0.0, 1.0 / math.sqrt(fan_in)
    if key.endswith(".bias"):
        return 0.0, 0.1
    if key in ("pos_embed", "pos_embed_new"):
        return 0.0, 0.5
    return 0.0, 0.02
