"""Export folders shared by the runtime tests (session-scoped: exporting takes seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from goldens import load_golden
from videos import SMALL, SMALL_MAX_OBJECTS

from simvos_trt.manifest import Weights


@dataclass
class Export:
    folder: Path
    model: Any  # simvos_trt.model.SimVOS
    reference: np.ndarray | None = None  # propagate() of the golden case, computed once


class GoldenExports:
    """One export per golden case at its padded size (max 4 objects), made on first use: FP32 graphs
    (``exports[name]``) or FP16 graphs (``exports.fp16(name)``)."""

    def __init__(self, root: Path, checkpoint: Path) -> None:
        self.root, self.checkpoint, self.done = root, checkpoint, {}

    def fp16(self, name: str) -> Export:
        return self.get(name, "fp16")

    def __getitem__(self, name: str) -> Export:
        return self.get(name, "fp32")

    def get(self, name: str, precision: str) -> Export:
        key = name if precision == "fp32" else f"{name}-{precision}"
        if key not in self.done:
            from simvos_trt.export.onnx_export import ExportSettings, export_folder
            from simvos_trt.model import load_official_checkpoint

            case = load_golden(name)
            model = load_official_checkpoint(self.checkpoint, case.config())
            H, W = case.meta["padded_size"]
            export_folder(model, self.root / key, ExportSettings(H, W, max_objects=4, precision=precision),
                          checkpoint=Weights("official"))
            self.done[key] = Export(self.root / key, model)
        return self.done[key]

    def reference(self, name: str) -> np.ndarray:
        """(T, K+1, H, W) ``propagate`` of the golden case (computed once)."""
        exp = self[name]
        if exp.reference is None:
            from simvos_trt.model import propagate

            case = load_golden(name)
            exp.reference = propagate(exp.model, case.frames, case.first_mask)
        return exp.reference


@pytest.fixture(scope="session")
def golden_exports(tmp_path_factory, tiny_checkpoint) -> GoldenExports:
    pytest.importorskip("torch")
    return GoldenExports(tmp_path_factory.mktemp("golden_exports"), tiny_checkpoint)


def _small(tmp_path_factory, name: str, uint8_input: bool) -> Export:
    pytest.importorskip("torch")
    from simvos_trt.config import SimVOSConfig
    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.model import random_model

    model = random_model(SimVOSConfig(backbone="tiny", layer_index=1), seed=1)
    folder = tmp_path_factory.mktemp(name) / "export"
    settings = ExportSettings(*SMALL, max_objects=SMALL_MAX_OBJECTS, uint8_input=uint8_input)
    export_folder(model, folder, settings, checkpoint=Weights("random", seed=1))
    return Export(folder, model)


@pytest.fixture(scope="session")
def small_export(tmp_path_factory) -> Export:
    """Tiny ViT, L=1, no token refinement, 32x48, at most 2 objects per batch, uint8 frames."""
    return _small(tmp_path_factory, "small", uint8_input=True)


@pytest.fixture(scope="session")
def float_export(tmp_path_factory) -> Export:
    """As ``small_export`` with float32 (normalised, padded) frame inputs."""
    return _small(tmp_path_factory, "small_float", uint8_input=False)
