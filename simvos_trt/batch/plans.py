"""The videos of a run, checked before any worker starts: a DAVIS split (``davis_plan``), a YouTube-VOS split
(``youtube_plan``), or folders and video files with their masks (``videos_plan``: a list file, or a root in the
JPEGImages/Annotations layout)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..errors import InputError
from ..eval.davis import check_root, dataset_folders, frame_paths, read_split, sequence_files
from ..eval.run import segment_sequence
from ..eval.youtube import ANNOTATIONS, FRAMES, YouTubeVOS, segment_video
from ..runtime.png import read_index_png
from ..runtime.segmenter import VideoSegmenter
from ..runtime.video_io import IMAGE_SUFFIXES, FrameSource, natural_key, segment_to_folder
from .videos import VideoPlan


@dataclass(frozen=True)
class DavisTask:
    """One DAVIS sequence from its first annotation (``eval.run.segment_sequence``): a PNG per frame."""

    root: Path
    folder: ClassVar[str] = ""

    def __call__(self, segmenter: VideoSegmenter, name: str, out: Path) -> int:
        return segment_sequence(segmenter, self.root, name, out)

    def expected(self, name: str) -> list[str]:
        return [f"{p.stem}.png" for p in frame_paths(self.root, name)]


def davis_plan(root: Path, split: str) -> VideoPlan:
    """Every sequence of ``ImageSets/2017/<split>.txt``, after checking each one's files."""
    check_root(root, split)
    names = read_split(root, split)
    for name in names:
        sequence_files(root, name)
    return VideoPlan(tuple(names), DavisTask(root), tuple(dataset_folders(root)))


@dataclass(frozen=True)
class YouTubeTask:
    """One YouTube-VOS video, its objects joining where they first appear (``eval.youtube.segment_video``): a
    PNG per listed frame (every frame with ``save_all``) in ``Annotations/<video>/``."""

    ds: YouTubeVOS
    save_all: bool = False
    folder: ClassVar[str] = ANNOTATIONS

    def __call__(self, segmenter: VideoSegmenter, name: str, out: Path) -> int:
        return segment_video(segmenter, self.ds, name, out, force=True, save_all=self.save_all).frames

    def expected(self, name: str) -> list[str]:
        return [f"{stem}.png" for stem in self.ds.files[name].saved(self.save_all)]


def youtube_plan(ds: YouTubeVOS, save_all: bool = False) -> VideoPlan:
    """Every video of an opened (checked) YouTube-VOS split."""
    inputs = tuple(path for path in ds.inputs() if path is not None)
    return VideoPlan(tuple(ds.videos), YouTubeTask(ds, save_all), inputs, ds.frames_segmented())


@dataclass(frozen=True)
class VideoInputs:
    """The input files of one video to segment: a folder of frames or a video file, its first frame's index
    mask, and masks of later frames (named after their frame) whose objects join, or are corrected, there."""

    frames: Path
    mask: Path
    later: tuple[Path, ...] = ()


@dataclass(frozen=True)
class VideosTask:
    """One video of ``videos`` (name -> its inputs): a palette PNG per frame, in the first mask's ids and palette
    (``video_io.segment_to_folder``, simvos-segment's loop)."""

    videos: dict[str, VideoInputs]
    bgr: bool = True  # decoded frames are in OpenCV's BGR order
    folder: ClassVar[str] = ""

    def expected(self, name: str) -> None:
        return None  # a video file's frames are counted as it is decoded: the run's record tells

    def __call__(self, segmenter: VideoSegmenter, name: str, out: Path) -> int:
        video = self.videos[name]
        try:
            source = FrameSource(video.frames, exclude=[video.mask])
            first = read_index_png(video.mask)
            masks = {source.name(0): first.labels}  # the first mask is the first frame's, whatever its file name
            masks.update((path.stem, read_index_png(path).labels) for path in video.later)
            (out / name).mkdir(parents=True)
            done = segment_to_folder(segmenter.video(), source, masks, out / name, first.palette, bgr=self.bgr)
        except InputError as exc:
            raise InputError(f"video {name} ({video.frames}): {exc}") from exc
        return done.frames


def _from_root(root: Path) -> dict[str, VideoInputs]:
    """``root/JPEGImages/<video>/`` frames with ``root/Annotations/<video>/<first frame>.png`` and, as in
    YouTube-VOS, masks of later frames where objects join."""
    if not (root / FRAMES).is_dir():
        raise InputError(f"--videos {root}: no JPEGImages folder; give a root holding JPEGImages/<video>/ frames "
                         "and Annotations/<video>/<first frame>.png masks, or a list file")
    videos = {}
    for folder in sorted(p for p in (root / FRAMES).iterdir() if p.is_dir()):
        frames = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        frames.sort(key=lambda p: natural_key(p.name))  # the order FrameSource segments them in
        mask = root / ANNOTATIONS / folder.name / f"{frames[0].stem if frames else ''}.png"
        if not frames or not mask.is_file():
            raise InputError(f"--videos {root}, video {folder.name}: needs frames and the first frame's mask "
                             f"{mask.relative_to(root)}")
        stems = {p.stem for p in frames}
        later = tuple(sorted(p for p in mask.parent.glob("*.png") if p != mask))
        stray = [p.name for p in later if p.stem not in stems]
        if stray:
            raise InputError(f"--videos {root}, video {folder.name}: masks {stray[:3]} name no frame of "
                             f"JPEGImages/{folder.name}; a mask is named after its frame")
        videos[folder.name] = VideoInputs(folder, mask, later)
    return videos


def _from_list(path: Path) -> dict[str, VideoInputs]:
    """One video a line, ``FRAMES<tab>MASK`` (or two fields split by spaces), relative to the list's folder."""
    videos: dict[str, VideoInputs] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) != 2:
            raise InputError(f"--videos {path}, line {number}: expected FRAMES and MASK (tab-separated), got "
                             f"{len(fields)} fields")
        frames, mask = (path.parent / f.strip() for f in fields)
        name = frames.stem if frames.is_file() else frames.name
        if name in videos:
            raise InputError(f"--videos {path}, line {number}: a second video named {name!r} (the output folders "
                             "are named after the frames folder or video file); rename one")
        for what, p in (("frames", frames), ("mask", mask)):
            if not p.exists():
                raise InputError(f"--videos {path}, line {number}: {what} {p} does not exist")
        videos[name] = VideoInputs(frames, mask)
    return videos


def videos_plan(source: Path, bgr: bool = True) -> VideoPlan:
    """The videos of a list file or a root folder (see the module docstring); never empty."""
    if not source.exists():
        raise InputError(f"--videos {source} does not exist; give a list file or a root folder")
    videos = _from_root(source) if source.is_dir() else _from_list(source)
    if not videos:
        raise InputError(f"--videos {source}: no video found")
    inputs = {source}
    for video in videos.values():
        inputs.update((video.frames, video.mask, *video.later))
    return VideoPlan(tuple(videos), VideosTask(videos, bgr), tuple(sorted(inputs)))
