"""Many videos into one results folder: what a worker returns for a video, and how the driver publishes it
(a video's folder appears whole, with its record, or not at all; a finished video is skipped on resume)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path
from typing import ClassVar, Protocol

from ..errors import InputError
from ..eval.run import SequenceRun, owner_source
from ..io import Owner, claim_and_clear, staging_folder, swap_into_place, write_atomic, write_json_atomic
from ..runtime.backends import AUTO, backend_options
from ..runtime.segmenter import VideoSegmenter

log = logging.getLogger(__name__)

#: The record inside each finished video folder.
VIDEO_RECORD = ".simvos-video.json"
#: A video whose worker dies this many times fails the run (the finished videos stay).
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class SegmenterSpec:
    """How a worker opens the export: ``VideoSegmenter.open(folder, backend, ...)`` with these options."""

    folder: Path
    backend: str = AUTO
    threads: int | None = None  # ONNX Runtime intra-op threads per graph (None: all cores)
    device: str | None = None  # torch backend only, e.g. "cuda:0"

    def open(self, folder: Path | None = None) -> VideoSegmenter:
        """The segmenter, from ``folder`` (a local copy of the export) or ``self.folder``."""
        options = backend_options(self.backend, threads=self.threads)
        if self.device and self.backend == "torch":
            options["device"] = self.device
        return VideoSegmenter.open(folder or self.folder, self.backend, **options)


class VideoTask(Protocol):
    """Segments video ``name`` with ``segmenter``, writing its files (flat) into ``out / folder / name``; returns
    its frame count. Must pickle: workers in other processes and on other machines run it."""

    #: The folder of the results layout that holds one folder per video ("" for DAVIS, "Annotations" for
    #: YouTube-VOS).
    folder: ClassVar[str]

    def __call__(self, segmenter: VideoSegmenter, name: str, out: Path) -> int: ...

    def expected(self, name: str) -> list[str] | None:
        """The files a finished video's folder holds (a folder with them all is skipped, whoever wrote it); None
        when only the run's record can tell (a video file's frame count is known once decoded)."""


@dataclass(frozen=True)
class Opened:
    """What a worker opened: the export (its graphs' fingerprint) on a backend (``auto`` resolved)."""

    fingerprint: str
    backend: str

    @staticmethod
    def of(segmenter: VideoSegmenter) -> Opened:
        return Opened(segmenter.manifest.fingerprint, segmenter.backend.name)


@dataclass(frozen=True)
class VideoPlan:
    """The videos of a run, in order, the task that segments one, the inputs no output may overwrite, and what
    else than the export and backend decides the outputs (recorded with the folder's owner)."""

    names: tuple[str, ...]
    task: VideoTask
    inputs: tuple[Path, ...]
    dataset: str = ""


@dataclass(frozen=True)
class VideoResult:
    """One segmented video, as a worker sends it back: its files' bytes, not yet written anywhere."""

    name: str
    frames: int
    files: dict[str, bytes]  # file name in the video's folder -> contents
    seconds: float  # wall time of reading, segmenting and encoding
    worker: str  # which worker, for progress lines
    attempts: int = 1  # workers it was handed to (more than 1 when a worker died)


@dataclass(frozen=True)
class VideoRun(SequenceRun):
    """What a run did with one video, and where: ``eval.run.SequenceRun`` with the worker."""

    worker: str = ""
    attempts: int = 0  # workers it was handed to (more than 1 when a worker died)


#: Called after each video with (position 1..total, total, what was done).
Progress = Callable[[int, int, VideoRun], None]


def segment_one(segmenter: VideoSegmenter, task: VideoTask, name: str, worker: str) -> VideoResult:
    """Run ``task`` for video ``name`` into a private temporary folder and return its files (worker side)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="simvos-video-") as tmp:
        frames = task(segmenter, name, Path(tmp))
        folder = Path(tmp) / task.folder / name
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}
    return VideoResult(name, frames, files, time.perf_counter() - t0, worker)


def publish(folder: Path, result: VideoResult) -> VideoRun:
    """Write ``result`` into ``folder`` as a whole: built beside it, then swapped in (replacing an unfinished or
    earlier folder)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_folder(folder)
    try:
        for file, data in result.files.items():
            write_atomic(tmp / file, data)
        run = VideoRun(result.name, result.frames, result.seconds, skipped=False, worker=result.worker,
                       attempts=result.attempts)
        write_json_atomic(tmp / VIDEO_RECORD, {**asdict(run), "files": sorted(result.files)})
        swap_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("video %s: %d frames, %.1f frames/s on %s", run.name, run.frames, run.fps, run.worker)
    return run


def finished(folder: Path, task: VideoTask, name: str) -> VideoRun | None:
    """Video ``name``, published in ``folder`` earlier, as a skipped run: every file ``task`` expects is there,
    or else every file its record lists. None otherwise (the video is segmented again)."""
    files = task.expected(name)
    if files is not None:
        complete = all((folder / file).is_file() for file in files)
        return VideoRun(name, len(files), 0.0, skipped=True) if complete else None
    try:
        record = json.loads((folder / VIDEO_RECORD).read_text())
        complete = all((folder / file).is_file() for file in record["files"])
        return VideoRun(name, int(record["frames"]), 0.0, skipped=True) if complete else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, LookupError, TypeError) as exc:
        raise InputError(f"{folder / VIDEO_RECORD} is damaged ({exc}); delete the folder {folder} and run again "
                         "to segment that video anew") from exc


def videos_per_minute(runs: Sequence[SequenceRun], seconds: float) -> float:
    """Videos segmented (not skipped) per minute of ``seconds`` of wall time."""
    return sum(not r.skipped for r in runs) * 60 / max(seconds, 1e-9)


class Pool(Protocol):
    """Workers that each open the export once and segment the videos handed to them."""

    spec: SegmenterSpec

    def start(self, task: VideoTask) -> Opened:
        """Start the workers; return what they opened (the same for all)."""

    def run(self, names: Sequence[str]) -> Iterator[VideoResult]:
        """Each video's result as it finishes, in any order (a dead worker's video is handed to another)."""


def segment_videos(plan: VideoPlan, pool: Pool, opened: Opened, out: str | os.PathLike[str], *, tool: str,
                   force: bool = False, progress: Progress | None = None) -> list[VideoRun]:
    """Segment ``plan.names`` on ``pool`` (started with ``plan.task``; its workers ``opened``) into
    ``<out>/<plan.task.folder>/<name>/``, skipping finished videos unless ``force``; one ``VideoRun`` per video,
    in plan order. The results folder is claimed as ``eval.run`` claims it (``tool`` owns it), so a run on
    workers resumes one in a single process and the other way round."""
    out = Path(out)
    videos = out / plan.task.folder
    owner = Owner(tool, owner_source(opened.fingerprint, opened.backend, plan.dataset))
    stale = str(Path(plan.task.folder, "*/*.png"))
    claim_and_clear(out, owner, stale, inputs=[*plan.inputs, pool.spec.folder], force=force)
    earlier = {} if force else {name: finished(videos / name, plan.task, name) for name in plan.names}
    skipped = [run for run in earlier.values() if run is not None]
    todo = [name for name in plan.names if earlier.get(name) is None]
    published = (publish(videos / result.name, result) for result in pool.run(todo))
    runs: dict[str, VideoRun] = {}
    for position, run in enumerate(chain(skipped, published), start=1):  # the skipped ones reported first
        runs[run.name] = run
        if progress is not None:
            progress(position, len(plan.names), run)
    return [runs[name] for name in plan.names]
