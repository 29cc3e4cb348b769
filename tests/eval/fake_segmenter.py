"""A stand-in for ``VideoSegmenter`` in the simvos-eval tests that need no model: ``patch_open`` makes
``VideoSegmenter.open`` return a new ``FakeSegmenter`` per call, whose sessions are of a given class."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from simvos_trt.runtime import VideoSegmenter


class FakeSegmenter:
    """Opens sessions ``session(frames, fail_after)``: they log one entry per frame into ``frames`` and raise
    KeyboardInterrupt once ``fail_after`` entries are logged."""

    backend = SimpleNamespace(name="fake", folder="engines/fake-64")
    manifest = SimpleNamespace(fingerprint="0123456789ab")

    def __init__(self, session: type, fail_after: int | None = None) -> None:
        self.frames: list[Any] = []
        self.session, self.fail_after = session, fail_after

    def __enter__(self) -> FakeSegmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def video(self) -> Any:
        return self.session(self.frames, self.fail_after)


def patch_open(monkeypatch: pytest.MonkeyPatch, session: type) -> tuple[list[FakeSegmenter], dict[str, int | None]]:
    """Patch ``VideoSegmenter.open``; returns the segmenters opened and a dict whose "after" is the
    ``fail_after`` of the next ones."""
    opened: list[FakeSegmenter] = []
    fail: dict[str, int | None] = {"after": None}

    def open_(folder: object, backend: str = "auto", **options: object) -> FakeSegmenter:
        opened.append(FakeSegmenter(session, fail["after"]))
        return opened[-1]

    monkeypatch.setattr(VideoSegmenter, "open", open_)
    return opened, fail
