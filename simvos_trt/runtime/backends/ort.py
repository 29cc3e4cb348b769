"""The ONNX Runtime backend: one InferenceSession per graph; numpy handles on the CPU, ``OrtValue``
handles bound on the device (IO binding) with a device provider. Design: docs/runtime.md."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import MissingDependencyError, check_int
from ...manifest import Manifest, ManifestError
from .base import Backend, Handle
from .resample import Resample

log = logging.getLogger(__name__)

#: Providers tried in this order when ``providers`` is not given (those available); not TensorRT's.
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
_DEVICE_OF_PROVIDER = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool"}


class OrtBackend(Backend):
    """ONNX Runtime over the export folder's ``*.onnx`` graphs with ``providers`` by preference (default: those
    of ``DEFAULT_PROVIDERS`` available), ``threads`` intra-op threads per session (default: all cores), and
    ``OrtValue`` handles bound with ``io_binding`` (default: with a device provider; on the CPU, for tests)."""

    name = "onnxruntime"

    def __init__(self, folder: str | Path, manifest: Manifest, *, providers: Sequence[str] | None = None,
                 threads: int | None = None, io_binding: bool | None = None) -> None:
        super().__init__(folder, manifest)
        if threads is not None:
            check_int("threads", threads, 1)
        self._providers = list(providers) if providers is not None else None
        self._threads, self._io_binding, self._device = threads, io_binding, "cpu"
        self._ort: Any = None
        self._sessions: dict[str, Any] = {}
        self._resamplers: dict[Resample, Any] = {}
        self._options: Any = None
        self._used: list[str] = []
        self._outputs: dict[str, list[str]] = {}

    def _open(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise MissingDependencyError("the ONNX Runtime backend needs onnxruntime, a dependency of simvos-trt that "
                                         "is not installed; install it with: pip install onnxruntime (onnxruntime-gpu "
                                         "on an NVIDIA GPU)") from err
        self._ort = ort
        available = ort.get_available_providers()
        providers = self._providers or [p for p in DEFAULT_PROVIDERS if p in available]
        self._device = _DEVICE_OF_PROVIDER.get(providers[0], "cpu")
        if self._io_binding is None:
            self._io_binding = self._device != "cpu"
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # Spinning threads of one session steal the cores of the next (docs/runtime.md).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self._threads:
            opts.intra_op_num_threads = self._threads
        self._options, self._used = opts, providers
        for name, entry in self.manifest.graphs.items():
            session = self._sessions[name] = ort.InferenceSession(str(self.folder / entry.file), opts,
                                                                  providers=providers)
            found = [(t.name, tuple(t.shape)) for t in (*session.get_inputs(), *session.get_outputs())]
            if found != [(t.name, t.shape) for t in (*entry.inputs, *entry.outputs)]:
                raise ManifestError(f"{self.folder}: {entry.file} has the tensors {found}, not those its manifest "
                                    "records: the manifest was edited or belongs to another export; export again")
            self._outputs[name] = [t.name for t in entry.outputs]
        log.info("onnxruntime %s, providers %s, io binding %s", ort.__version__, providers, self._io_binding)

    def _close(self) -> None:
        self._sessions.clear()
        self._resamplers.clear()

    def _run(self, graph: str, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        return self._run_session(self._sessions[graph], self._outputs[graph], inputs)

    def _resample(self, plan: Resample, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        """The resample graph where the maps are (a session per size); on the CPU OpenCV's resize is faster."""
        if not self._io_binding:
            return super()._resample(plan, inputs)
        session = self._resamplers.get(plan)
        if session is None:
            session = self._ort.InferenceSession(plan.onnx_model(), self._options, providers=self._used)
            session = self._resamplers.setdefault(plan, session)  # a thread that came first wins
        return self._run_session(session, [t.name for t in plan.entry.outputs], inputs)

    def _run_session(self, session: Any, names: list[str], inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        if not self._io_binding:
            return dict(zip(names, session.run(names, dict(inputs)), strict=True))
        binding = session.io_binding()
        for key, value in inputs.items():
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(key, value)
            else:
                binding.bind_ortvalue_input(key, value)
        for key in names:
            binding.bind_output(key, self._device, 0)
        session.run_with_iobinding(binding)
        return dict(zip(names, binding.get_outputs(), strict=True))

    def to_host(self, handle: Handle) -> np.ndarray:
        return handle if isinstance(handle, np.ndarray) else handle.numpy()

    def from_host(self, array: np.ndarray) -> Handle:
        array = np.ascontiguousarray(array)
        if not self._io_binding:
            return array
        return self._ort.OrtValue.ortvalue_from_numpy(array, self._device, 0)

    def dtype_and_shape(self, handle: Handle) -> tuple[str, tuple[int, ...]]:
        if isinstance(handle, np.ndarray):
            return handle.dtype.name, handle.shape
        return _ORT_DTYPES.get(handle.data_type(), handle.data_type()), tuple(handle.shape())
