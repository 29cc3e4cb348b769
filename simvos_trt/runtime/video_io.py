"""Video input and output for the command line: frame folders, video files, overlay videos; frames are
(H, W, 3) uint8 BGR, read one at a time; a damaged image or a truncated video is an error."""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from ..errors import InputError
from .pipeline import FrameLoop
from .png import write_index_png

if TYPE_CHECKING:
    from .session import Video

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def natural_key(name: str) -> list[int | str]:
    """Sort key comparing digit runs as numbers: frame2.jpg < frame10.jpg (00002 < 00010 alike)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


#: How a file of each format starts, and what a whole one ends with: JPEG's end-of-image marker, PNG's IEND chunk.
_MARKERS = ((b"\xff\xd8", b"\xff\xd9", "JPEG"), (b"\x89PNG", b"IEND\xaeB`\x82", "PNG"))


def read_frame(path: str | os.PathLike[str]) -> np.ndarray:
    """One image file as (H, W, 3) uint8 BGR, decoded once by OpenCV; InputError when it is unreadable, truncated
    (OpenCV turns a truncated JPEG into grey rows with only a warning: its end marker is checked first) or corrupt."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"frame {path} cannot be read ({exc.strerror}); check the file") from exc
    for start, end, kind in _MARKERS:
        if data.startswith(start) and end not in data[-1024:]:  # allow a few bytes after the marker, as decoders do
            raise InputError(f"frame {path} is damaged or not an image (the {kind} file is truncated: it lacks its "
                             "end marker); replace the file")
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise InputError(f"frame {path} is damaged or not an image (OpenCV cannot decode it); replace it with a "
                         "JPEG or PNG")
    return frame


def named_frames(files: Iterable[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """(file stem, (H, W, 3) uint8 BGR) of each image file; InputError naming the frame of an unreadable one."""
    for path in files:
        try:
            yield path.stem, read_frame(path)
        except InputError as exc:
            raise InputError(f"frame {path.stem}: {exc}") from exc


class FrameSource:
    """The frames, as (name: the file stem or ``00000``..., (H, W, 3) uint8 BGR), of a folder of images (natural
    name order, ``exclude`` left out) or a video file; ``count`` (a video's estimate, 0: unknown), ``fps``."""

    def __init__(self, path: str | os.PathLike[str], exclude: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.path = Path(path)
        skip = {Path(p).resolve() for p in exclude}
        self.files: list[Path] | None = None
        self.fps: float | None = None
        if self.path.is_dir():
            files = [f for f in self.path.iterdir()
                     if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and f.resolve() not in skip]
            if not files:
                raise InputError(f"frames {self.path}: no .jpg/.jpeg/.png frame in this folder")
            files.sort(key=lambda f: natural_key(f.name))
            shared = sorted(stem for stem, count in Counter(f.stem for f in files).items() if count > 1)
            if shared:
                raise InputError(f"frames {self.path}: several frames share a name {shared[:3]} (e.g. a .jpg "
                                 "and a .png); the output PNGs are named after the frames")
            self.files = files
            self.count = len(files)
        elif self.path.is_file():
            cap = cv2.VideoCapture(str(self.path))
            if not cap.isOpened():
                raise InputError(f"video {self.path}: OpenCV cannot read this video (or it is not a video)")
            self.count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
            self.fps = cap.get(cv2.CAP_PROP_FPS) or None
            cap.release()
        else:
            raise InputError(f"{self.path} does not exist; give a folder of frames or a video file")

    def name(self, index: int) -> str:
        """The name of frame ``index``: its file's stem, or ``00000``, ``00001``... in a video file."""
        return self.files[index].stem if self.files is not None else f"{index:05d}"

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        if self.files is not None:
            yield from named_frames(self.files)
            return
        cap = cv2.VideoCapture(str(self.path))
        index = 0
        try:
            while True:
                decoded, frame = cap.read()
                if not decoded:
                    break
                yield self.name(index), frame
                index += 1
        finally:
            cap.release()
        if index < self.count:
            raise InputError(f"video {self.path} ends after {index} of its {self.count} frames (truncated or "
                             "damaged); repair it, or extract its frames to a folder (e.g. with ffmpeg)")


class OverlayWriter:
    """An MP4 (mp4v: even sizes only) of frames with their masks blended in (``palette``: (P, 3) uint8
    RGB per label, the background not drawn; ``alpha``: opacity), renamed into place on success."""

    def __init__(self, path: str | os.PathLike[str], fps: float, palette: np.ndarray,
                 alpha: float = 0.5) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._bgr = np.zeros((256, 3), np.uint8)
        self._bgr[: len(palette)] = palette[:256, ::-1]
        self._alpha, self._fps = alpha, fps
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame: np.ndarray, labels: np.ndarray) -> None:
        """Add one (H, W, 3) uint8 BGR frame with its (H, W) uint8 labels."""
        if self._writer is None:
            h, w = labels.shape
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter.fourcc(*"mp4v"), self._fps, (w, h))
            if not self._writer.isOpened():
                raise InputError(f"overlay {self.path}: OpenCV cannot write this video (use a .mp4 name)")
        colour = self._bgr[labels]  # (H, W, 3)
        blend = (frame * (1 - self._alpha) + colour * self._alpha).astype(np.uint8)
        self._writer.write(np.where(labels[:, :, None] > 0, blend, frame))

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._writer is not None:
            self._writer.release()
        if exc_type is None and self._writer is not None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


class Segmented(NamedTuple):
    """What ``segment_to_folder`` did: the frames written, and the seconds of each step after the start."""

    frames: int
    step_seconds: list[float]


def segment_to_folder(session: Video, frames: Iterable[tuple[str, np.ndarray]], annotations: dict[str, np.ndarray],
                      out: Path, palette: np.ndarray | None, *, bgr: bool = True, overlay: OverlayWriter | None = None,
                      progress: Callable[[int], None] | None = None, keep: Container[str] | None = None) -> Segmented:
    """Segment the named frames (``FrameSource``) with ``session`` into ``<out>/<name>.png`` (``write_index_png``'s
    palette PNGs; only the frames in ``keep``, when given) and ``overlay``, overlapped (``FrameLoop``);
    ``progress`` gets the frames done. An InputError of a step names its frame.

    ``annotations`` maps frame names to (H, W) index masks and loses the ones used: the first annotated frame
    starts the video (frames before it have no object, all 0), a later one is stated with its frame (objects
    join or are corrected there)."""
    times = []
    done = 0
    started = False
    with FrameLoop(frames) as loop:  # decoding ahead, writing behind
        for done, (name, frame) in enumerate(loop, start=1):
            t0 = time.perf_counter()
            mask = annotations.pop(name, None)
            try:
                if started:
                    labels = session.step(frame, mask)
                    times.append(time.perf_counter() - t0)
                elif mask is not None:
                    labels = session.start(frame, mask, bgr=bgr)
                    started = True
                else:
                    labels = np.zeros(frame.shape[:2], np.uint8)
            except InputError as exc:
                raise InputError(f"frame {name}: {exc}") from exc
            if keep is None or name in keep:
                loop.writers.submit(write_index_png, out / f"{name}.png", labels, palette)
            if overlay is not None:
                loop.writers.submit_ordered(overlay.write, frame, labels)
            if progress is not None:
                progress(done)
    return Segmented(done, times)
