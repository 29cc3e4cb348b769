"""ONNX Runtime's symbolic shape inference (it keeps the ``objects`` axis through computed reshapes),
run in a temporary folder so its leftovers never land in the working folder (export/README.md)."""

from __future__ import annotations

import os
import tempfile
import threading

import onnx

from ..errors import ExportError

_CWD_LOCK = threading.Lock()


def infer_symbolic_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with value_info inferred by ONNX Runtime's symbolic shape inference; ExportError when a shape
    cannot be inferred, ImportError without onnxruntime or sympy."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    with _CWD_LOCK, tempfile.TemporaryDirectory(prefix="simvos-shapes-") as scratch:
        old = os.getcwd()
        os.chdir(scratch)
        try:
            return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
        except Exception as exc:
            if "Incomplete symbolic shape inference" in str(exc):
                raise ExportError(f"symbolic shape inference: {exc}") from exc
            raise
        finally:
            os.chdir(old)
