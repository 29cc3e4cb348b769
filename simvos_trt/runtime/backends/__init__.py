"""Runtime backends: the same graph contract (``Backend.run``) over ONNX Runtime, PyTorch and TensorRT,
made by ``create_backend``."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from ...errors import BackendError, InputError, MissingDependencyError
from ...manifest import Manifest
from .base import MAX_IDS, Backend, Handle, check_inputs

log = logging.getLogger(__name__)

#: The backends, and the options each understands (``auto`` passes each backend its own).
OPTIONS = {"onnxruntime": frozenset({"providers", "threads", "io_binding"}),
           "torch": frozenset({"model", "device", "compile"}),
           "tensorrt": frozenset({"device", "cuda_graphs", "max_buffers", "graphs"})}
BACKENDS = tuple(OPTIONS)
AUTO = "auto"

__all__ = ["AUTO", "BACKENDS", "MAX_IDS", "Backend", "BackendError", "Handle", "backend_options", "check_inputs",
           "create_backend", "unavailable_reason"]


def known_options(name: str) -> frozenset[str] | None:
    """The options backend ``name`` takes (``auto``: ONNX Runtime's and TensorRT's); None for an unknown name."""
    if name == AUTO:
        return (OPTIONS["onnxruntime"] | OPTIONS["tensorrt"]) - {"graphs"}
    return OPTIONS.get(name)


def backend_options(name: str, **options: Any) -> dict[str, Any]:
    """Of ``options``, those given (not None) that backend ``name`` takes: a tool's settings for any backend."""
    known = known_options(name) or frozenset()
    return {k: v for k, v in options.items() if v is not None and k in known}


def unavailable_reason(name: str, folder: str | Path = ".", manifest: Manifest | None = None,
                       device: int = 0) -> str | None:
    """Why backend ``name`` cannot run here (None if it can): a missing library or GPU, or, given the
    export's ``manifest``, TensorRT engines missing or built for another GPU or library."""
    if name == "tensorrt":
        return _tensorrt_problem(folder, manifest, device)[0]
    module, extra = ("onnxruntime", "") if name == "onnxruntime" else ("torch", "[torch]")
    if importlib.util.find_spec(module) is None:
        return f"the {name} backend needs {module}, which is not installed: pip install 'simvos-trt{extra}'"
    return None


def _tensorrt_problem(folder: str | Path, manifest: Manifest | None, device: int) -> tuple[str | None, Any]:
    """(why TensorRT cannot run the export here or None, the library and GPU here or None)."""
    from .trt import engine_library, engine_problem, require_runtime

    try:
        gpu = require_runtime(device, engine_library(manifest) if manifest is not None else "auto")
    except (MissingDependencyError, BackendError) as exc:
        return str(exc), None
    return (None if manifest is None else engine_problem(folder, manifest, gpu)), gpu


def create_backend(name: str, folder: str | Path, manifest: Manifest, **options: Any) -> Backend:
    """A backend (not yet opened) over the export ``folder``: ``name`` is one of ``BACKENDS`` or ``auto``
    (TensorRT where ``unavailable_reason`` finds none, else ONNX Runtime, each given its own ``options``).
    Raises MissingDependencyError or DeviceUnavailableError when it cannot run here, InputError for an unknown
    name or option."""
    known = known_options(name)
    if known is None:
        raise InputError(f"unknown backend {name!r}; expected one of {[AUTO, *BACKENDS]}")
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown option {', '.join(unknown)} for the {name} backend; it takes "
                           f"{', '.join(sorted(known))}")
    gpu = None
    if name == AUTO:
        reason, gpu = _tensorrt_problem(folder, manifest, options.get("device", 0))
        if reason is not None:  # a warning when only the engines are missing
            log.log(logging.WARNING if gpu is not None else logging.INFO,
                    "backend auto: not using TensorRT (%s); using ONNX Runtime", reason)
        name = "tensorrt" if reason is None else "onnxruntime"
        log.info("backend auto -> %s (ignoring the options %s)", name, sorted(set(options) - OPTIONS[name]))
        options = {k: v for k, v in options.items() if k in OPTIONS[name]}
    if name == "onnxruntime":
        from .ort import OrtBackend

        return OrtBackend(folder, manifest, **options)
    if name == "torch":
        from .pytorch import TorchBackend

        return TorchBackend(folder, manifest, **options)
    from .trt import TensorRTBackend, engine_library, require_runtime

    if gpu is None:
        gpu = require_runtime(options.get("device", 0), engine_library(manifest))
    return TensorRTBackend(folder, manifest, gpu=gpu, **options)
