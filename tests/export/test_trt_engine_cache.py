"""Engine identity without TensorRT: build plans, profiles, cache keys, compatibility, manifest records."""

from __future__ import annotations

import dataclasses
import json

import pytest
from test_trt_support import A100, make_export_folder

from simvos_trt.export.engine_cache import (
    BuildPlan,
    BuildSettings,
    EngineCompatibilityError,
    EngineEntry,
    EngineError,
    RuntimeInfo,
    ShapeRange,
    cache_key,
    check_engine,
    compatibility,
    is_reusable,
    objects_range,
    plan_build,
    plan_profile,
    rebuild_command,
    record_engines,
)
from simvos_trt.manifest import MANIFEST, ManifestError, read_manifest, sha256_file

T4 = RuntimeInfo("10.13.0.35", "Tesla T4", (7, 5), "Linux-x86_64")
A100_PCIE = RuntimeInfo("10.13.0.35", "NVIDIA A100-PCIE-40GB", (8, 0), "Linux-x86_64")
RTX4090 = RuntimeInfo("10.13.0.35", "NVIDIA GeForce RTX 4090", (8, 9), "Linux-x86_64")


@pytest.fixture()
def folder(tmp_path):
    return make_export_folder(tmp_path / "exp")


@pytest.fixture()
def manifest(folder):
    return read_manifest(folder)


def plan_for(manifest, name="joint_decoder_1mem", **settings):
    return plan_build(name, manifest.graphs[name], objects_range(manifest), BuildSettings(**settings))


def entry_for(plan, built_with=A100, data=b"engine"):
    return EngineEntry(plan, built_with, "0" * 64, len(data), cache_key(plan, built_with))


# --------------------------------------------------------------------------- settings and plans


@pytest.mark.parametrize("bad, field", [({"precision": "int8"}, "precision"),
                                        ({"workspace_mib": 0}, "workspace_mib"),
                                        ({"opt_level": 6}, "opt_level"), ({"opt_level": -1}, "opt_level")])
def test_settings_reject_bad_values_naming_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        BuildSettings(**bad)


def test_fp16_plan_sets_precision_constraints_and_pins_layernorm(manifest):
    plan = plan_for(manifest)
    assert plan.builder_flags == ("FP16", "OBEY_PRECISION_CONSTRAINTS")
    assert plan.cleared_flags == ()
    assert plan.float32_layer_types == ("NORMALIZATION",)
    assert plan.engine_file == "joint_decoder_1mem.fp16.engine"
    assert plan.onnx_sha256 == manifest.graphs["joint_decoder_1mem"].sha256
    assert "LayerNorm in fp32" in plan.compute


def test_aggregate_is_a_float32_engine_even_in_fp16(manifest):
    plan = plan_for(manifest, "aggregate")
    assert "FP16" not in plan.builder_flags and plan.cleared_flags == ("TF32",)
    assert plan.float32_layer_types == () and plan.compute == "fp32"
    assert plan.precision == "fp16"  # it belongs to the fp16 engine set
    assert plan.engine_file == "aggregate.fp16.engine"


def test_fp32_plan_has_no_fp16_and_no_tf32(manifest):
    plan = plan_for(manifest, precision="fp32")
    assert plan.builder_flags == () and plan.cleared_flags == ("TF32",) and plan.float32_layer_types == ()
    assert plan.engine_file == "joint_decoder_1mem.fp32.engine"


def test_compatibility_settings_reach_the_plan(manifest):
    plan = plan_for(manifest, hardware_compatible=True, version_compatible=True, workspace_mib=2048,
                    opt_level=5)
    assert "VERSION_COMPATIBLE" in plan.builder_flags
    assert plan.hardware_compatibility == "ampere_plus"
    assert (plan.workspace_mib, plan.opt_level) == (2048, 5)


# --------------------------------------------------------------------------- profiles


def test_objects_range_is_1_min2max_max(manifest):
    assert objects_range(manifest) == (1, 2, 4)
    assert objects_range(dataclasses.replace(manifest, max_objects=1)) == (1, 1, 1)


