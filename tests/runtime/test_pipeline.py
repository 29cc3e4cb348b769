"""The overlapped frame loop: order kept, memory bounded, a failing worker and an interrupt handled, in the
helper and in simvos-segment."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from videos import SMALL, moving_video

from simvos_trt.cli.segment import main
from simvos_trt.errors import InputError, OutputError
from simvos_trt.io import write_atomic
from simvos_trt.runtime.pipeline import FrameLoop, Prefetch, Writers
from simvos_trt.runtime.png import read_index_png, write_index_png


def counted(n: int, log: list[int], fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise InputError(f"frame {i} is damaged")
        log.append(i)
        yield i


def test_prefetch_keeps_order_and_stays_bounded():
    produced: list[int] = []
    ahead = Prefetch(counted(100, produced), depth=3)
    assert next(ahead) == 0
    time.sleep(0.3)
    assert len(produced) <= 1 + 3 + 1  # the one taken, the queue, the one waiting to be queued
    assert [0, *ahead] == list(range(100))


def test_prefetch_raises_the_iterables_error_after_the_items_before_it():
    got = []
    with pytest.raises(InputError, match="frame 3 is damaged"):
        for i in Prefetch(counted(10, [], fail_at=3)):
            got.append(i)
    assert got == [0, 1, 2]


def test_closing_stops_the_producer():
    produced: list[int] = []
    ahead = Prefetch(counted(10**6, produced), depth=2)
    next(ahead)
    ahead.close()
    time.sleep(0.3)
    n = len(produced)
    time.sleep(0.3)
    assert len(produced) == n <= 5


def test_ordered_writes_keep_their_order_and_the_pool_bounds_the_backlog():
    done: list[int] = []
    running = []
    lock = threading.Lock()

    def slow(i):
        with lock:
            running.append(i)
        time.sleep(0.002 * (i % 3))
        done.append(i)

    writers = Writers(threads=3, backlog=2)
    for i in range(30):
        writers.submit_ordered(slow, i)
        assert i + 1 - len(done) <= 2 + 1  # at most the backlog waits (plus the one just submitted)
    writers.close()
    assert done == list(range(30))


def test_a_failing_write_surfaces_as_raised_on_the_next_submit_or_at_the_end():
    def write(i):
        if i == 2:
            raise OutputError(f"cannot write {i}.png: read-only")

    writers = Writers(threads=2, backlog=4)
    with pytest.raises(OutputError, match="cannot write 2.png: read-only"):
        for i in range(50):
            writers.submit(write, i)
            time.sleep(0.01)
    writers.close(raise_error=False)
    last = Writers()
    last.submit(write, 2)
    with pytest.raises(OutputError, match="cannot write 2.png"):
        last.close()


def test_an_interrupt_finishes_the_writes_handed_over(tmp_path):
    def write(path, data):
        time.sleep(0.01)
        write_atomic(path, data)

    frames = (i for i in range(1000))
    with pytest.raises(KeyboardInterrupt), FrameLoop(frames, threads=2, backlog=6) as loop:
        for i in loop:
            loop.writers.submit(write, tmp_path / f"{i:03d}.bin", bytes([i]) * 1000)
            if i == 10:
                raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i:03d}.bin" for i in range(11)]
    assert all(p.read_bytes() == bytes([int(p.stem)]) * 1000 for p in tmp_path.iterdir())


H, W = SMALL


@pytest.fixture()
def frames_dir(tmp_path):
    frames, mask = moving_video(8, H, W, objects=2, seed=5)
    (tmp_path / "frames").mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / "frames" / f"{i:05d}.jpg"), f[:, :, ::-1])
    write_index_png(tmp_path / "mask.png", mask)
    return tmp_path


def segment(small_export, root, *extra):
    return main(["--engine-dir", str(small_export.folder), "--input", str(root / "frames"), "--mask",
                 str(root / "mask.png"), "--out", str(root / "out"), "--threads", "1", "--no-progress", *extra])


def test_segment_writes_every_frame_in_order(small_export, frames_dir, capsys):
    assert segment(small_export, frames_dir) == 0
    from simvos_trt.runtime import VideoSegmenter
    from simvos_trt.runtime.video_io import FrameSource

    source = list(FrameSource(frames_dir / "frames"))
    with VideoSegmenter.open(small_export.folder, "onnxruntime", threads=1) as seg:
        expected = list(seg.segment([f for _, f in source], read_index_png(frames_dir / "mask.png").labels,
                                    bgr=True))
    for (name, _), labels in zip(source, expected, strict=True):
        np.testing.assert_array_equal(read_index_png(frames_dir / "out" / f"{name}.png").labels, labels)


def test_segment_a_failing_writer_is_a_one_line_error(small_export, frames_dir, capsys, monkeypatch):
    import simvos_trt.runtime.video_io as video_io

    real = video_io.write_index_png

    def failing(path, labels, palette=None):
        if path.stem == "00003":
            raise OSError(28, "No space left on device", str(path))
        real(path, labels, palette)

    monkeypatch.setattr(video_io, "write_index_png", failing)
    assert segment(small_export, frames_dir) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "No space left on device" in err and "00003.png" in err


def test_segment_interrupted_leaves_complete_pngs(small_export, frames_dir, capsys, monkeypatch):
    from simvos_trt.runtime.session import VideoSession

    real = VideoSession._step

    def step(self, frame, mask, return_prob):
        if self.state.index == 5:
            raise KeyboardInterrupt
        return real(self, frame, mask, return_prob)

    monkeypatch.setattr(VideoSession, "_step", step)
    assert segment(small_export, frames_dir) == 130
    assert "interrupted; the PNGs written so far are complete" in capsys.readouterr().err
    out = frames_dir / "out"
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:05d}.png" for i in range(5)]  # all frames stepped
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    for p in out.glob("*.png"):
        assert read_index_png(p).labels.shape == (H, W)
