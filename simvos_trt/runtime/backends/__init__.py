"""Runtime backends: the same graph contract over ONNX Runtime, PyTorch and (later) TensorRT.

    backend = create_backend("onnxruntime", folder, read_manifest(folder), threads=2)
    with backend:
        out = backend.run("query_encoder", {"frame": frame, "padding": padding})

Backend modules import their heavy dependency only when opened.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from ...errors import MissingDependencyError
from ...manifest import Manifest
from .base import MAX_IDS, REQUIRED_GRAPHS, Backend, BackendError, Handle, check_inputs

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")

__all__ = ["BACKENDS", "MAX_IDS", "REQUIRED_GRAPHS", "Backend", "BackendError", "Handle", "check_inputs",
           "create_backend"]


def create_backend(name: str, folder: str | Path, manifest: Manifest, **options: Any) -> Backend:
    """A backend (not yet opened) over the export ``folder``.

    Args:
        name: ``auto`` (TensorRT when importable and usable, else ONNX Runtime),
            ``onnxruntime``, ``torch`` or ``tensorrt``.
        options: passed to the backend's constructor (``providers``, ``threads``,
            ``io_binding`` for ONNX Runtime; ``model``, ``device`` for torch).
    """
    if name == "auto":
        name = "tensorrt" if _tensorrt_usable(manifest) else "onnxruntime"
        log.info("backend auto -> %s", name)
    if name == "onnxruntime":
        from .ort import OrtBackend

        return OrtBackend(folder, manifest, **options)
    if name == "torch":
        from .pytorch import TorchBackend

        return TorchBackend(folder, manifest, **options)
    if name == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            raise MissingDependencyError(
                "the TensorRT backend needs the Python package 'tensorrt' and an NVIDIA GPU; "
                "install it with: pip install 'simvos-trt[gpu]' (or use backend='onnxruntime')")
        raise BackendError(
            "the TensorRT backend is not implemented yet: it comes with the TensorRT engine issue "
            "(simvos-build, extra 'gpu'); use backend='onnxruntime' (or 'auto') meanwhile")
    raise BackendError(f"unknown backend {name!r}; expected one of {list(BACKENDS)}")


def _tensorrt_usable(manifest: Manifest) -> bool:
    """Whether ``auto`` should pick TensorRT: never yet (the backend is not implemented)."""
    if importlib.util.find_spec("tensorrt") is not None:
        log.info("tensorrt is installed but the TensorRT backend is not implemented yet; using ONNX Runtime")
    return False
