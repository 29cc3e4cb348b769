"""Fixtures of the batch tests: a small DAVIS root, a tiny export, and its single-process run (the reference)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from batch_helpers import SEQUENCES, make_export

from simvos_trt.batch import InProcess, SegmenterSpec, davis_plan, segment_videos


def make_dataset(root: Path, **kwargs) -> None:
    """tests/eval/synthetic_davis.py's ``make_dataset`` (that folder is not on this one's path)."""
    spec = importlib.util.spec_from_file_location("synthetic_davis", Path(__file__).parents[1] / "eval" /
                                                  "synthetic_davis.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # (dataclasses look it up there)
    spec.loader.exec_module(module)
    module.make_dataset(root, **kwargs)


@pytest.fixture(scope="session")
def davis(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("batch") / "davis"
    make_dataset(root, sequences=SEQUENCES, frames=6, height=60, width=90, objects=3, seed=0)
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
    """The split segmented in this process, one video after another."""
    out = tmp_path_factory.mktemp("batch_reference") / "out"
    plan = davis_plan(davis, "val")
    with InProcess(spec) as pool:
        segment_videos(plan, pool, pool.start(plan.task), out, tool="test")
    return out
