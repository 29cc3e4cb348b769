"""The golden cases (tests/data/golden), importable from any test folder by this unique module name.

(``from conftest import ...`` resolves to whichever conftest pytest loaded last.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"
GOLDEN_CASES = ("tiny_L0", "tiny_L4", "tiny_L4_tr", "tiny_L2_tr_odd")
#: The project's shared golden folder, present on the project's machines only.
SHARED_GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"


@dataclass(frozen=True)
class GoldenCase:
    name: str
    meta: dict
    frames: np.ndarray  # (T, H, W, 3) uint8
    first_mask: np.ndarray  # (H, W) uint8
    prob: np.ndarray  # (T, K+1, H, W) float32
    labels: np.ndarray  # (T, H, W) uint8

    def config(self):
        from simvos_trt.config import SimVOSConfig

        m = self.meta
        return SimVOSConfig(backbone="tiny", layer_index=m["layer_index"],
                            token_refinement=m["token_refinement"], kf=m["kf"], kb=m["kb"],
                            train_grid=tuple(m["train_grid"]))


def load_golden(name: str) -> GoldenCase:
    meta = json.loads((GOLDEN / f"{name}.json").read_text())
    with np.load(GOLDEN / f"{name}.npz") as d:
        return GoldenCase(name, meta, d["frames"], d["first_mask"], d["prob"], d["labels"])
