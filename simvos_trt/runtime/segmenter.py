"""The streaming video segmenter: an opened export folder that serves any number of videos."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import check_type
from ..manifest import Manifest, read_manifest
from .backends import AUTO, BACKENDS, Backend, create_backend
from .backends.base import Closing
from .session import VideoSession
from .video import Result, segment_frames


class VideoSegmenter(Closing):
    """Segments videos with the graphs of one export folder, one ``VideoSession`` per video (sessions may
    run in parallel threads); frames of any size are placed in the engine input (``runtime.geometry``)."""

    def __init__(self, backend: Backend) -> None:
        """Wrap a backend; it is opened now if it is not yet, and closed by ``close``."""
        self.backend = backend
        self.manifest: Manifest = backend.manifest
        backend.open()

    @classmethod
    def open(cls, folder: str | Path, backend: str = AUTO, *, verify: bool = True,
             **options: Any) -> VideoSegmenter:
        """Open the export ``folder`` on ``backend`` (``auto`` or one of ``BACKENDS``, given ``options``);
        ``verify`` checks the graph files' sha256. Raises ManifestError for a missing, incomplete or modified
        folder, BackendError or MissingDependencyError when the backend cannot run here."""
        check_type("verify", verify, bool, "True or False")
        check_type("backend", backend, str, f"one of {', '.join((AUTO, *BACKENDS))}")
        manifest = read_manifest(folder, verify=verify)
        return cls(create_backend(backend, folder, manifest, **options))

    def close(self) -> None:
        """Free the graphs; sessions of this segmenter cannot step afterwards."""
        self.backend.close()

    def video(self) -> VideoSession:
        """A new, not yet started, video session."""
        return VideoSession(self.backend)

    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = False) -> VideoSession:
        """A session started with the first ``frame`` (H, W, 3) uint8 and its (H, W) index ``mask``."""
        session = self.video()
        session.start(frame, mask, bgr=bgr)
        return session

    def segment(self, frames: Iterable[np.ndarray], masks: np.ndarray | Mapping[int, np.ndarray], *,
                bgr: bool = False, return_prob: bool = False) -> Iterator[Result]:
        """Segment ``frames`` (an iterable of (H, W, 3) uint8 or a (T, H, W, 3) array) lazily from frame 0's index
        mask, or a mapping frame index -> index mask (objects joining or corrected there; frame 0 included):
        yields each frame's ``step`` result (frame 0: its mask, as ``start``)."""
        return segment_frames(self.video(), frames, masks, bgr=bgr, return_prob=return_prob)
