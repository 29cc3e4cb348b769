"""ONNX Runtime's symbolic shape inference, without its side effect on the working folder.

ONNX's own shape inference loses the ``objects`` axis after reshapes whose target shape
is computed; ONNX Runtime's symbolic inference carries it (``objects``, ``objects + 1``).
When that inference is incomplete, ONNX Runtime saves the half-inferred model as
``sym_shape_infer_temp.onnx`` (+ external data files) in the current folder before it
raises; here it runs inside a temporary folder, so nothing is left behind. The working
folder is process-wide, so calls are serialised by a lock (export and checks are
command-level operations, not run from several threads in practice).
"""

from __future__ import annotations

import os
import tempfile
import threading

import onnx

_CWD_LOCK = threading.Lock()


class IncompleteShapeInference(RuntimeError):
    """Some tensor's shape could not be inferred symbolically."""


def infer_symbolic_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with value_info inferred by ONNX Runtime's symbolic shape inference (needs sympy).

    Raises:
        IncompleteShapeInference: a shape could not be inferred.
        ImportError: onnxruntime or sympy is missing.
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    with _CWD_LOCK, tempfile.TemporaryDirectory(prefix="simvos-shapes-") as scratch:
        old = os.getcwd()
        os.chdir(scratch)
        try:
            return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
        except Exception as exc:
            if "Incomplete symbolic shape inference" in str(exc):
                raise IncompleteShapeInference(str(exc)) from exc
            raise
        finally:
            os.chdir(old)
