"""Helpers of the batch tests, importable by their worker processes and Ray actors (this folder is on their
path): a tiny export, a task that kills its own worker in the middle of a video, output comparison."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

SEQUENCES = 4
#: Seed of the random weights (as tests/eval/test_end_to_end.py: no near-tie pixel there).
SEED = 2


def make_export(folder: Path) -> Path:
    """A tiny (ViT-Tiny, L=1, token refinement) float32 export at 64x96 with random weights."""
    from simvos_trt.config import SimVOSConfig
    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.manifest import Weights
    from simvos_trt.model import random_model

    model = random_model(SimVOSConfig(backbone="tiny", layer_index=1), seed=SEED)
    export_folder(model, folder, ExportSettings(64, 96, max_objects=3), checkpoint=Weights("random", seed=SEED))
    return folder


def outputs(folder: Path) -> dict[str, bytes]:
    """Every PNG of a results folder, by its path inside it."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.glob("*/*.png"))}


class _DyingSession:
    """A video session whose process is SIGKILLed at frame ``at`` (after writing the frames before it)."""

    def __init__(self, inner, at: int) -> None:
        self.inner, self.at, self.t = inner, at, 0

    def start(self, *args, **kwargs) -> np.ndarray:
        return self.inner.start(*args, **kwargs)

    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        self.t += 1
        if self.t == self.at:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.step(frame, mask)


class _DyingSegmenter:
    def __init__(self, inner, at: int) -> None:
        self.inner, self.at = inner, at

    def video(self) -> _DyingSession:
        return _DyingSession(self.inner.video(), self.at)


@dataclass(frozen=True)
class KillOnce:
    """Runs ``inner`` (a VideoTask); the first worker that takes video ``victim`` dies at its frame 3 (the marker
    file records that it happened). Every call leaves ``marks/<video>.<pid>`` holding where it ran."""

    inner: object  # a DAVIS task
    victim: str
    marks: Path
    always: bool = False  # kill every worker that takes the victim
    folder: ClassVar[str] = ""

    def expected(self, name: str) -> list[str]:
        return self.inner.expected(name)

    def __call__(self, segmenter, name: str, out: Path) -> int:
        where = f"{os.getpid()}"
        try:
            import ray

            if ray.is_initialized():
                where = ray.get_runtime_context().get_node_id()
        except ImportError:
            pass
        (self.marks / f"{name}.{os.getpid()}").write_text(where)
        marker = self.marks / "killed"
        if name == self.victim and (self.always or not marker.exists()):
            marker.write_text(str(os.getpid()))
            segmenter = _DyingSegmenter(segmenter, at=3)
        return self.inner(segmenter, name, out)
