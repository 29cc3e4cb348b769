"""Many videos on many workers: processes on this machine or actors on a Ray cluster, resumable, each video
published whole with its record (design and limits: ``README.md`` beside this file)."""

from .plans import davis_plan, videos_plan, youtube_plan
from .pools import InProcess, Processes
from .videos import SegmenterSpec, VideoPlan, VideoRun, VideoTask, segment_videos, videos_per_minute

__all__ = ["InProcess", "Processes", "SegmenterSpec", "VideoPlan", "VideoRun", "VideoTask", "davis_plan",
           "segment_videos", "videos_per_minute", "videos_plan", "youtube_plan"]
