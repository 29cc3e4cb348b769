"""The overlapped frame loop of the tools (simvos-segment, simvos-eval, the serve client): decoding runs ahead
in a thread through a bounded queue, writing runs behind in threads with a bounded backlog, the caller's loop
(the step) in between. Errors and interrupts: docs/runtime.md."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_END = object()


class _Raised:
    """An exception of the prefetched iterable, on its way to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _produce(items: Iterable[Any], out: queue.Queue[Any], stop: threading.Event) -> None:
    """Put ``items`` on ``out`` until they end, raise (the exception is put) or ``stop`` is set."""

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    try:
        for item in items:
            if not put(item):
                return
    except BaseException as exc:  # noqa: BLE001 - raised in the consumer's thread
        put(_Raised(exc))
        return
    put(_END)


class Prefetch(Generic[T]):
    """Iterates ``items`` in a thread, at most ``depth`` items ahead: ``next`` gives them in order and raises an
    exception of the iterable where it occurred; ``close`` (also on garbage collection) stops the thread
    after the item it is producing."""

    def __init__(self, items: Iterable[T], depth: int = 4) -> None:
        if depth < 1:
            raise ValueError(f"depth: got {depth}, expected 1 or more")
        self._queue: queue.Queue[Any] = queue.Queue(depth)
        self._stop = threading.Event()
        self._ended = False
        threading.Thread(target=_produce, args=(items, self._queue, self._stop), name="prefetch", daemon=True).start()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._ended:
            raise StopIteration
        item = self._queue.get()
        if item is _END or isinstance(item, _Raised):
            self._ended = True
            self.close()
            if isinstance(item, _Raised):
                raise item.exc
            raise StopIteration
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        self._stop.set()

    __del__ = close


class Writers:
    """Writes behind the caller: ``submit`` to a pool of ``threads`` (any order), ``submit_ordered`` to one
    thread (in submission order: a video's frames); with ``backlog`` writes not finished, ``submit`` waits."""

    def __init__(self, threads: int = 2, backlog: int = 8) -> None:
        self._any_order = ThreadPoolExecutor(threads, thread_name_prefix="writer")
        self._in_order = ThreadPoolExecutor(1, thread_name_prefix="ordered-writer")
        self._slots = threading.Semaphore(backlog)
        self._errors: list[BaseException] = []

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` in the pool; raises the error of an earlier write instead, if one failed."""
        self._submit(self._any_order, fn, args)

    def submit_ordered(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` after every earlier ``submit_ordered`` call has run."""
        self._submit(self._in_order, fn, args)

    def _submit(self, pool: ThreadPoolExecutor, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.check()
        self._slots.acquire()
        pool.submit(fn, *args).add_done_callback(self._done)

    def _done(self, future: Future[object]) -> None:
        exc = future.exception()
        if exc is not None:
            self._errors.append(exc)
        self._slots.release()

    def check(self) -> None:
        """Raise the first error of a write, as it was raised."""
        if self._errors:
            raise self._errors[0]

    def close(self, raise_error: bool = True) -> None:
        """Wait for every write handed over (at most ``backlog``), then ``check`` if ``raise_error``."""
        for pool in (self._any_order, self._in_order):
            pool.shutdown(wait=True)
        if raise_error:
            self.check()
        elif self._errors:
            log.debug("writes failed after the loop's own error: %s", self._errors)


class FrameLoop(Generic[T]):
    """``with FrameLoop(items) as loop: for item in loop: ...; loop.writers.submit(write, ...)``: ``items``
    prefetched (``Prefetch``), writes behind (``Writers``). On leaving, every write handed over finishes; then the
    first failed write is raised, unless the block raised (its exception wins; docs/runtime.md)."""

    def __init__(self, items: Iterable[T], *, prefetch: int = 4, threads: int = 2, backlog: int = 8) -> None:
        self.frames = Prefetch(items, prefetch)
        self.writers = Writers(threads, backlog)

    def __iter__(self) -> Iterator[T]:
        return self.frames

    def __enter__(self) -> FrameLoop[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.frames.close()
        self.writers.close(raise_error=exc_type is None)
