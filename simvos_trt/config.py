"""The model configuration: one frozen, validated dataclass and the paper's presets (pure Python)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import check_int, check_type

#: name -> (embed_dim C: the ViT width, depth: its blocks, num_heads: attention heads per block) of each backbone.
BACKBONES: dict[str, tuple[int, int, int]] = {"tiny": (192, 12, 3), "base": (768, 12, 12), "large": (1024, 24, 16)}


@dataclass(frozen=True)
class SimVOSConfig:
    """Everything that fixes the network's structure (L=0 is SimVOS-B/L; patch 16, MLP ratio 4, qkv bias)."""

    backbone: str = "base"  # tiny (C=192, 12 blocks, 3 heads), base (768, 12, 12) or large (1024, 24, 16)
    layer_index: int = 0  # L: the leading blocks that run on each frame alone; 0 <= L <= depth
    token_refinement: bool = False  # compress each memory frame to Kf + Kb prototypes after block L (L >= 1)
    kf: int = 384  # foreground prototypes per memory frame (``tlearner``)
    kb: int = 384  # background prototypes per memory frame (``tlearner_back``)
    train_grid: tuple[int, int] = (24, 24)  # token grid of the checkpoint's pos_embed_new (384x384 training)
    patch_size: ClassVar[int] = 16
    mlp_ratio: ClassVar[int] = 4

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone: got {self.backbone!r}, expected one of {sorted(BACKBONES)}")
        check_type("layer_index", self.layer_index, int, "an int")
        if not 0 <= self.layer_index <= self.depth:
            raise ValueError(f"layer_index: got {self.layer_index}, expected 0..{self.depth} "
                             f"(the {self.backbone} backbone has {self.depth} blocks)")
        check_type("token_refinement", self.token_refinement, bool, "a bool")
        if self.token_refinement and self.layer_index < 1:
            raise ValueError("token_refinement: needs layer_index >= 1 (prototypes are computed after block L); "
                             f"got layer_index=0. Set layer_index to 1..{self.depth} or turn token refinement off")
        check_int("kf", self.kf, 1, 4096)
        check_int("kb", self.kb, 1, 4096)
        grid = tuple(self.train_grid)
        if len(grid) != 2 or not all(isinstance(g, int) and g >= 1 for g in grid):
            raise ValueError(f"train_grid: got {self.train_grid!r}, expected two positive ints")
        object.__setattr__(self, "train_grid", grid)

    @property
    def embed_dim(self) -> int:
        return BACKBONES[self.backbone][0]

    @property
    def depth(self) -> int:
        return BACKBONES[self.backbone][1]

    @property
    def num_heads(self) -> int:
        return BACKBONES[self.backbone][2]

    def memory_tokens(self, grid: tuple[int, int]) -> int:
        """M, the tokens one memory frame contributes at token grid ``grid`` (h, w)."""
        return self.kf + self.kb if self.token_refinement else grid[0] * grid[1]

    @property
    def name(self) -> str:
        """A short, file-name-safe description, e.g. ``base-L4-tr384x384``."""
        tr = f"-tr{self.kf}x{self.kb}" if self.token_refinement else ""
        return f"{self.backbone}-L{self.layer_index}{tr}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"train_grid": list(self.train_grid)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimVOSConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"unknown configuration fields {unknown}; expected {sorted(fields)}")
        return cls(**d)  # __post_init__ makes train_grid a tuple


#: The paper's variants plus a tiny one for tests and CPU benchmarks.
PRESETS: dict[str, SimVOSConfig] = {
    "B": SimVOSConfig(backbone="base", layer_index=0),
    "L": SimVOSConfig(backbone="large", layer_index=0),
    "BS": SimVOSConfig(backbone="base", layer_index=4, token_refinement=True, kf=384, kb=384),
    "T": SimVOSConfig(backbone="tiny", layer_index=4, token_refinement=True, kf=16, kb=16),
}


def preset(name: str) -> SimVOSConfig:
    """The preset called ``name`` (``B``, ``L``, ``BS`` or ``T``)."""
    if name not in PRESETS:
        raise ValueError(f"variant: got {name!r}, expected one of {sorted(PRESETS)}")
    return PRESETS[name]