def test_profile_has_each_object_input_by_name(manifest):
    profile = plan_profile(manifest.graphs["joint_decoder_1mem"], (1, 2, 4))
    assert profile == {"memory_first": ShapeRange((1, 32, 192), (2, 32, 192), (4, 32, 192))}
    assert plan_profile(manifest.graphs["aggregate"], (1, 2, 4)) == {
        "prob": ShapeRange((1, 1, 32, 48), (2, 1, 32, 48), (4, 1, 32, 48))}
    assert plan_profile(manifest.graphs["query_encoder"], (1, 2, 4)) == {}  # static: no profile


def test_profile_rejects_an_inconsistent_range(manifest):
    with pytest.raises(ValueError, match="min <= opt <= max"):
        plan_profile(manifest.graphs["aggregate"], (1, 3, 2))


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """A real export (tiny ViT, L=1, token refinement) at 32x48 with up to 3 objects."""
    pytest.importorskip("torch")
    from simvos_trt.config import SimVOSConfig, preset
    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.model import random_model

    config = SimVOSConfig(**{**preset("T").to_dict(), "train_grid": preset("T").train_grid, "layer_index": 1})
    out = tmp_path_factory.mktemp("tiny") / "exp"
    export_folder(random_model(config, seed=1), out, ExportSettings(32, 48, max_objects=3),
                  checkpoint={"kind": "random", "path": None, "sha256": "random"})
    return out


def test_profiles_of_a_real_export(tiny_export):
    manifest = read_manifest(tiny_export)
    C, M, N = manifest.config.embed_dim, manifest.memory_tokens, 2 * 3
    expect = {"query_encoder": {}, "memory_encoder": {"masks": (1, 32, 48)},
              "joint_decoder_1mem": {"memory_first": (M, C)},
              "joint_decoder_2mem": {"memory_first": (M, C), "memory_prev": (M, C)},
              "aggregate": {"prob": (1, 32, 48)}}
    assert set(manifest.graphs) == set(expect)
    for name, inputs in expect.items():
        plan = plan_for(manifest, name)
        assert set(plan.profile) == set(inputs), name
        for tensor, rest in inputs.items():
            assert plan.profile[tensor] == ShapeRange((1, *rest), (2, *rest), (3, *rest)), (name, tensor)
    assert manifest.graphs["joint_decoder_1mem"].inputs[0].shape == (1, N, C)  # the query stays static


# --------------------------------------------------------------------------- cache keys


def test_cache_key_is_stable(manifest):
    plan = plan_for(manifest)
    assert cache_key(plan, A100) == cache_key(plan_for(manifest), A100)
    reordered = dataclasses.replace(plan, profile=dict(reversed(list(plan.profile.items()))))
    assert cache_key(reordered, A100) == cache_key(plan, A100)
    assert len(cache_key(plan, A100)) == 64


PLAN_CHANGES = {"onnx_sha256": "f" * 64, "precision": "fp32", "builder_flags": ("FP16",),
                "cleared_flags": ("TF32",), "float32_layer_types": (),
                "hardware_compatibility": "ampere_plus", "version_compatible": True, "workspace_mib": 1024,
                "opt_level": 5, "graph": "joint_decoder_2mem",
                "profile": {"memory_first": ShapeRange((1, 32, 192), (2, 32, 192), (8, 32, 192))}}
RUNTIME_CHANGES = {"trt_version": "10.14.1.48", "gpu_name": "NVIDIA A100-PCIE-40GB",
                   "compute_capability": (9, 0), "platform": "Linux-aarch64"}


@pytest.mark.parametrize("field, value", PLAN_CHANGES.items())
def test_cache_key_changes_with_every_plan_field(manifest, field, value):
    plan = plan_for(manifest)
    assert cache_key(dataclasses.replace(plan, **{field: value}), A100) != cache_key(plan, A100)


