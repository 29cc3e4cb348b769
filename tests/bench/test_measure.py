"""Timing: the headline pass touches no graph call, the split pass (the proxy) times each one; a fake backend
and session stand in for a GPU."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from simvos_trt import runtime
from simvos_trt.bench.measure import STAGES, Measurement, TimingBackend, measure_session, moving_shapes, synchronizer
from simvos_trt.config import SimVOSConfig
from simvos_trt.manifest import GRAPHS, GraphEntry, Manifest, Weights
from simvos_trt.runtime.backends import Backend

#: Seconds each fake graph call takes on the fake clock.
DURATION = {"query_encoder": 1.0, "memory_encoder": 2.0, "joint_decoder_1mem": 4.0, "joint_decoder_2mem": 8.0,
            "aggregate": 16.0}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fake_manifest() -> Manifest:
    graphs = {g: GraphEntry(f"{g}.onnx", "0" * 64, (), ()) for g in GRAPHS}
    return Manifest(config=SimVOSConfig(backbone="tiny"), height=32, width=48, uint8_input=True, max_objects=3,
                    opset=17, checkpoint=Weights("random", seed=1), graphs=graphs)


class FakeBackend(Backend):
    """Advances ``clock`` by the graph's duration; counts opens, closes and synchronisations."""

    name = "fake"

    def __init__(self, clock: Clock, sync: bool) -> None:
        super().__init__("/nonexistent", fake_manifest())
        self.clock, self.syncs, self.opened, self.closed = clock, 0, 0, 0
        if sync:
            self.synchronize = self._synchronize

    def _synchronize(self) -> None:
        self.syncs += 1

    def run(self, graph: str, inputs: Mapping[str, object]) -> dict[str, object]:
        self.clock.t += DURATION[graph]
        return {"graph": graph, **inputs}

    def _open(self) -> None:
        self.opened += 1

    def _close(self) -> None:
        self.closed += 1

    def _run(self, graph, inputs):  # pragma: no cover - run is overridden
        raise AssertionError

    def to_host(self, handle):
        return np.asarray(handle) * 2

    def from_host(self, array):
        return array + 1

    def dtype_and_shape(self, handle):
        return "float32", (1,)

    def object_limit(self, graph: str) -> int:
        return 7


CALLS = ["memory_encoder", "query_encoder", "joint_decoder_2mem", "joint_decoder_2mem", "aggregate",
         "query_encoder", "joint_decoder_1mem", "aggregate"]


@pytest.mark.parametrize("sync", [True, False])
def test_stage_sums_equal_the_wrapped_calls(sync):
    clock = Clock()
    inner = FakeBackend(clock, sync)
    proxy = TimingBackend(inner, clock=clock)
    with proxy:
        assert inner.opened == 1
        for graph in CALLS:
            out = proxy.run(graph, {"x": 1})
            assert out == {"graph": graph, "x": 1}  # delegated unchanged
        stages = proxy.stage_seconds()
    assert inner.closed == 1
    assert [c.graph for c in proxy.calls] == CALLS
    assert [c.seconds for c in proxy.calls] == [DURATION[g] for g in CALLS]
    assert set(stages) == set(STAGES)
    assert stages == {"query": 2.0, "memory": 2.0, "joint": 8.0 + 8.0 + 4.0, "aggregate": 32.0}
    assert sum(stages.values()) == sum(DURATION[g] for g in CALLS)
    assert inner.syncs == (2 * len(CALLS) if sync else 0)  # before each of the two clock reads
    proxy.reset()
    assert proxy.calls == [] and proxy.stage_seconds() == dict.fromkeys(STAGES, 0.0)


