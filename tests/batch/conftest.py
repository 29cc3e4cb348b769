"""Fixtures of the batch tests: a small DAVIS root, a tiny export, and its single-process run (the reference)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from batch_helpers import SEQUENCES, make_export

from simvos_trt.batch import SegmenterSpec
from simvos_trt.eval.run import segment_dataset


def eval_helper(name: str):
    """The module tests/eval/<name>.py (that folder is not on this one's path)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "eval" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = sys.modules[name] = importlib.util.module_from_spec(spec)  # (dataclasses look it up there)
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def youtube(tmp_path_factory) -> Path:
    """A synthetic YouTube-VOS root (split valid): objects appear at later frames."""
    root = tmp_path_factory.mktemp("batch_yt") / "youtube"
    eval_helper("synthetic_youtube").make_youtube(root, frames=26, height=64, width=96)
    return root


@pytest.fixture(scope="session")
def davis(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("batch") / "davis"
    eval_helper("synthetic_davis").make_dataset(root, sequences=SEQUENCES, frames=6, height=60, width=90, objects=3,
                                                seed=0)
    return root


@pytest.fixture(scope="session")
def export(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    return make_export(tmp_path_factory.mktemp("batch_export") / "tiny-64x96")


@pytest.fixture(scope="session")
def spec(export) -> SegmenterSpec:
    return SegmenterSpec(export, "onnxruntime", threads=1)


@pytest.fixture(scope="session")
def reference(davis, spec, tmp_path_factory) -> Path:
    """The split segmented by the single-process run (``eval.run.segment_dataset``, simvos-eval's default)."""
    out = tmp_path_factory.mktemp("batch_reference") / "out"
    with spec.open() as segmenter:
        segment_dataset(segmenter, davis, "val", out)
    return out
