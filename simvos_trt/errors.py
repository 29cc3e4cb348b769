"""The package's exceptions: one small hierarchy (docs/design.md says who catches which)."""


class SimVOSError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(SimVOSError, ValueError):
    """Bad input the caller fixes: frames, masks, options, a checkpoint, a dataset or results folder."""


class BackendError(SimVOSError):
    """A backend failed: a failed CUDA or TensorRT call (out of device memory, an execution), an engine built for
    another GPU or library, a closed backend."""


class DeviceUnavailableError(BackendError):
    """A backend cannot run here at all: no usable NVIDIA GPU (commands report it as skipped, with a missing
    library)."""


class MissingDependencyError(SimVOSError, ImportError):
    """An optional dependency (torch, tensorrt, ...) is needed for this call and not installed."""


class ExportError(SimVOSError):
    """An export, graph check, FP16 conversion, engine build or engine verification failed."""


class ServeError(SimVOSError):
    """The segmentation server cannot start, cannot be reached, or answered a request with an error."""


class ServerUnreachable(ServeError):
    """A server could not be reached, or dropped the connection during a request: the videos it held are lost."""


class VideoLost(ServeError):
    """A server does not hold a video it was sent: never started there (a restarted server), expired or evicted."""


class RequestRefused(ServeError):
    """A request the server refuses, as its client reads it: the message alone, without a traceback.

    PyTriton answers a failed request with the text of ``traceback.format_exception(exc, exc.__traceback__)``,
    which would show the server's code to every client; this class reports no traceback to Python code (the
    interpreter still keeps one internally), so only its type and message go out.
    """

    @property  # type: ignore[override]
    def __traceback__(self) -> None:
        return None

    @__traceback__.setter
    def __traceback__(self, _traceback: object) -> None:
        pass


def require(module: str, extra: str, purpose: str) -> None:
    """Raise MissingDependencyError naming the extra to install when ``module`` is absent."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(f"{purpose} needs the Python package '{module}', which is not installed; "
                                     f"install it with: pip install 'simvos-trt[{extra}]'")


class OutputError(SimVOSError):
    """An output path may not be written: it is an input, holds files not ours, or is read-only."""


def check_type(name: str, value: object, kind: type | tuple[type, ...], expected: str) -> None:
    """Raise InputError unless ``value`` is a ``kind`` (a bool is never taken for an int)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise InputError(f"{name}: got {value!r} ({type(value).__name__}), expected {expected}")


def check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """Raise InputError unless ``value`` is an int in ``low..high`` (no upper bound when None)."""
    span = f"an int in {low}..{high}" if high is not None else f"an int >= {low}"
    check_type(name, value, int, span)
    assert isinstance(value, int)
    if value < low or (high is not None and value > high):
        raise InputError(f"{name}: got {value}, expected {span}")


def describe_error(exc: BaseException) -> str:
    """An error as one line for a command's user: an OSError as ``file: reason``."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc)
    return " ".join(text.split())