def test_now_synchronises_and_everything_else_is_delegated():
    clock = Clock()
    inner = FakeBackend(clock, sync=True)
    proxy = TimingBackend(inner, clock=clock)
    proxy.open()
    clock.t = 5.0
    assert proxy.now() == 5.0 and inner.syncs == 1
    assert proxy.object_limit("aggregate") == 7
    assert proxy.from_host(np.ones(2)).tolist() == [2.0, 2.0]
    assert proxy.to_host(np.ones(2)).tolist() == [2.0, 2.0]
    assert proxy.dtype_and_shape(None) == ("float32", (1,))
    assert proxy.take(np.arange(4.0), 1, 3).tolist() == [3.0, 5.0]  # the base class's, through the host
    inner.resample = lambda plan, inputs: {"labels": (plan, inputs)}  # the inner backend's, wherever it runs it
    assert proxy.resample("plan", {"objects": 1}) == {"labels": ("plan", {"objects": 1})}
    assert proxy.name == "fake" and proxy.manifest is inner.manifest
    proxy.close()
    assert inner.closed == 1


def test_synchronizer_skips_the_base_no_op():
    assert synchronizer(FakeBackend(Clock(), sync=False)) is None  # Backend.synchronize: nothing to wait for
    inner = FakeBackend(Clock(), sync=True)
    sync = synchronizer(inner)
    assert sync is not None
    sync()
    TimingBackend(inner).synchronize()
    assert inner.syncs == 2


class FakeSession:
    """Runs the graph calls of a steady-state step (``CALLS[:5]``) on its backend."""

    def __init__(self, backend) -> None:
        self.backend = backend

    def start(self, frame, mask) -> None:
        self.backend.run("memory_encoder", {})

    def step(self, frame) -> None:
        for graph in CALLS[:5]:
            self.backend.run(graph, {})


@pytest.mark.parametrize("sync", [True, False])
def test_headline_pass_times_whole_steps_and_the_split_pass_each_call(sync, monkeypatch):
    monkeypatch.setattr(runtime, "VideoSession", FakeSession)
    seen = []
    run, timing_run = FakeBackend.run, TimingBackend.run

    def proxied(self, graph, inputs):
        seen.append(("proxy", graph))
        return timing_run(self, graph, inputs)

    monkeypatch.setattr(TimingBackend, "run", proxied)
    inner = FakeBackend(Clock(), sync)
    monkeypatch.setattr(inner, "run", lambda graph, inputs: seen.append(("inner", graph)) or run(inner, graph, inputs))
    m = measure_session(inner, moving_shapes(32, 48, frames=5), warmup=1, frames=3)
    steps = 1 + 3  # warm-up and timed steps of each pass
    headline, split = seen[: 1 + 5 * steps], seen[1 + 5 * steps :]
    assert all(who == "inner" for who, _ in headline)  # no proxy inside the headline pass
    assert [g for who, g in split if who == "proxy"] == ["memory_encoder"] + CALLS[:5] * steps
    # headline: one synchronisation per step; split: two per call (before and after it) and one per step
    assert inner.syncs == (steps + 2 * (1 + 5 * steps) + steps if sync else 0)
    assert len(m.step) == len(m.split_step) == 3 and all(len(v) == 3 for v in m.stages.values())


def test_measurement_host_time_is_step_minus_stages():
    m = Measurement(step=(10.0, 20.0, 12.0), warmup=1,
                    stages={"query": (1.0, 2.0, 1.0), "memory": (2.0, 2.0, 2.0), "joint": (5.0, 10.0, 6.0),
                            "aggregate": (1.0, 1.0, 1.0)})
    assert m.host == (1.0, 5.0, 2.0)
    assert (m.median_ms, m.fps) == (12.0, 1000.0 / 12.0)
    assert m.p90_ms == pytest.approx(18.4)  # numpy's linear interpolation between 12 and 20
    assert (m.stage_ms("joint"), m.stage_ms("host")) == (6.0, 2.0)


def test_moving_shapes_video():
    video = moving_shapes(32, 48, objects=3, frames=4, seed=0)
    assert video.frames.shape == (4, 32, 48, 3) and video.frames.dtype == np.uint8
    assert video.first_mask.shape == (32, 48) and video.objects == 3
    assert set(np.unique(video.first_mask)) == {0, 1, 2, 3}
    assert not np.array_equal(video.frames[0], video.frames[3])  # the shapes move
