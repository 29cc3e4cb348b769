"""Static checks of the TensorRT modules: mypy --strict against tensorrt-stubs, and lazy imports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["simvos_trt/export/trt_build.py", "simvos_trt/export/trt_env.py", "simvos_trt/export/engine_cache.py",
           "simvos_trt/cli/build.py", "simvos_trt/runtime/backends/trt.py", "simvos_trt/export/trt_verify.py",
           "simvos_trt/bench/acceptance.py"]
STUB_FILES = ["tensorrt/__init__.pyi", "tensorrt_bindings/__init__.pyi", "tensorrt_bindings/tensorrt.pyi"]


def test_importing_the_modules_imports_neither_tensorrt_nor_cuda_nor_torch():
    code = ("import sys, simvos_trt.cli.build, simvos_trt.export.trt_build, simvos_trt.export.trt_env, "
            "simvos_trt.runtime.backends.trt, simvos_trt.export.trt_verify, simvos_trt.bench.acceptance; "
            "print(sorted({'tensorrt', 'cuda', 'torch', 'onnx', 'onnxruntime'} & {m.split('.')[0] "
            "for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def fixed_stubs(dest: Path) -> Path:
    """Copy tensorrt-stubs to ``dest`` with the lines mypy cannot parse fixed; returns ``dest``.

    tensorrt-stubs 10.13 names some parameters ``in`` (a keyword) and puts a parameter
    without default after defaults in ``add_scale_nd``; and it ships no py.typed for
    ``tensorrt``, so mypy would not read it from site-packages anyway.
    """
    spec = util.find_spec("tensorrt_bindings")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    site = Path(list(spec.submodule_search_locations)[0]).parent
    for name in STUB_FILES:
        if not (site / name).is_file():
            pytest.skip(f"tensorrt-stubs file {name} not found in {site}")
        text = re.sub(r"\bin: ", "in_: ", (site / name).read_text())
        text = text.replace("power: Weights = None, channel_axis: int)",
                            "power: Weights = None, channel_axis: int = ...)")
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text)
    return dest


@pytest.mark.slow
def test_mypy_strict_against_tensorrt_stubs(tmp_path):
    pytest.importorskip("mypy")
    stubs = fixed_stubs(tmp_path / "stubs")
    env = {**os.environ, "MYPYPATH": str(stubs)}
    # --follow-imports=silent: the listed modules are checked strictly; the modules they import
    # (the runtime's backends bring in the torch model) are read for their types only.
    cmd = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--config-file", str(ROOT / "mypy.ini"),
           "--cache-dir", str(tmp_path / "cache"), *MODULES]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