@pytest.mark.parametrize("field, value", RUNTIME_CHANGES.items())
def test_cache_key_changes_with_every_runtime_field(manifest, field, value):
    plan = plan_for(manifest)
    assert cache_key(plan, dataclasses.replace(A100, **{field: value})) != cache_key(plan, A100)


def test_every_plan_field_is_covered_by_the_key_tests():
    fields = {f.name for f in dataclasses.fields(BuildPlan)}
    assert fields - {"onnx_file"} == set(PLAN_CHANGES)  # onnx_file is named by the graph (and hashed)
    assert {f.name for f in dataclasses.fields(RuntimeInfo)} == set(RUNTIME_CHANGES)


def test_reuse_needs_the_same_key_and_an_intact_file(folder, manifest):
    plan = plan_for(manifest)
    path = folder / plan.engine_file
    path.write_bytes(b"engine")
    entry = dataclasses.replace(entry_for(plan), sha256=sha256_file(path))
    assert is_reusable(folder, entry, cache_key(plan, A100))
    assert not is_reusable(folder, entry, cache_key(plan, T4))
    path.write_bytes(b"tampered")
    assert not is_reusable(folder, entry, cache_key(plan, A100))


# --------------------------------------------------------------------------- compatibility


def test_same_gpu_and_tensorrt_is_compatible(manifest):
    assert compatibility(entry_for(plan_for(manifest)), A100) is None


def test_other_compute_capability_is_refused(manifest):
    reason = compatibility(entry_for(plan_for(manifest)), T4)
    assert reason is not None and "compute capability 8.0" in reason
    assert "Tesla T4" in reason and "7.5" in reason


def test_other_gpu_model_with_the_same_compute_capability_is_refused(manifest):
    reason = compatibility(entry_for(plan_for(manifest)), A100_PCIE)
    assert reason is not None and "NVIDIA A100-PCIE-40GB" in reason and "hardware-compatible" in reason


def test_other_tensorrt_version_is_refused_unless_version_compatible(manifest):
    newer = dataclasses.replace(A100, trt_version="10.14.1.48")
    reason = compatibility(entry_for(plan_for(manifest)), newer)
    assert reason is not None and "10.13.0.35" in reason and "10.14.1.48" in reason
    assert compatibility(entry_for(plan_for(manifest, version_compatible=True)), newer) is None
    assert compatibility(entry_for(plan_for(manifest, version_compatible=True)),
                         dataclasses.replace(A100, trt_version="11.0.0.1")) is None


def test_version_compatible_engine_does_not_run_on_an_older_tensorrt(manifest):
    older = dataclasses.replace(A100, trt_version="10.9.0.34")  # 10.9 < 10.13 numerically, not as text
    reason = compatibility(entry_for(plan_for(manifest, version_compatible=True)), older)
    assert reason is not None and "later TensorRT only" in reason


def test_hardware_compatible_engine_runs_on_other_ampere_plus_gpus_only(manifest):
    entry = entry_for(plan_for(manifest, hardware_compatible=True))
    assert compatibility(entry, RTX4090) is None
    assert compatibility(entry, A100_PCIE) is None
    reason = compatibility(entry, T4)
    assert reason is not None and "Ampere" in reason and "7.5" in reason


def test_hardware_compatible_engine_still_needs_the_same_tensorrt(manifest):
    entry = entry_for(plan_for(manifest, hardware_compatible=True))
    reason = compatibility(entry, dataclasses.replace(RTX4090, trt_version="10.14.1.48"))
    assert reason is not None and "TensorRT" in reason


def test_other_platform_is_refused_and_reasons_add_up(manifest):
    other = RuntimeInfo("10.14.1.48", "Tesla T4", (7, 5), "Linux-aarch64")
    reason = compatibility(entry_for(plan_for(manifest)), other)
    assert reason is not None and "Linux-aarch64" in reason and reason.count(";") == 2


def test_rebuild_command():
    assert rebuild_command("engines/BS 480") == "simvos-build 'engines/BS 480' --force"
    assert rebuild_command("e", "fp32") == "simvos-build e --precision fp32 --force"
    assert rebuild_command("e", force=False) == "simvos-build e"


