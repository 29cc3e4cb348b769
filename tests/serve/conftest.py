"""Exports and real simvos-serve servers (child processes on free ports) shared by the serve tests.

``golden_server`` serves the golden checkpoint's T configuration at 128x192 (2 instances);
``small_server`` serves a 32x48 tiny export with a 2 s idle timeout, at most 3 open
videos and small bounds of frames and answers, for the lifecycle, limits and memory tests,
where the model's cost does not matter. Servers run in $SIMVOS_SERVE_PYTHON (a venv with
the 'serve' extra), clients in this Python.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from goldens import load_golden

from simvos_trt.manifest import Weights
from simvos_trt.serve.launch import serve_python

#: Engine sizes and object limits of the two exports.
GOLDEN_SIZE, GOLDEN_MAX_OBJECTS = (128, 192), 4
SMALL_SIZE, SMALL_MAX_OBJECTS = (32, 48), 2
#: The small server's bounds of a frame and of an answer.
SMALL_MAX_PIXELS, SMALL_MAX_RESPONSE = 250_000, 2_000_000


def _export(folder: Path, model, size: tuple[int, int], max_objects: int, checkpoint: Weights) -> Path:
    from simvos_trt.export.onnx_export import ExportSettings, export_folder

    export_folder(model, folder, ExportSettings(*size, max_objects=max_objects), checkpoint=checkpoint)
    return folder


@pytest.fixture(scope="session")
def server_python() -> str:
    """The Python that runs the servers; skips unless it has the 'serve' extra."""
    python = serve_python()
    if subprocess.run([python, "-c", "import pytriton"], capture_output=True).returncode:
        pytest.skip(f"{python} cannot run simvos-serve: set SIMVOS_SERVE_PYTHON to a Python with the 'serve' extra "
                    "(README: the test command)")
    return python


@pytest.fixture(scope="session")
def golden_export(tmp_path_factory, tiny_checkpoint) -> Path:
    """The golden checkpoint in the T configuration (L=4, TR 16/16) at 128x192, at most 4 objects."""
    from simvos_trt.model import load_official_checkpoint

    model = load_official_checkpoint(tiny_checkpoint, load_golden("tiny_L4_tr").config())
    return _export(tmp_path_factory.mktemp("serve") / "t128", model, GOLDEN_SIZE, GOLDEN_MAX_OBJECTS,
                   Weights("official"))


@pytest.fixture(scope="session")
def small_export(tmp_path_factory) -> Path:
    """Tiny ViT, L=1, no token refinement, 32x48, at most 2 objects."""
    pytest.importorskip("torch")
    from simvos_trt.config import SimVOSConfig
    from simvos_trt.model import random_model

    model = random_model(SimVOSConfig(backbone="tiny", layer_index=1), seed=1)
    return _export(tmp_path_factory.mktemp("serve") / "small", model, SMALL_SIZE, SMALL_MAX_OBJECTS,
                   Weights("random", seed=1))


@pytest.fixture(scope="session")
def golden_server(server_python, golden_export, tmp_path_factory):
    from simvos_trt.serve import ServerProcess

    log = tmp_path_factory.mktemp("logs") / "golden_server.log"
    with ServerProcess(golden_export, "--threads", "1", "--instances", "2", log=log) as server:
        yield server


@pytest.fixture(scope="session")
def small_server(server_python, small_export, tmp_path_factory):
    from simvos_trt.serve import ServerProcess

    log = tmp_path_factory.mktemp("logs") / "small_server.log"
    with ServerProcess(small_export, "--threads", "1", "--idle-timeout", "2", "--max-videos", "3",
                       "--max-frame-pixels", str(SMALL_MAX_PIXELS), "--max-response-bytes", str(SMALL_MAX_RESPONSE),
                       log=log) as server:
        yield server


@pytest.fixture
def golden_client(golden_server):
    from simvos_trt.serve import SegmentationClient

    with SegmentationClient(golden_server.url) as client:
        yield client


@pytest.fixture
def small_client(small_server):
    from simvos_trt.serve import SegmentationClient

    with SegmentationClient(small_server.url) as client:
        yield client
