"""Engine identity without TensorRT: plans, profiles, cache keys, compatibility, option checks, records."""

from __future__ import annotations

import dataclasses
import json

import pytest

from simvos_trt.errors import BackendError, InputError
from simvos_trt.manifest import MANIFEST, ManifestError, read_manifest, sha256_file
from simvos_trt.trt.plan import (
    BuildSettings,
    ShapeRange,
    Target,
    cache_key,
    check_options,
    objects_range,
    parse_cc,
    plan_build,
)
from simvos_trt.trt.records import (
    Device,
    EngineEntry,
    check_engine,
    compatibility,
    is_reusable,
    rebuild_command,
    record_engines,
)

RTX = Target("tensorrt_rtx", "1.7.1.116", "Linux-x86_64", ((8, 0),))
TRT = Target("tensorrt", "11.4.0.1", "Linux-x86_64", ((8, 0),), "NVIDIA A100-SXM4-80GB")
A100 = Device("tensorrt", "11.4.0.1", "Linux-x86_64", "NVIDIA A100-SXM4-80GB", (8, 0))


def plan_for(manifest, name="joint_decoder_1mem", **settings):
    return plan_build(name, manifest.graphs[name], objects_range(manifest), BuildSettings(**settings))


def entry_for(plan, target=TRT):
    return EngineEntry(plan, target, "0" * 64, 6, cache_key(plan, target))


@pytest.mark.parametrize("bad, field", [({"workspace_mib": 0}, "workspace"), ({"opt_level": 6}, "opt_level"),
                                        ({"compute_capabilities": ((9, 0),)}, "Hopper"),
                                        ({"compute_capabilities": ((7, 5),)}, "Turing")])
def test_settings_reject_bad_values_naming_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        BuildSettings(**bad)


@pytest.mark.parametrize("text, cc", [("8.0", (8, 0)), ("12.0", (12, 0))])
def test_compute_capabilities_parse(text, cc):
    assert parse_cc(text) == cc
    with pytest.raises(ValueError, match="MAJOR.MINOR"):
        parse_cc("sm80")


@pytest.mark.parametrize("library, settings, words", [
    ("tensorrt_rtx", {"version_compatible": True}, "libnvinfer_lean"),
    ("tensorrt_rtx", {"hardware_compatible": True}, "hardware compatibility"),
    ("tensorrt", {"compute_capabilities": ((8, 6),)}, "TensorRT-RTX")])
def test_options_the_library_lacks_are_refused_in_one_line(library, settings, words):
    with pytest.raises(InputError, match=words) as info:
        check_options(BuildSettings(**settings), library)
    assert "\n" not in str(info.value)
    check_options(BuildSettings(), library)  # the defaults are fine for both


def test_the_plan_takes_the_graphs_precision_and_profiles_the_object_axis(folder):
    m = read_manifest(folder)
    plan = plan_for(m)
    assert plan.precision == "fp16" and plan_for(m, "aggregate").precision == "fp32"
    assert plan.profile == {"memory_first": ShapeRange((1, 32, 192), (2, 32, 192), (4, 32, 192))}
    assert plan.engine_file == "joint_decoder_1mem.engine" and not plan.tf32
    assert plan_for(m, "query_encoder").profile == {}  # all-static inputs


def test_the_cache_key_changes_with_everything_that_changes_the_engine(folder):
    m = read_manifest(folder)
    plan = plan_for(m)
    key = cache_key(plan, RTX)
    assert key == cache_key(plan_for(m), RTX)  # stable
    others = [cache_key(plan_for(m, opt_level=4), RTX), cache_key(plan_for(m, workspace_mib=512), RTX),
              cache_key(plan, dataclasses.replace(RTX, compute_capabilities=((8, 0), (8, 6)))),
              cache_key(plan, dataclasses.replace(RTX, version="1.6.1.120")), cache_key(plan, TRT),
              cache_key(dataclasses.replace(plan, onnx_sha256="f" * 64), RTX)]
    assert len({key, *others}) == len(others) + 1


