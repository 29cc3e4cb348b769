"""TensorRT and the GPU, imported lazily and checked with messages that say what is missing.

Nothing here imports ``tensorrt`` or ``cuda`` at module import time (``simvos-build
--help`` and the pure-Python engine bookkeeping work without them). ``trt`` is a lazy
module in the style of Polygraphy's ``mod.lazy_import``: for mypy it is the real
``tensorrt`` (typed against tensorrt-stubs); at run time the first attribute access
imports it, or raises ``MissingDependencyError``.

Installing only ``tensorrt-stubs`` leaves a ``tensorrt`` folder holding ``.pyi`` files:
Python imports it as an empty namespace package, so "importable" is not "installed";
``require_tensorrt`` checks for the real bindings.
"""

from __future__ import annotations

import importlib
import platform
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError, SimVOSError
from .engine_cache import RuntimeInfo

__all__ = ["INSTALL_HINT", "GPUUnavailableError", "gpu_info", "host_platform", "require_tensorrt",
           "runtime_info", "trt"]

INSTALL_HINT = "pip install 'simvos-trt[gpu]' on a machine with an NVIDIA GPU"


class GPUUnavailableError(SimVOSError):
    """No usable NVIDIA GPU (no device, no driver, or a driver too old for the CUDA runtime)."""


def require_tensorrt() -> ModuleType:
    """The real ``tensorrt`` module; raises ``MissingDependencyError`` naming the fix otherwise."""
    try:
        module = importlib.import_module("tensorrt")
    except ImportError as exc:
        raise MissingDependencyError(
            f"building or loading TensorRT engines needs TensorRT 10, which is not installed ({exc}); "
            f"install it with: {INSTALL_HINT}") from exc
    if not hasattr(module, "Builder"):
        raise MissingDependencyError(
            "building or loading TensorRT engines needs TensorRT 10; only its type stubs (tensorrt-stubs) "
            f"are installed here; install it with: {INSTALL_HINT}")
    return module


class _LazyTensorRT:
    """``tensorrt``, imported (and checked) on first attribute access."""

    def __getattr__(self, name: str) -> Any:
        return getattr(require_tensorrt(), name)


if TYPE_CHECKING:
    import tensorrt as trt
else:
    trt = _LazyTensorRT()


def load_cudart(purpose: str = "querying the GPU") -> Any:
    """cuda-python's runtime bindings (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6).

    Raises MissingDependencyError naming ``purpose`` when cuda-python is missing.
    """
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependencyError(f"{purpose} needs cuda-python (cuda.bindings); install it with: "
                                 f"{INSTALL_HINT}")


def _check(cudart: Any, result: tuple[Any, ...], what: str) -> Any:
    err = result[0]
    if int(err) != 0:
        _, text = cudart.cudaGetErrorString(err)
        message = text.decode() if isinstance(text, bytes) else str(text)
        raise GPUUnavailableError(
            f"no usable NVIDIA GPU: {what} failed with {getattr(err, 'name', err)} ({message}); TensorRT "
            f"engines are built on the GPU that will run them: {INSTALL_HINT}")
    return result[1] if len(result) == 2 else result[1:]


def gpu_info(device: int = 0) -> tuple[str, tuple[int, int]]:
    """(name, compute capability) of CUDA device ``device``; raises GPUUnavailableError."""
    cudart = load_cudart()
    count = int(_check(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount"))
    if not 0 <= device < count:
        raise GPUUnavailableError(f"no usable NVIDIA GPU: CUDA device {device} requested, {count} visible "
                                  "(check CUDA_VISIBLE_DEVICES)")
    props = _check(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    raw = props.name
    name = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).split("\0", 1)[0].strip()
    return name, (int(props.major), int(props.minor))


def host_platform() -> str:
    return f"{platform.system()}-{platform.machine()}"


def runtime_info(device: int = 0) -> RuntimeInfo:
    """TensorRT version, GPU name and compute capability here; raises if either is missing."""
    version = str(require_tensorrt().__version__)
    name, cc = gpu_info(device)
    return RuntimeInfo(trt_version=version, gpu_name=name, compute_capability=cc, platform=host_platform())
