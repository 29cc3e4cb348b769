"""Runtime backends: the same graph contract over ONNX Runtime, PyTorch and TensorRT.

    backend = create_backend("onnxruntime", folder, read_manifest(folder), threads=2)
    with backend:
        out = backend.run("query_encoder", {"frame": frame, "padding": padding})

Backend modules import their heavy dependency only when opened.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ...errors import BackendError, MissingDependencyError
from ...manifest import Manifest
from .base import MAX_IDS, REQUIRED_GRAPHS, Backend, Handle, check_inputs

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
#: Options only one backend understands: ``auto`` passes each backend its own.
TENSORRT_OPTIONS = frozenset({"device", "cuda_graphs", "max_buffers"})
ORT_OPTIONS = frozenset({"providers", "threads", "io_binding"})
_OPTIONS = {"auto": ORT_OPTIONS | TENSORRT_OPTIONS, "onnxruntime": ORT_OPTIONS, "torch": frozenset({"model", "device"}),
            "tensorrt": TENSORRT_OPTIONS | {"graphs"}}

__all__ = ["BACKENDS", "MAX_IDS", "REQUIRED_GRAPHS", "Backend", "BackendError", "Handle", "check_inputs",
           "create_backend"]


def create_backend(name: str, folder: str | Path, manifest: Manifest, **options: Any) -> Backend:
    """A backend (not yet opened) over the export ``folder``.

    Args:
        name: ``auto`` (TensorRT when TensorRT, cuda-python, a GPU and engines built for it
            are here, else ONNX Runtime; the reason is logged), ``onnxruntime``, ``torch``
            or ``tensorrt``.
        options: passed to the backend's constructor (``providers``, ``threads``,
            ``io_binding`` for ONNX Runtime; ``model``, ``device`` for torch; ``device``,
            ``cuda_graphs``, ``max_buffers`` for TensorRT). With ``auto`` the
            options of the backend not chosen are dropped.
    Raises:
        MissingDependencyError, BackendError: ``tensorrt`` without TensorRT (or TensorRT-RTX),
            cuda-python or an NVIDIA GPU (the message names what to install); an unknown
            backend or option.
    """
    if name not in _OPTIONS:
        raise BackendError(f"unknown backend {name!r}; expected one of {list(BACKENDS)}")
    unknown = sorted(set(options) - _OPTIONS[name])
    if unknown:
        raise BackendError(f"unknown option {', '.join(unknown)} for the {name} backend; it takes "
                           f"{', '.join(sorted(_OPTIONS[name]))}")
    if name == "auto":
        name = "tensorrt" if _tensorrt_usable(folder, manifest, options) else "onnxruntime"
        other = ORT_OPTIONS if name == "tensorrt" else TENSORRT_OPTIONS
        if set(options) & other:
            log.info("backend auto -> %s: ignoring the options %s", name, sorted(set(options) & other))
        options = {k: v for k, v in options.items() if k not in other}
        log.info("backend auto -> %s", name)
    if name == "onnxruntime":
        from .ort import OrtBackend

        return OrtBackend(folder, manifest, **options)
    if name == "torch":
        from .pytorch import TorchBackend

        return TorchBackend(folder, manifest, **options)
    if name == "tensorrt":
        from .trt import TensorRTBackend, engine_library, require_runtime

        require_runtime(options.get("device", 0), engine_library(manifest))
        return TensorRTBackend(folder, manifest, **options)
    raise AssertionError(f"backend {name} has options but no constructor")


def _tensorrt_usable(folder: str | Path, manifest: Manifest, options: dict[str, Any]) -> bool:
    """Whether ``auto`` should pick TensorRT; logs why not (a warning when only the engines are missing)."""
    from .trt import engine_library, engine_problem, require_runtime

    try:
        device = require_runtime(options.get("device", 0), engine_library(manifest))
    except (MissingDependencyError, BackendError) as exc:
        log.info("backend auto: not using TensorRT (%s); using ONNX Runtime", exc)
        return False
    problem = engine_problem(folder, manifest, device)
    if problem is not None:
        log.warning("backend auto: not using TensorRT: %s; using ONNX Runtime", problem)
        return False
    return True