@pytest.mark.parametrize("device, target, reason", [
    (A100, TRT, None),
    (dataclasses.replace(A100, gpu_name="NVIDIA A100-PCIE-40GB"), TRT, "tuned to one GPU model"),
    (dataclasses.replace(A100, version="11.5.0.0"), TRT, "11.4.0.1 and this is 11.5.0.0"),
    (dataclasses.replace(A100, platform="Windows-AMD64"), TRT, "never move between platforms"),
    (A100, RTX, "select tensorrt_rtx"),
    (dataclasses.replace(A100, library="tensorrt_rtx", version="1.7.1.116", gpu_name="RTX A6000",
                         compute_capability=(8, 6)), RTX, "built for compute capability 8.0"),
    (dataclasses.replace(A100, library="tensorrt_rtx", version="1.7.1.116", gpu_name="A10"), RTX, None),
])
def test_compatibility(device, target, reason, folder):
    entry = entry_for(plan_for(read_manifest(folder)), target)
    got = compatibility(entry, device)
    assert (got is None) if reason is None else (reason in got), got


def test_version_and_hardware_compatible_engines_travel(folder):
    m = read_manifest(folder)
    entry = entry_for(plan_for(m, version_compatible=True, hardware_compatible=True))
    later = dataclasses.replace(A100, version="11.5.0.0", gpu_name="NVIDIA RTX 6000 Ada", compute_capability=(8, 9))
    assert compatibility(entry, later) is None
    older = dataclasses.replace(A100, version="11.3.0.0")
    assert "that or a later version only" in compatibility(entry, older)
    turing = dataclasses.replace(A100, gpu_name="Tesla T4", compute_capability=(7, 5))
    assert "Ampere and newer" in compatibility(entry, turing)


def test_records_round_trip_and_engines_are_checked_before_loading(folder):
    m = read_manifest(folder)
    plan = plan_for(m)
    path = folder / plan.engine_file
    path.write_bytes(b"engine")
    entry = dataclasses.replace(entry_for(plan), sha256=sha256_file(path), layers={"float16": 3, "float32": 2})
    record_engines(folder, [entry])
    assert read_manifest(folder, verify=True).graphs[plan.graph].engine == entry.to_dict()
    assert EngineEntry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry
    assert check_engine(folder, read_manifest(folder), plan.graph, A100) == (entry, path)
    assert is_reusable(folder, entry, entry.cache_key) and not is_reusable(folder, entry, "other")
    with pytest.raises(BackendError, match="simvos-build .* --force"):
        check_engine(folder, read_manifest(folder), plan.graph, dataclasses.replace(A100, gpu_name="Tesla T4"))
    path.write_bytes(b"tampered")
    with pytest.raises(ManifestError, match="does not match the sha256"):
        check_engine(folder, read_manifest(folder), plan.graph, A100)
    path.unlink()
    with pytest.raises(ManifestError, match="is missing"):
        check_engine(folder, read_manifest(folder), plan.graph, A100)
    with pytest.raises(ManifestError, match="has no engine for aggregate"):
        check_engine(folder, read_manifest(folder), "aggregate", A100)


def test_an_engine_of_an_older_graph_is_stale(folder):
    m = read_manifest(folder)
    plan = dataclasses.replace(plan_for(m), onnx_sha256="f" * 64)
    (folder / plan.engine_file).write_bytes(b"engine")
    record_engines(folder, [dataclasses.replace(entry_for(plan), sha256=sha256_file(folder / plan.engine_file))])
    with pytest.raises(ManifestError, match="stale"):
        check_engine(folder, read_manifest(folder), plan.graph, A100)


def test_bad_records_and_manifests_are_named(folder):
    with pytest.raises(ManifestError, match="invalid engine entry"):
        EngineEntry.from_dict({"plan": {}})
    (folder / MANIFEST).write_text("{")
    with pytest.raises(ManifestError, match="cannot update"):
        record_engines(folder, [])
    assert rebuild_command("my folder") == "simvos-build 'my folder' --force"
