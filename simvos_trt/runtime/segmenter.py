"""The streaming video segmenter: an opened export folder that serves any number of videos.

    from simvos_trt.runtime import VideoSegmenter

    with VideoSegmenter.open("engines/T-480x864") as seg:
        for labels in seg.segment(frames, first_mask):   # frames: any iterable of (H, W, 3) uint8
            ...                                          # labels: (H, W) uint8, the mask's own ids

        video = seg.start(frame0, mask0)                 # or step by step
        labels, prob = video.step(frame1, return_prob=True)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import InputError, check_type
from ..manifest import Manifest, read_manifest
from .backends import BACKENDS, Backend, create_backend
from .session import Result, VideoSession

log = logging.getLogger(__name__)


class VideoSegmenter:
    """Segments videos with the graphs of one export folder.

    One segmenter holds the loaded graphs; each video has its own ``VideoSession``
    (its state: placement, object ids, memories, staging buffer). Sessions of one
    segmenter may run in parallel threads (ONNX Runtime's ``run`` and the torch
    backend's modules are thread-safe); one session must not be stepped from two
    threads at once.

    Frames of any size are accepted: when the frame's official padded size (to a
    multiple of 16, split evenly) equals the engine size they are padded exactly as
    the official inference does; otherwise they are resized (bilinear, aspect ratio
    kept) to fit the engine size and padded evenly, and the outputs are mapped back
    to the frame's size (see ``simvos_trt.runtime.geometry``).
    """

    def __init__(self, backend: Backend) -> None:
        """Wrap a backend; it is opened now if it is not yet, and closed by ``close``."""
        self.backend = backend
        self.manifest: Manifest = backend.manifest
        backend.open()

    @classmethod
    def open(cls, folder: str | Path, backend: str = "auto", *, verify: bool = True,
             **options: Any) -> VideoSegmenter:
        """Open the export ``folder`` (its ``manifest.json`` and graphs).

        Args:
            folder: an export folder written by ``simvos-export``.
            backend: ``auto`` (TensorRT when importable and usable, else ONNX
                Runtime), ``onnxruntime``, ``torch`` or ``tensorrt``.
            verify: check every graph file against its sha256 in the manifest.
            options: for the backend: ``threads``, ``providers``, ``io_binding``
                (ONNX Runtime); ``model``, ``device`` (torch).
        Raises:
            ManifestError: the folder is missing, incomplete, modified, or from an
                incompatible version.
            BackendError, MissingDependencyError: the backend cannot run here.
        """
        check_type("verify", verify, bool, "True or False")
        check_type("backend", backend, str, f"one of {', '.join(BACKENDS)}")
        manifest = read_manifest(folder, verify=verify)
        return cls(create_backend(backend, folder, manifest, **options))

    def __enter__(self) -> VideoSegmenter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Free the graphs; sessions of this segmenter cannot step afterwards."""
        self.backend.close()

    @property
    def engine_size(self) -> tuple[int, int]:
        """(H, W) of the graphs' frame input."""
        return self.manifest.height, self.manifest.width

    def video(self) -> VideoSession:
        """A new, not yet started, video session."""
        return VideoSession(self.backend)

    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = False) -> VideoSession:
        """A session started with the first ``frame`` (H, W, 3) uint8 and its (H, W) index ``mask``."""
        session = self.video()
        session.start(frame, mask, bgr=bgr)
        return session

    def segment(self, frames: Iterable[np.ndarray], first_mask: np.ndarray, *, bgr: bool = False,
                return_prob: bool = False) -> Iterator[Result]:
        """Segment a video lazily, frame by frame.

        Args:
            frames: the video's frames, each (H, W, 3) uint8 (an iterable, a generator,
                or a (T, H, W, 3) array); read one at a time.
            first_mask: (H, W) index mask of frame 0 (0 background, ids 1..255).
            bgr: frames are in BGR order (as OpenCV reads them).
            return_prob: yield (labels, prob) instead of labels.
        Yields:
            per frame, (H, W) uint8 labels in the mask's ids (frame 0: the first mask
            itself), and with ``return_prob`` the (K+1, H, W) float32 probabilities.
        """
        check_type("return_prob", return_prob, bool, "True or False")
        shape, mask_shape = getattr(frames, "shape", (0, 0, 0, 0)), np.shape(first_mask)
        if len(shape) < 3 or (len(shape) == 3 and shape[:2] == mask_shape != shape[1:]):
            raise InputError(f"frames: got an array of shape {tuple(shape)}, not a video: expected (T, H, W, 3) or "
                             "(T, H, W) frames; pass a single frame as [frame]")
        if isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
            raise InputError(f"frames: got {type(frames).__name__}, expected an iterable of (H, W, 3) uint8 frames "
                             "(a list, a generator or a (T, H, W, 3) array)")
        it = iter(frames)
        first = next(it, None)
        if first is None:
            raise InputError("frames: the video has no frame")
        session = self.video()
        yield session.start(first, first_mask, bgr=bgr, return_prob=return_prob)
        for frame in it:
            yield session.step(frame, return_prob=return_prob)
