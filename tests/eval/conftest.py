"""The end-to-end tests' model: a tiny SimVOS with seeded random weights, and its export (64x96, 3 objects)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

#: Seed of the random weights; with it no pixel of the DAVIS end-to-end run is a near-tie that torch and
#: ONNX Runtime round apart.
SEED = 2


@pytest.fixture(scope="session")
def tiny_model() -> Any:
    """The evaluation-mode tiny SimVOS (layer_index 1) with random weights of ``SEED``."""
    pytest.importorskip("torch")
    from simvos_trt.config import SimVOSConfig
    from simvos_trt.model import random_model

    return random_model(SimVOSConfig(backbone="tiny", layer_index=1), seed=SEED)


@pytest.fixture(scope="session")
def export(tiny_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model`` exported (fp32) for a 64x96 engine input and at most 3 objects."""
    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.manifest import Weights

    folder = tmp_path_factory.mktemp("e2e_export") / "tiny-64x96"
    export_folder(tiny_model, folder, ExportSettings(64, 96, max_objects=3), checkpoint=Weights("random", seed=SEED))
    return folder
