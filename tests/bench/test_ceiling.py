"""The null backend and ``simvos-bench --host-ceiling`` (a tiny export; the figures themselves are the benchmark's)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from simvos_trt.bench.ceiling import TARGETS
from simvos_trt.cli.bench import main
from simvos_trt.errors import InputError
from simvos_trt.manifest import Graph, read_manifest
from simvos_trt.runtime import VideoSegmenter
from simvos_trt.runtime.backends.null import NullBackend

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from simvos_trt.config import preset
    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.manifest import Weights
    from simvos_trt.model import random_model

    folder = tmp_path_factory.mktemp("ceiling") / "t"
    export_folder(random_model(preset("T"), seed=1), folder, ExportSettings(32, 48, max_objects=2),
                  checkpoint=Weights("random", seed=1))
    return folder


def test_the_null_backend_answers_zeros_and_checks_inputs(export):
    with NullBackend(export, read_manifest(export)) as be:
        out = be.run(Graph.AGGREGATE, {"prob": be.from_host(np.ones((3, 1, 32, 48), np.float32))})
        assert {k: (v.dtype.name, v.shape) for k, v in out.items()} == {
            "background": ("float32", (1, 1, 32, 48)), "objects": ("float32", (3, 1, 32, 48)),
            "labels": ("uint8", (1, 32, 48))}
        assert not any(v.any() for v in out.values())
        with pytest.raises(InputError, match="graph aggregate, input prob: got dtype float64"):
            be.run(Graph.AGGREGATE, {"prob": np.ones((3, 1, 32, 48))})
    frames = np.random.default_rng(0).integers(0, 256, (3, 90, 160, 3), dtype=np.uint8)  # resized into 32x48
    mask = np.zeros((90, 160), np.uint8)
    mask[10:40, 20:80] = 5
    with VideoSegmenter(NullBackend(export, read_manifest(export))) as seg:
        labels = list(seg.segment(frames, mask))
    np.testing.assert_array_equal(labels[0], mask)
    assert all(lab.shape == (90, 160) and not lab.any() for lab in labels[1:])  # the background everywhere


def test_host_ceiling_reports_both_inputs_and_writes_its_folder(tmp_path, capsys):
    argv = ["--host-ceiling", "--size", "32x48", "--frames", "2", "--warmup", "0", "--repeats", "1",
            "--engines", str(tmp_path / "engines"), "--results", str(tmp_path / "results")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "480x854" in text and "1080x1920" in text and "written to" in text
    assert f"({len(os.sched_getaffinity(0))} usable cores)" in text
    (folder,) = (tmp_path / "results").iterdir()
    assert folder.name.endswith("-host-ceiling")
    record = json.loads((folder / "results.json").read_text())
    assert [r["input"] for r in record["rows"]] == [f"{h}x{w}" for h, w in TARGETS]
    for row in record["rows"]:
        assert 0 < row["step_ms"] and 0 < row["segment_ms"] and row["segment_fps"] == pytest.approx(
            1e3 / row["segment_ms"])
    assert (folder / "report.txt").read_text().startswith("host ceiling: null engine over a T export at 32x48")
