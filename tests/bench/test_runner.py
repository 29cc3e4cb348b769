"""The sweep runner with a fake measurement: incremental writes, interruption, failures, passes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from simvos_trt.bench import runner
from simvos_trt.bench.measure import Measurement, moving_shapes
from simvos_trt.bench.results import CSV_FILE, ResultFolder, read_results
from simvos_trt.bench.runner import RowMeasured, Started, SweepSettings, run_sweep
from simvos_trt.bench.sweep import build_sweep, grid_rows

SIZE = (32, 48)


def measurement(ms: float) -> Measurement:
    return Measurement(step=(ms, ms), warmup=1, stages={"query": (1.0, 1.0), "memory": (1.0, 1.0),
                                                        "joint": (ms - 3, ms - 3), "aggregate": (0.5, 0.5)})


class FakeMeasure:
    """Returns ``times[i]`` ms on call i; raises ``errors[i]`` where given."""

    def __init__(self, times: list[float], errors: dict[int, BaseException] | None = None) -> None:
        self.times, self.errors, self.calls = times, errors or {}, []

    def __call__(self, folder, backend, video, **kwargs):
        i = len(self.calls)
        self.calls.append((Path(folder).name, backend, kwargs))
        if i in self.errors:
            raise self.errors[i]
        return measurement(self.times[i])


@pytest.fixture
def sweep(monkeypatch, tmp_path):
    """Three rows (L=0, 2, 4 on the tiny ViT), no export (a fake folder per row)."""
    monkeypatch.setattr(runner, "ensure_graphs", lambda spec, engines, say: tmp_path / spec.config.name)
    rows = build_sweep([grid_rows([0, 2, 4], [], "off", "tiny", SIZE)], "tiny")
    video = moving_shapes(*SIZE, objects=2, frames=4)
    return rows, video


def settings(**kw) -> SweepSettings:
    return SweepSettings(height=SIZE[0], width=SIZE[1], frames=2, warmup=1, device="cpu", **kw)


def test_every_row_is_measured_and_written(sweep, tmp_path):
    rows, video = sweep
    writer = ResultFolder(tmp_path / "out", {"settings": {}})
    fake = FakeMeasure([20.0, 10.0, 8.0])
    events = []
    run_sweep(rows, settings(), {"onnxruntime": writer}, measure=fake, video=video,
              progress=events.append)
    assert [c[0] for c in fake.calls] == ["tiny-L0", "tiny-L2", "tiny-L4"]
    assert fake.calls[0][2]["warmup"] == 1 and fake.calls[0][2]["providers"] == ["CPUExecutionProvider"]
    _, saved = read_results(tmp_path / "out")
    assert [r.status for r in saved] == ["ok"] * 3
    assert [r.speedup for r in saved] == pytest.approx([1.0, 2.0, 2.5])
    assert saved[1].host_ms == pytest.approx(10.0 - 1 - 1 - 7 - 0.5)
    assert [isinstance(e, Started) and e.row is not None for e in events].count(True) == 3
    assert [e.row for e in events if isinstance(e, RowMeasured)] == writer.rows


def test_an_interrupted_sweep_keeps_the_rows_measured(sweep, tmp_path):
    rows, video = sweep
    writer = ResultFolder(tmp_path / "out", {"settings": {}})
    fake = FakeMeasure([20.0, 10.0, 8.0], errors={1: KeyboardInterrupt()})
    with pytest.raises(KeyboardInterrupt):
        run_sweep(rows, settings(), {"onnxruntime": writer}, measure=fake, video=video)
    _, saved = read_results(tmp_path / "out")
    assert [(r.config, r.status, r.fps) for r in saved] == [("tiny-L0", "ok", 50.0)]
    with open(tmp_path / "out" / CSV_FILE) as f:
        assert [r["config"] for r in csv.DictReader(f)] == ["tiny-L0"]
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind


def test_a_failed_or_unavailable_row_does_not_stop_the_sweep(sweep, tmp_path, monkeypatch):
    rows, video = sweep
    monkeypatch.setattr(runner, "unavailable_reason",
                        lambda b, s: "no GPU here" if b == "tensorrt" else None)
    writers = {b: ResultFolder(tmp_path / b, {"settings": {}}) for b in ("onnxruntime", "tensorrt")}
    fake = FakeMeasure([20.0, 10.0, 8.0], errors={1: RuntimeError("boom")})
    run_sweep(rows, settings(backends=("onnxruntime", "tensorrt")), writers, measure=fake, video=video)
    _, ort = read_results(tmp_path / "onnxruntime")
    _, trt = read_results(tmp_path / "tensorrt")
    assert [r.status for r in ort] == ["ok", "failed", "ok"] and "boom" in ort[1].message
    assert [r.status for r in trt] == ["unavailable"] * 3 and trt[0].message == "no GPU here"
    assert len(fake.calls) == 3  # tensorrt was never tried


def test_passes_keep_the_fastest(sweep, tmp_path):
    rows, video = sweep
    writer = ResultFolder(tmp_path / "out", {"settings": {}})
    fake = FakeMeasure([20.0, 30.0, 8.0, 25.0, 10.0, 9.0])
    run_sweep(rows, settings(repeats=2), {"onnxruntime": writer}, measure=fake, video=video)
    _, saved = read_results(tmp_path / "out")
    assert [r.median_ms for r in saved] == [20.0, 10.0, 8.0]
    assert [r.pass_medians_ms for r in saved] == [[20.0, 25.0], [30.0, 10.0], [8.0, 9.0]]
