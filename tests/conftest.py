"""Shared fixtures: the tiny checkpoint rebuilt from its recipe (the golden cases are in ``goldens.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The golden checkpoint (official layout, tiny ViT, Kf=Kb=16) rebuilt from its recipe."""
    torch = pytest.importorskip("torch")
    from simvos_trt.config import preset
    from simvos_trt.model import synthetic_state_dict

    path = tmp_path_factory.mktemp("ckpt") / "tiny_official_layout.pth"
    torch.save(synthetic_state_dict(preset("T"), seed=1), path)
    return path
