"""Which TensorRT is installed, ``tensorrt`` (10.x, 11.x) or ``tensorrt_rtx``, and ``trt``: the one
``select_library`` chose, imported on first use (``tensorrt_rtx`` for mypy: docs/tensorrt.md)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import StrEnum
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError

__all__ = ["CHOICES", "INSTALL_HINT", "LIBRARIES", "Library", "LibraryName", "installed", "network_flags",
           "select_library", "selected", "trt"]

#: In order of preference for ``auto``: TensorRT builds for the GPU it runs on; TensorRT-RTX
#: also builds ahead of time, without a GPU, for the compute capabilities it is given.
class LibraryName(StrEnum):
    TENSORRT = "tensorrt"
    TENSORRT_RTX = "tensorrt_rtx"


LIBRARIES = tuple(LibraryName)
CHOICES = ("auto", *LIBRARIES)
INSTALL_HINT = ("pip install 'simvos-trt[gpu]' (TensorRT, on a machine with an NVIDIA GPU) or "
                "pip install 'simvos-trt[rtx]' (TensorRT-RTX: builds engines without a GPU)")


@dataclass(frozen=True)
class Library:
    name: LibraryName
    version: str

    @property
    def ahead_of_time(self) -> bool:
        """Builds without a GPU for given compute capabilities (TensorRT-RTX)."""
        return self.name == LibraryName.TENSORRT_RTX


def _import(name: str) -> ModuleType | None:
    """The library's module, or None when it (or only its type stubs) is installed."""
    try:
        module = importlib.import_module(name)
    except (ImportError, OSError):
        return None
    return module if hasattr(module, "Builder") else None  # tensorrt-stubs alone: a namespace package


_selected: ModuleType | None = None


def select_library(choice: str = "auto") -> Library:
    """Import and select the TensorRT library ``choice`` (one of ``CHOICES``); MissingDependencyError, naming the
    install command, when it is not installed."""
    global _selected
    if choice not in CHOICES:
        raise ValueError(f"TensorRT library: got {choice!r}, expected one of {CHOICES}")
    names = LIBRARIES if choice == "auto" else (LibraryName(choice),)
    for name in names:
        module = _import(name)
        if module is not None:
            if name == LibraryName.TENSORRT and int(str(module.__version__).split(".")[0]) < 10:
                raise MissingDependencyError(f"TensorRT {module.__version__} is too old: strongly typed "
                                             f"networks need TensorRT 10 or newer; {INSTALL_HINT}")
            _selected = module
            return Library(name, str(module.__version__))
    wanted = "TensorRT or TensorRT-RTX" if choice == "auto" else choice
    raise MissingDependencyError(f"building or loading engines needs {wanted}, which is not installed; "
                                 f"install it with: {INSTALL_HINT}")


def selected() -> Library:
    """The selected library (selecting ``auto`` first if none is)."""
    if _selected is None:
        return select_library()
    return Library(LibraryName(_selected.__name__.split(".")[0]), str(_selected.__version__))


def installed() -> list[str]:
    """The names of the TensorRT libraries that can be imported here."""
    return [name for name in LIBRARIES if _import(name) is not None]


class _Lazy:
    """The selected TensorRT module, imported on first attribute access."""

    def __getattr__(self, name: str) -> Any:
        if _selected is None:
            select_library()
        return getattr(_selected, name)


if TYPE_CHECKING:
    import tensorrt_rtx as trt
else:
    trt = _Lazy()


def network_flags() -> int:
    """Creation flags of a strongly typed network: TensorRT 10 needs the flag, 11 and RTX accept it."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)
