"""The package's exceptions: one small hierarchy, messages that say how to fix the call."""


class SimVOSError(Exception):
    """Base class of every error this package raises on purpose."""


class CheckpointError(SimVOSError):
    """A checkpoint file is missing, unreadable, or does not match the configuration."""


class InputError(SimVOSError, ValueError):
    """Frames or masks given to the model or runtime have the wrong shape, type or content."""


class BackendError(SimVOSError):
    """A backend or device cannot be used: not available here, no usable GPU, a failed CUDA or TensorRT call."""


class MissingDependencyError(SimVOSError, ImportError):
    """An optional dependency (torch, tensorrt, ...) is needed for this call and not installed."""


class ServeError(SimVOSError):
    """The segmentation server cannot start, cannot be reached, or answered a request with an error."""


def require(module: str, extra: str, purpose: str) -> None:
    """Raise MissingDependencyError naming the extra to install when ``module`` is absent."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{module}', which is not installed; "
            f"install it with: pip install 'simvos-trt[{extra}]'"
        )

