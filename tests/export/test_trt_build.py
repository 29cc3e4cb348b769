"""The engine build orchestrated against a fake TensorRT (test_trt_support.FakeTensorRT).

What these show: which flags, profiles, float32 pins, workspace and timing cache the build
asks TensorRT for; reuse vs rebuild; manifest records; error messages. What they cannot
show: that TensorRT accepts them and the engines are accurate (test_trt_gpu.py does, on a GPU).
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
from test_trt_support import A100, FakeTensorRT, install_fakes, make_export_folder

from simvos_trt.errors import MissingDependencyError
from simvos_trt.export.engine_cache import BuildSettings, EngineCompatibilityError, EngineEntry
from simvos_trt.export.trt_build import TIMING_CACHE, EngineBuildError, build_engines, load_engine
from simvos_trt.export.trt_env import GPUUnavailableError
from simvos_trt.manifest import read_manifest, sha256_file

T4 = dataclasses.replace(A100, gpu_name="Tesla T4", compute_capability=(7, 5))
GRAPHS = ["query_encoder", "joint_decoder_1mem", "aggregate"]


@pytest.fixture()
def folder(tmp_path):
    return make_export_folder(tmp_path / "exp")


@pytest.fixture()
def trt(monkeypatch):
    return install_fakes(monkeypatch)


def builds_by_graph(trt):
    return {b["graph"]: b for b in trt.builds}


def test_builds_every_graph_and_records_it(folder, trt):
    events = build_engines(folder, BuildSettings())
    assert [(e.graph, e.status) for e in events] == [(g, "built") for g in GRAPHS]
    manifest = read_manifest(folder, verify=True)
    for g in GRAPHS:
        entry = EngineEntry.from_dict(manifest.graphs[g].engines["fp16"])
        path = folder / f"{g}.fp16.engine"
        assert entry.file == path.name and entry.sha256 == sha256_file(path)
        assert entry.built_with == A100 and entry.bytes == path.stat().st_size
    assert (folder / TIMING_CACHE).read_bytes() == b"[query_encoder][joint_decoder_1mem][aggregate]"


def test_fp16_graphs_pin_every_layernorm_to_float32(folder, trt):
    build_engines(folder, BuildSettings())
    decoder = builds_by_graph(trt)["joint_decoder_1mem"]
    assert {"FP16", "OBEY_PRECISION_CONSTRAINTS", "TF32"} == decoder["config"].flags
    for layer in decoder["network"].layers:
        if layer.type.name == "NORMALIZATION":
            assert type(layer).__name__ == "INormalizationLayer"
            assert layer.precision is trt.float32 and layer.compute_precision is trt.float32
        else:
            assert layer.precision is None  # everything else is TensorRT's choice
    entry = EngineEntry.from_dict(read_manifest(folder).graphs["joint_decoder_1mem"].engines["fp16"])
    assert entry.float32_layers == 2


def test_aggregate_is_built_without_fp16_and_tf32(folder, trt):
    build_engines(folder, BuildSettings())
    config = builds_by_graph(trt)["aggregate"]["config"]
    assert not config.flags & {"FP16", "OBEY_PRECISION_CONSTRAINTS", "TF32"}


def test_fp32_engines(folder, trt):
    events = build_engines(folder, BuildSettings(precision="fp32"))
    assert all(e.entry is not None and e.entry.file.endswith(".fp32.engine") for e in events)
    assert all(not b["config"].flags for b in trt.builds)


def test_profile_per_object_input(folder, trt):
    build_engines(folder, BuildSettings())
    builds = builds_by_graph(trt)
    assert builds["query_encoder"]["config"].profiles == []
    (profile,) = builds["joint_decoder_1mem"]["config"].profiles
    assert profile.shapes == {"memory_first": ((1, 32, 192), (2, 32, 192), (4, 32, 192))}
    (profile,) = builds["aggregate"]["config"].profiles
    assert profile.shapes == {"prob": ((1, 1, 32, 48), (2, 1, 32, 48), (4, 1, 32, 48))}


def test_workspace_opt_level_and_compatibility_flags(folder, trt):
    build_engines(folder, BuildSettings(workspace_mib=512, opt_level=5, hardware_compatible=True,
                                        version_compatible=True))
    config = builds_by_graph(trt)["joint_decoder_1mem"]["config"]
    assert config.pool == {trt.MemoryPoolType.WORKSPACE: 512 << 20}
    assert config.builder_optimization_level == 5
    assert config.hardware_compatibility_level is trt.HardwareCompatibilityLevel.AMPERE_PLUS
    assert "VERSION_COMPATIBLE" in config.flags


def test_hardware_compatible_build_needs_an_ampere_gpu(folder, monkeypatch):
    install_fakes(monkeypatch, gpu=T4)
    with pytest.raises(EngineBuildError, match="Ampere or newer GPU.*Tesla T4"):
        build_engines(folder, BuildSettings(hardware_compatible=True))


def test_progress_reports_start_and_result_per_engine(folder, trt):
    seen = []
    build_engines(folder, BuildSettings(), progress=seen.append)
    assert [(e.graph, e.status) for e in seen] == [(g, s) for g in GRAPHS for s in ("start", "built")]
    assert all(e.seconds >= 0 and e.bytes > 0 for e in seen if e.status == "built")


def test_second_build_reuses_matching_engines(folder, trt):
    build_engines(folder, BuildSettings())
    trt.builds.clear()
    seen = []
    events = build_engines(folder, BuildSettings(), progress=seen.append)
    assert [e.status for e in events] == ["cached"] * 3 and trt.builds == []
    assert [e.status for e in seen] == ["cached"] * 3  # no "start" for reused engines


def test_force_and_changed_settings_rebuild(folder, trt):
    build_engines(folder, BuildSettings())
    trt.builds.clear()
    assert {e.status for e in build_engines(folder, BuildSettings(), force=True)} == {"built"}
    trt.builds.clear()
    assert {e.status for e in build_engines(folder, BuildSettings(opt_level=4))} == {"built"}


def test_tampered_engine_is_rebuilt(folder, trt):
    build_engines(folder, BuildSettings())
    (folder / "aggregate.fp16.engine").write_bytes(b"garbage")
    events = build_engines(folder, BuildSettings())
    assert [(e.graph, e.status) for e in events] == [("query_encoder", "cached"),
                                                    ("joint_decoder_1mem", "cached"), ("aggregate", "built")]


def test_timing_cache_is_reused_across_builds(folder, trt):
    build_engines(folder, BuildSettings(), graphs=["aggregate"])
    trt.builds.clear()
    build_engines(folder, BuildSettings(), graphs=["query_encoder", "joint_decoder_1mem"])
    first, second = trt.builds
    assert first["config"].timing_cache_loads == [b"[aggregate]"]  # loaded from the folder
    assert second["config"].timing_cache_loads == []  # shared in memory within one run
    assert (folder / TIMING_CACHE).read_bytes() == b"[aggregate][query_encoder][joint_decoder_1mem]"


def test_timing_cache_from_another_gpu_is_replaced(folder, trt, caplog):
    (folder / TIMING_CACHE).write_bytes(b"other-gpu")
    with caplog.at_level(logging.WARNING):
        build_engines(folder, BuildSettings(), graphs=["aggregate"])
    assert "another GPU" in caplog.text
    assert (folder / TIMING_CACHE).read_bytes() == b"[aggregate]"


def test_graph_subset_and_unknown_graph(folder, trt):
    events = build_engines(folder, BuildSettings(), graphs=["aggregate"])
    assert [e.graph for e in events] == ["aggregate"]
    with pytest.raises(EngineBuildError, match=r"--graphs \['nope'\].*query_encoder"):
        build_engines(folder, BuildSettings(), graphs=["aggregate", "nope"])


def test_parse_errors_name_each_node(tmp_path, trt):
    folder = make_export_folder(tmp_path / "bad", extra_op={"joint_decoder_1mem": "Unsupported"})
    with pytest.raises(EngineBuildError) as info:
        build_engines(folder, BuildSettings())
    message = str(info.value)
    assert "joint_decoder_1mem.onnx" in message
    assert "node 5 'unsupported_5' (Unsupported): no importer registered for op: Unsupported" in message


def test_failed_build_reports_tensorrt_errors_and_keeps_earlier_engines(folder, trt):
    trt.fail.add("aggregate")
    with pytest.raises(EngineBuildError, match="could not build aggregate: out of memory building aggregate"):
        build_engines(folder, BuildSettings())
    engines = {g: e.engines for g, e in read_manifest(folder).graphs.items()}
    assert set(engines["joint_decoder_1mem"]) == {"fp16"} and engines["aggregate"] == {}


def test_network_inputs_must_match_the_manifest(folder, trt):
    import json

    data = json.loads((folder / "manifest.json").read_text())
    data["graphs"]["aggregate"]["inputs"][0]["name"] = "probs"  # (a wrong shape is refused earlier, by read_manifest)
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(EngineBuildError, match="not the manifest's.*export it again"):
        build_engines(folder, BuildSettings(), graphs=["aggregate"])


def test_tensorrt_without_weak_typing_refuses_fp16(folder, monkeypatch):
    install_fakes(monkeypatch, trt=FakeTensorRT("11.0.0.1", flags=("TF32", "VERSION_COMPATIBLE")))
    with pytest.raises(EngineBuildError, match="TensorRT 11.0.0.1 has no BuilderFlag.FP16.*TensorRT 10"):
        build_engines(folder, BuildSettings(), graphs=["joint_decoder_1mem"])


def test_missing_tensorrt_or_gpu(folder, monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # stubs only: no bindings
    with pytest.raises(MissingDependencyError, match=r"type stubs.*pip install 'simvos-trt\[gpu\]'"):
        build_engines(folder, BuildSettings())
    install_fakes(monkeypatch, gpu=None)
    with pytest.raises(GPUUnavailableError, match="no usable NVIDIA GPU.*cudaErrorNoDevice"):
        build_engines(folder, BuildSettings())


def test_load_engine_checks_the_gpu_first(folder, monkeypatch):
    install_fakes(monkeypatch)
    build_engines(folder, BuildSettings(version_compatible=True), graphs=["aggregate"])
    loaded = load_engine(folder, "aggregate")
    assert loaded.engine.data == (folder / "aggregate.fp16.engine").read_bytes()
    assert loaded.engine.host_code_allowed and loaded.entry.plan.version_compatible
    install_fakes(monkeypatch, gpu=T4)
    with pytest.raises(EngineCompatibilityError, match=f"Tesla T4.*simvos-build {folder} --force"):
        load_engine(folder, "aggregate")
