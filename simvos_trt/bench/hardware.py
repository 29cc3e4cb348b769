"""The machine a benchmark runs on: the stamp of every result file (host, CPU, cores, GPU, library
versions), device memory in use, GPU datasheet peaks (``data/gpu_peaks.json``) and the CPU's float32 GEMM
peak. The GPU is read through ``trt.cuda`` (cuda-python), else torch; None without a usable GPU."""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.util
import json
import logging
import os
import platform
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import SimVOSError
from ..manifest import Precision
from ..trt.cuda import Cuda

log = logging.getLogger(__name__)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _optional(name: str) -> Any:
    """The module ``name`` if it is installed and imports, else None."""
    try:
        return importlib.import_module(name) if importlib.util.find_spec(name) else None
    except ImportError:
        return None


def _cuda_torch() -> Any:
    """torch when it is installed and sees a CUDA GPU, else None."""
    torch = _optional("torch")
    return torch if torch is not None and torch.cuda.is_available() else None


def core_counts() -> dict[str, int | None]:
    """Logical, physical (psutil, if installed) and usable (CPU affinity) core counts."""
    psutil = _optional("psutil")
    physical = psutil.cpu_count(logical=False) if psutil else None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"logical": os.cpu_count(), "physical": physical, "usable": usable}


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries that decide the speed (None: not installed)."""
    found = {name: getattr(_optional(name), "__version__", None) for name in ("torch", "onnxruntime", "tensorrt")}
    return {"simvos_trt": __version__, "numpy": np.__version__, "python": platform.python_version(),
            **{name: None if v is None else str(v) for name, v in found.items()}}  # None for tensorrt-stubs alone


def gpu_name(device: int = 0) -> str | None:
    """The CUDA device's name, or None without a usable NVIDIA GPU (never raises)."""
    try:
        return Cuda().gpu(device)[0]
    except (SimVOSError, ImportError) as exc:
        log.debug("no GPU through cuda-python: %s", exc)
    torch = _cuda_torch()
    return str(torch.cuda.get_device_name(device)) if torch and device < torch.cuda.device_count() else None


def device_memory_mb(device: int = 0) -> float | None:
    """Device memory in use on the GPU now (all processes), in MiB; None without a GPU."""
    try:
        free, total = Cuda().call("cudaMemGetInfo")
        return float(total - free) / 2**20
    except (SimVOSError, ImportError) as exc:
        log.debug("no device memory through cuda-python: %s", exc)
    torch = _cuda_torch()
    if torch is None:
        return None
    free, total = torch.cuda.mem_get_info(device)
    return (total - free) / 2**20


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version from /proc/driver/nvidia/version, or None."""
    try:
        match = re.search(r"Kernel Module\s+(\S+)", Path("/proc/driver/nvidia/version").read_text())
    except OSError:
        return None
    return match.group(1) if match else None


def host_info() -> dict[str, Any]:
    """The stamp of a result file: host, CPU, cores, GPU, versions, date (UTC)."""
    return {"host": socket.gethostname(), "platform": f"{platform.system()}-{platform.machine()}",
            "cpu": cpu_model(), "cores": core_counts(), "gpu": gpu_name(),
            "versions": library_versions(),
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}


def machine(device: Any) -> dict[str, Any]:
    """``host_info`` with torch and timm, and on a CUDA ``device`` (a torch.device) the GPU, driver, CUDA, cuDNN
    and ``nvidia-smi``'s clocks and power limit (the GPU kit's stamp)."""
    import timm
    import torch

    info = {**host_info(), "torch": torch.__version__, "timm": timm.__version__, "device": str(device)}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, compute_capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                    gpu_memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), driver=nvidia_driver(), nvidia_smi=_nvidia_smi())
    return info


def _nvidia_smi() -> str | None:
    query = "name,driver_version,clocks.max.sm,clocks.max.memory,power.limit,temperature.gpu"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{query}: {out.stdout.strip()}"


@dataclass(frozen=True)
class GpuPeak:
    """Datasheet peak rates of one GPU model, TFLOP/s (dense, see gpu_peaks.json)."""

    name: str
    match: tuple[str, ...]  # regular expressions tried on the CUDA device name, case-insensitive
    fp16_tensor: float  # FP16 Tensor Core rate with FP16 accumulation (the roofline's upper bound)
    fp16_tensor_fp32_acc: float  # the same with FP32 accumulation (half of it on GeForce parts)
    fp32: float  # FP32 on the CUDA cores (non-tensor)
    source: str  # the datasheet or whitepaper each figure was read from

    def tflops(self, precision: Precision) -> float:
        """The peak for ``precision`` (FP16: Tensor Cores; FP32: CUDA cores)."""
        return self.fp16_tensor if precision == Precision.FP16 else self.fp32


def load_gpu_peaks() -> tuple[GpuPeak, ...]:
    """Every GPU of ``simvos_trt/data/gpu_peaks.json``, in matching order."""
    data = json.loads(resources.files("simvos_trt").joinpath("data/gpu_peaks.json").read_text(encoding="utf-8"))
    return tuple(GpuPeak(**{**g, "match": tuple(g["match"])}) for g in data["gpus"])


def find_gpu_peak(name: str | None) -> GpuPeak | None:
    """The peaks of the GPU called ``name`` (a CUDA device name), or None if unknown."""
    if not name:
        return None
    for peak in load_gpu_peaks():
        if any(re.search(p, name, re.IGNORECASE) for p in peak.match):
            return peak
    return None


@dataclass(frozen=True)
class GemmPeak:
    """Best float32 n x n matrix-product rate per library, GFLOP/s (2 n^3 FLOPs per product)."""

    gflops: dict[str, float]  # library -> best GFLOP/s over the sizes
    best_size: dict[str, int]  # library -> the n that reached it
    sizes: tuple[int, ...]
    repeats: int
    threads: dict[str, int | None]

    @property
    def best(self) -> float:
        """The highest rate of any library."""
        return max(self.gflops.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sizes": list(self.sizes), "best": self.best}


def _best_rate(matmul: Callable[[], object], n: int, repeats: int) -> float:
    matmul()  # warm-up (thread pool start, page faults)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def gemm_peak(sizes: tuple[int, ...] = (1024, 1536, 2048), repeats: int = 5) -> GemmPeak:
    """Measure the float32 GEMM rate of numpy (its BLAS) and torch (if installed) on this CPU."""
    rng = np.random.default_rng(0)
    gflops: dict[str, float] = {}
    best_size: dict[str, int] = {}
    threads: dict[str, int | None] = {"numpy": None}
    libs: dict[str, Callable[[np.ndarray, np.ndarray], Callable[[], object]]] = {"numpy": lambda a, b: lambda: a @ b}
    torch = _optional("torch")
    if torch is not None:
        threads["torch"], libs["torch"] = torch.get_num_threads(), _torch_mm
    for lib, make in libs.items():
        for n in sizes:
            a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
            rate = _best_rate(make(a, b), n, repeats)
            log.info("%s float32 GEMM %d: %.1f GFLOP/s", lib, n, rate)
            if rate > gflops.get(lib, 0.0):
                gflops[lib], best_size[lib] = rate, n
    return GemmPeak(gflops, best_size, tuple(sizes), repeats, threads)


def _torch_mm(a_host: np.ndarray, b_host: np.ndarray) -> Callable[[], object]:
    import torch

    a, b = torch.from_numpy(a_host), torch.from_numpy(b_host)
    out = torch.empty_like(a)

    def run() -> object:
        with torch.inference_mode():
            return torch.mm(a, b, out=out)

    return run
