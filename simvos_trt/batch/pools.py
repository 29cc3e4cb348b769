"""Worker pools on this machine (this process, or N processes) and the scheduler every pool shares: videos go
to idle workers; a dead worker's video goes back to the queue, and a fresh worker takes its place."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from typing import Protocol, cast

from ..errors import BackendError, InputError, SimVOSError, describe_error
from ..runtime.segmenter import VideoSegmenter
from .videos import MAX_ATTEMPTS, Opened, SegmenterSpec, VideoResult, VideoTask, segment_one

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerEvent:
    """Something worker ``worker`` reports to the scheduler (-1 inside the worker: the pool fills it in)."""

    worker: int


@dataclass(frozen=True)
class Ready(WorkerEvent):
    opened: Opened  # it opened the export


@dataclass(frozen=True)
class Done(WorkerEvent):
    result: VideoResult


@dataclass(frozen=True)
class Failed(WorkerEvent):
    error: BaseException  # the task raised it (bad input, not a dead worker): the run stops with it


@dataclass(frozen=True)
class Died(WorkerEvent):
    why: str  # how it died (killed, out of memory, its node lost) or could not start


Event = Ready | Done | Failed | Died


class Workers(Protocol):
    """The workers of a pool, addressed by index 0..count-1."""

    count: int

    def launch(self, worker: int) -> None:
        """Start worker ``worker`` (anew, after it died); a ``Ready`` or ``Died`` event follows."""

    def submit(self, worker: int, name: str) -> None:
        """Hand video ``name`` to an idle, ready worker; a ``Done``, ``Failed`` or ``Died`` event follows."""

    def wait(self) -> list[Event]:
        """Block until at least one event."""


def start_workers(workers: Workers) -> Opened:
    """Launch every worker and wait until all are ready; what they opened. BackendError when a worker cannot
    start (its reason), InputError when they opened different exports or backends (the nodes' inputs differ)."""
    for w in range(workers.count):
        workers.launch(w)
    opened: dict[int, Opened] = {}
    while len(opened) < workers.count:
        for event in workers.wait():
            if isinstance(event, Died):
                raise BackendError(event.why)
            if isinstance(event, Ready):
                opened[event.worker] = event.opened
    if len(set(opened.values())) > 1:
        raise InputError(f"the workers opened different exports or backends ({Counter(opened.values())}); "
                           "give every node the same export folder, and pass --backend explicitly")
    return opened[0]


def schedule(workers: Workers, names: Sequence[str], attempts: int = MAX_ATTEMPTS) -> Iterator[VideoResult]:
    """Hand ``names`` to the (started) ``workers``; yield each result as it comes. A worker that dies is started
    anew and its video handed to the next idle worker; after ``attempts`` deaths with one video the run fails,
    as it does when a worker cannot start anew."""
    pending = deque(names)
    tries = Counter[str]()  # video -> workers it was handed to
    idle = list(range(workers.count))
    busy: dict[int, str] = {}  # worker -> its video
    starting: set[int] = set()  # workers launched anew, not ready yet
    while pending or busy:
        while idle and pending:
            w = idle.pop(0)
            name = pending.popleft()
            tries[name] += 1
            workers.submit(w, name)
            busy[w] = name
        for event in workers.wait():
            if isinstance(event, Ready):
                starting.discard(event.worker)
                idle.append(event.worker)
            elif isinstance(event, Done):
                del busy[event.worker]
                idle.append(event.worker)
                yield replace(event.result, attempts=tries[event.result.name])
            elif isinstance(event, Failed):
                raise event.error
            elif isinstance(event, Died):
                if event.worker in starting:  # it could not start anew
                    raise BackendError(event.why)
                if event.worker not in busy:  # it died between videos
                    idle.remove(event.worker)
                else:
                    name = busy.pop(event.worker)
                    if tries[name] >= attempts:
                        raise BackendError(f"video {name}: its worker died {tries[name]} times (last: {event.why});"
                                           " the finished videos are kept: fix the cause and run the same command "
                                           "to resume")
                    log.warning("video %s: its worker died (%s); handing it to another worker", name, event.why)
                    pending.appendleft(name)
                workers.launch(event.worker)
                starting.add(event.worker)


class InProcess:
    """One worker: this process."""

    def __init__(self, spec: SegmenterSpec) -> None:
        self.spec = spec
        self.segmenter: VideoSegmenter | None = None
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def start(self, task: VideoTask) -> Opened:
        self.task = task
        self.segmenter = self.stack.enter_context(self.spec.open())
        return Opened.of(self.segmenter)

    def run(self, names: Sequence[str]) -> Iterator[VideoResult]:
        assert self.segmenter is not None, "start() first"
        for name in names:
            yield segment_one(self.segmenter, self.task, name, "this process")


def _serve(conn: Connection, spec: SegmenterSpec, task: VideoTask, label: str, gpu: str | None) -> None:
    """A worker process: open the export (seeing only ``gpu`` if given), then segment each video name received
    until None (or the driver is gone). Ctrl-C is the driver's to handle (it stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before any CUDA library loads
    label = f"{label} (pid {os.getpid()}{'' if gpu is None else f', GPU {gpu}'})"
    try:
        segmenter = spec.open()
    except Exception as exc:  # noqa: BLE001 - sent to the driver, which stops the run with it
        _send(conn, Died(-1, f"{label} could not open the export: {describe_error(exc)}"))
        return
    with segmenter:
        ok = _send(conn, Ready(-1, Opened.of(segmenter)))
        while ok and (name := _receive(conn)) is not None:
            try:
                event: Event = Done(-1, segment_one(segmenter, task, name, label))
            except (SimVOSError, OSError) as exc:
                event = Failed(-1, exc)
            except Exception as exc:  # noqa: BLE001 - may not pickle: sent as a line
                event = Failed(-1, BackendError(f"{label}, video {name}: {type(exc).__name__}: {exc}"))
            ok = _send(conn, event)


def _receive(conn: Connection) -> str | None:
    """The next video name from the driver; None when it says stop or has gone."""
    try:
        return conn.recv()  # type: ignore[no-any-return]
    except (EOFError, OSError):
        return None


def _send(conn: Connection, event: Event) -> bool:
    """Send ``event`` to the driver; False when it has gone (it stopped the run)."""
    try:
        conn.send(event)
    except OSError:
        return False
    return True


class Processes:
    """``count`` worker processes on this machine (spawned: each imports the package and opens the export)."""

    def __init__(self, spec: SegmenterSpec, count: int) -> None:
        self.spec, self.count = spec, count
        self.gpus = gpu_slots(count)
        self.procs: list[mp.process.BaseProcess | None] = [None] * count
        self.conns: list[Connection | None] = [None] * count

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for w in range(self.count):
            self._stop(w)

    def start(self, task: VideoTask) -> Opened:
        self.task = task
        return start_workers(self)

    def run(self, names: Sequence[str]) -> Iterator[VideoResult]:
        return schedule(self, names)

    def launch(self, worker: int) -> None:
        self._stop(worker)
        ctx = mp.get_context("spawn")
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(theirs, self.spec, self.task, f"process {worker + 1}",
                                                self.gpus[worker]), name=f"simvos-worker-{worker + 1}", daemon=True)
        proc.start()
        theirs.close()
        self.procs[worker], self.conns[worker] = proc, ours

    def submit(self, worker: int, name: str) -> None:
        conn = self.conns[worker]
        assert conn is not None
        conn.send(name)

    def wait(self) -> list[Event]:
        live = {conn: w for w, conn in enumerate(self.conns) if conn is not None}
        events: list[Event] = []
        for ready in wait(list(live)):
            conn = cast(Connection, ready)
            w = live[conn]  # a worker's pipe is readable when it sent a message or exited (then EOF)
            try:
                events.append(replace(conn.recv(), worker=w))
            except (EOFError, OSError):
                proc = self.procs[w]
                assert proc is not None
                proc.join(5)
                code = proc.exitcode
                why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                events.append(Died(w, f"worker process {proc.pid}: {why}"))
                self._stop(w)
        return events

    def _stop(self, worker: int) -> None:
        proc, conn = self.procs[worker], self.conns[worker]
        if conn is not None:
            with contextlib.suppress(OSError):  # the worker has gone
                conn.send(None)
            conn.close()
        if proc is not None:
            proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.procs[worker] = self.conns[worker] = None


def gpu_slots(workers: int) -> list[str | None]:
    """The GPU each of ``workers`` processes sees, round robin over this machine's GPUs (``CUDA_VISIBLE_DEVICES``
    if set, else those ``nvidia-smi -L`` lists); all None without a GPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [g.strip() for g in visible.split(",") if g.strip()]
    elif shutil.which("nvidia-smi"):
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        gpus = [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]
    else:
        gpus = []
    return [gpus[w % len(gpus)] if gpus else None for w in range(workers)]


def default_threads(workers: int) -> int:
    """ONNX Runtime threads per graph for ``workers`` processes sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // workers)
