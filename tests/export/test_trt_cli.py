"""simvos-build: exit codes and messages without TensorRT or a GPU, output with a fake TensorRT."""

from __future__ import annotations

import json
import sys
import types

import pytest
from test_trt_support import install_fakes, make_export_folder

from simvos_trt.cli.build import EXIT_MISSING, main


@pytest.fixture()
def folder(tmp_path):
    return make_export_folder(tmp_path / "exp")


def test_help_works_without_tensorrt(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--precision", "--workspace", "--opt-level", "--no-hardware-compatible",
                   "--no-version-compatible", "--force", "--graphs", "--json"):
        assert option in out


def test_without_tensorrt_exits_3_naming_the_extra(folder, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main([str(folder)]) == EXIT_MISSING == 3
    err = capsys.readouterr().err
    assert "needs TensorRT 10, which is not installed" in err
    assert "pip install 'simvos-trt[gpu]' on a machine with an NVIDIA GPU" in err


def test_a_wrong_folder_is_named_before_tensorrt_is_looked_for(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    (tmp_path / "file").write_text("x")
    for path, message in ((tmp_path / "nonexistent", "does not exist; run simvos-export"),
                          (tmp_path / "file", "is a file, not an export folder")):
        assert main([str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "TensorRT" not in err


def test_with_only_the_type_stubs_exits_3(folder, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # what tensorrt-stubs gives
    assert main([str(folder)]) == 3
    assert "only its type stubs (tensorrt-stubs) are installed" in capsys.readouterr().err


def test_without_a_gpu_exits_3(folder, capsys, monkeypatch):
    install_fakes(monkeypatch, gpu=None)
    assert main([str(folder)]) == 3
    err = capsys.readouterr().err
    assert "no usable NVIDIA GPU" in err and "pip install 'simvos-trt[gpu]'" in err


def test_on_this_machine_exits_3_unless_tensorrt_and_a_gpu_are_here(folder, capsys):
    from simvos_trt.errors import MissingDependencyError
    from simvos_trt.export.trt_env import GPUUnavailableError, runtime_info

    try:
        runtime_info()
    except (MissingDependencyError, GPUUnavailableError):
        assert main([str(folder), "--graphs", "aggregate"]) == 3
        assert "simvos-trt[gpu]" in capsys.readouterr().err
    else:
        pytest.skip("TensorRT and a GPU are present: test_trt_gpu.py covers this machine")


def test_builds_with_a_table_then_reuses(folder, capsys, monkeypatch):
    install_fakes(monkeypatch)
    assert main([str(folder), "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "fp16 engines with TensorRT 10.13.0.35 on NVIDIA A100-SXM4-80GB (compute capability 8.0" in out
    assert "joint_decoder_1mem   building ..." in out
    assert "fp16, LayerNorm in fp32" in out and "joint_decoder_1mem.fp16.engine" in out
    assert "3 built, 0 reused" in out
    assert main([str(folder), "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "0 built, 3 reused" in out and out.count("cached") == 3


def test_json_output(folder, capsys, monkeypatch):
    install_fakes(monkeypatch)
    argv = [str(folder), "--no-verify", "--json", "--precision", "fp32", "--graphs", "aggregate", "query_encoder"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runtime"]["gpu_name"] == "NVIDIA A100-SXM4-80GB"
    assert report["settings"]["precision"] == "fp32"
    assert {e["compute"] for e in report["engines"]} == {"fp32"}
    assert [(e["graph"], e["status"], e["file"]) for e in report["engines"]] == [
        ("aggregate", "built", "aggregate.fp32.engine"),
        ("query_encoder", "built", "query_encoder.fp32.engine")]
    assert all(len(e["cache_key"]) == 64 for e in report["engines"])


def test_options_reach_the_build(folder, monkeypatch):
    trt = install_fakes(monkeypatch)
    assert main([str(folder), "--no-verify", "--workspace", "256", "--opt-level", "1", "--hardware-compatible",
                 "--version-compatible", "--graphs", "joint_decoder_1mem"]) == 0
    (build,) = trt.builds
    config = build["config"]
    assert config.pool == {trt.MemoryPoolType.WORKSPACE: 256 << 20} and config.builder_optimization_level == 1
    assert config.hardware_compatibility_level is trt.HardwareCompatibilityLevel.AMPERE_PLUS
    assert "VERSION_COMPATIBLE" in config.flags


def test_force_rebuilds(folder, capsys, monkeypatch):
    install_fakes(monkeypatch)
    assert main([str(folder), "--no-verify", "--graphs", "aggregate"]) == 0
    assert main([str(folder), "--no-verify", "--graphs", "aggregate", "--force"]) == 0
    assert capsys.readouterr().out.count("1 built, 0 reused") == 2


@pytest.mark.parametrize("argv, message", [
    (["--workspace", "0"], "workspace_mib: 0 MiB"),
    (["--graphs", "nope"], "--graphs ['nope']"),
])
def test_bad_options_exit_2(folder, capsys, monkeypatch, argv, message):
    install_fakes(monkeypatch)
    assert main([str(folder), *argv]) == 2
    assert message in capsys.readouterr().err


def test_bad_folder_exits_2(tmp_path, capsys, monkeypatch):
    install_fakes(monkeypatch)
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist; run simvos-export first" in capsys.readouterr().err


def test_opt_level_out_of_range_is_a_usage_error(folder):
    with pytest.raises(SystemExit) as info:
        main([str(folder), "--opt-level", "6"])
    assert info.value.code == 2