# --------------------------------------------------------------------------- manifest records


def built_entry(folder, manifest, name, runtime=A100, **settings):
    plan = plan_for(manifest, name, **settings)
    path = folder / plan.engine_file
    path.write_bytes(f"engine {name}".encode())
    return EngineEntry(plan, runtime, sha256_file(path), path.stat().st_size, cache_key(plan, runtime),
                       float32_layers=2, build_seconds=1.5, created="2026-01-01T00:00:00+00:00")


def test_record_engines_round_trip(folder, manifest):
    before = json.loads((folder / MANIFEST).read_text())
    entries = [built_entry(folder, manifest, n) for n in ("joint_decoder_1mem", "aggregate")]
    record_engines(folder, entries)
    record_engines(folder, [built_entry(folder, manifest, "aggregate", precision="fp32")])
    after = read_manifest(folder, verify=True)  # the ONNX sha256s still verify
    for e in entries:
        assert EngineEntry.from_dict(after.graphs[e.plan.graph].engines["fp16"]) == e
    assert set(after.graphs["aggregate"].engines) == {"fp16", "fp32"}
    assert after.graphs["query_encoder"].engines == {}
    raw = json.loads((folder / MANIFEST).read_text())
    for g in raw["graphs"].values():
        g.pop("engines")
    for g in before["graphs"].values():
        g.pop("engines")
    assert raw == before  # nothing else changed
    assert not list(folder.glob(f".{MANIFEST}.*"))  # no temporary file left


def test_record_engines_refuses_an_unknown_graph(folder, manifest):
    entry = built_entry(folder, manifest, "aggregate")
    bogus = dataclasses.replace(entry, plan=dataclasses.replace(entry.plan, graph="nope"))
    with pytest.raises(ManifestError, match="no graph 'nope'"):
        record_engines(folder, [bogus])


def test_invalid_entry_says_to_rebuild():
    with pytest.raises(EngineError, match="simvos-build --force"):
        EngineEntry.from_dict({"file": "x.engine"})


def test_check_engine_accepts_a_matching_engine(folder, manifest):
    entry = built_entry(folder, manifest, "joint_decoder_1mem")
    record_engines(folder, [entry])
    assert check_engine(folder, "joint_decoder_1mem", "fp16", A100) == (entry, folder / entry.file)


def test_check_engine_refuses_another_gpu_with_the_rebuild_command(folder, manifest):
    record_engines(folder, [built_entry(folder, manifest, "joint_decoder_1mem")])
    with pytest.raises(EngineCompatibilityError) as info:
        check_engine(folder, "joint_decoder_1mem", "fp16", T4)
    message = str(info.value)
    assert "compute capability 8.0" in message and "Tesla T4" in message
    assert f"simvos-build {folder} --force" in message


def test_check_engine_missing_entry_file_or_corruption(folder, manifest):
    missing = f"no fp16 engine for aggregate; build it with: simvos-build {folder}$"
    with pytest.raises(EngineError, match=missing):
        check_engine(folder, "aggregate", "fp16", A100)
    entry = built_entry(folder, manifest, "aggregate")
    record_engines(folder, [entry])
    (folder / entry.file).write_bytes(b"corrupted")
    with pytest.raises(EngineError, match="does not match the sha256.*--force"):
        check_engine(folder, "aggregate", "fp16", A100)
    (folder / entry.file).unlink()
    with pytest.raises(EngineError, match="is missing.*--force"):
        check_engine(folder, "aggregate", "fp16", A100)
    with pytest.raises(ManifestError, match="no graph 'nope'"):
        check_engine(folder, "nope", "fp16", A100)


def test_check_engine_refuses_a_stale_engine(folder, manifest):
    entry = built_entry(folder, manifest, "aggregate")
    stale = dataclasses.replace(entry, plan=dataclasses.replace(entry.plan, onnx_sha256="0" * 64))
    record_engines(folder, [stale])
    with pytest.raises(EngineError, match="stale.*--force"):
        check_engine(folder, "aggregate", "fp16", A100)
