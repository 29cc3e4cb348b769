"""The CUDA runtime through cuda-python: checked calls and the GPU's identity."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ..errors import BackendError, DeviceUnavailableError, MissingDependencyError

log = logging.getLogger(__name__)

CUDA_HINT = "pip install 'simvos-trt[gpu]' on a machine with an NVIDIA GPU and driver"


def load_cudart(purpose: str = "querying the GPU") -> Any:
    """cuda-python's runtime bindings (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependencyError(f"{purpose} needs cuda-python (cuda.bindings); install it with: {CUDA_HINT}")


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class Cuda:
    """Checked CUDA runtime calls: ``call("cudaMalloc", n)`` returns the result or raises BackendError."""

    def __init__(self, cudart: Any | None = None) -> None:
        self.rt = cudart if cudart is not None else load_cudart()

    def call(self, name: str, *args: Any) -> Any:
        result = getattr(self.rt, name)(*args)
        err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(err) != 0:
            raise BackendError(self.error_text(name, err))
        return values[0] if len(values) == 1 else (values or None)

    def error_text(self, call: str, err: Any) -> str:
        name, text = getattr(err, "name", None), ""
        try:
            name = _text(self.rt.cudaGetErrorName(err)[1]) or name
            text = _text(self.rt.cudaGetErrorString(err)[1])
        except Exception as exc:  # describing an error must not raise another
            log.debug("cannot describe CUDA error %s: %s", err, exc)
        hint = ""
        if name == "cudaErrorMemoryAllocation":
            hint = "; out of device memory: export with a smaller --max-objects or free the GPU"
        elif name in ("cudaErrorNoDevice", "cudaErrorInsufficientDriver"):
            hint = "; engines run on an NVIDIA GPU with a current driver"
        return f"CUDA call {call} failed with {name or 'error'} ({int(err)}){': ' + text if text else ''}{hint}"

    def quietly(self, name: str, *args: Any) -> None:
        """``call`` for clean-up: a failure is logged, not raised (the other resources still get freed)."""
        try:
            self.call(name, *args)
        except BackendError as exc:
            log.warning("CUDA clean-up: %s", exc)

    def memcpy(self, dst: int, src: int, nbytes: int, kind: str, stream: Any) -> None:
        if nbytes:
            self.call("cudaMemcpyAsync", dst, src, nbytes, getattr(self.rt.cudaMemcpyKind, kind), stream)

    def gpu(self, device: int = 0) -> tuple[str, tuple[int, int]]:
        """(name, compute capability) of CUDA device ``device``."""
        try:
            count = int(self.call("cudaGetDeviceCount"))
        except BackendError as exc:
            raise DeviceUnavailableError(f"no usable NVIDIA GPU here ({exc})") from exc
        if not 0 <= device < count:
            raise DeviceUnavailableError(f"no usable NVIDIA GPU: CUDA device {device} requested, {count} visible "
                               "(check CUDA_VISIBLE_DEVICES)")
        props = self.call("cudaGetDeviceProperties", device)
        name = _text(props.name).split("\0", 1)[0].strip()
        return name, (int(props.major), int(props.minor))
