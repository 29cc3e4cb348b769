"""Workers on a Ray cluster: one actor per GPU (or per ``threads`` CPUs on a cluster without GPUs), each opening
the export once, from its path or from a copy shipped through Ray's object store (no shared disk needed)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import BackendError, InputError, SimVOSError, require
from ..io import staging_folder, write_atomic
from .pools import Died, Done, Event, Failed, Ready, schedule, start_workers
from .videos import Opened, SegmenterSpec, VideoResult, VideoTask, segment_one

log = logging.getLogger(__name__)

#: Where a worker unpacks a shipped export (on its own node).
EXPORT_CACHE = "simvos-trt-exports"


def pack_export(folder: Path) -> dict[str, bytes]:
    """Every file of an export folder (manifest, graphs, engines) by its path inside the folder."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def unpack_export(files: dict[str, bytes], name: str) -> Path:
    """Write a packed export into a new folder under the node's temporary folder; return it."""
    cache = Path(tempfile.gettempdir()) / EXPORT_CACHE
    cache.mkdir(exist_ok=True)
    folder = staging_folder(cache / name)  # removes the copies of workers that were killed
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / path, data)
    return folder


class RayWorker:
    """A Ray actor (made with ``ray.remote`` at run time): the export opened once, videos segmented on call."""

    def __init__(self, spec: SegmenterSpec, task: VideoTask, export: dict[str, bytes] | None, label: str) -> None:
        import ray

        self.copy = unpack_export(export, spec.folder.name) if export is not None else None
        self.task = task
        self.segmenter = spec.open(self.copy)
        self.label = f"{label} (pid {os.getpid()} on {ray.util.get_node_ip_address()})"

    def ready(self) -> Opened:
        return Opened.of(self.segmenter)

    def segment(self, name: str) -> VideoResult:
        return segment_one(self.segmenter, self.task, name, self.label)

    def close(self) -> None:
        self.segmenter.close()
        if self.copy is not None:
            shutil.rmtree(self.copy, ignore_errors=True)


def _last_line(exc: BaseException) -> str:
    """The last line of a Ray error (the original exception, for an error raised in a worker)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    return next((line for line in reversed(lines) if line), type(exc).__name__)


def _start_failure(exc: BaseException) -> str:
    """Why an actor could not start, in one line with its fix."""
    why = _last_line(exc)
    if re.search(r"(ModuleNotFound|Import)Error: .*simvos_trt", why):
        return (f"a Ray worker cannot import the package ({why}); install simvos-trt, the same version, on every "
                "node of the cluster (pip install 'simvos-trt[ray]') or start the cluster from this environment")
    return f"a Ray worker could not start: {why}"


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """InputError unless something listens at a ``host:port`` address (other forms are Ray's to resolve)."""
    m = re.fullmatch(r"\[?([^\]]+?)\]?:(\d+)", address)
    if m is None:
        return
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout).close()
    except OSError as exc:
        raise InputError(f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); start one with "
                         "'ray start --head' and pass the address it prints, or give --ray without an address "
                         "for a cluster on this machine") from exc


class RayPool:
    """``count`` actors on a Ray cluster (default: one per GPU, else one per ``spec.threads`` CPUs, 1 thread when
    unset); ``address`` None starts a cluster on this machine for the run. ``ship_export`` sends the export
    folder through the object store instead of opening it by path on every node."""

    def __init__(self, spec: SegmenterSpec, address: str | None = None, count: int | None = None,
                 ship_export: bool = False) -> None:
        require("ray", "ray", "--ray")
        self.spec = spec
        self.address = address
        self.requested = count  # None: as many as the cluster's GPUs or CPUs allow
        self.ship_export = ship_export
        self.actors: list[Any] = []
        self.calls: dict[Any, int] = {}  # in-flight ObjectRef -> worker
        self.connected = False

    def __enter__(self) -> RayPool:
        import ray

        if not ray.is_initialized():
            if self.address is not None:
                check_reachable(self.address)
            local: dict[str, Any] = {} if self.address else {"include_dashboard": False}  # (Ray Client refuses it)
            try:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False, **local)
            except ConnectionError as exc:
                raise InputError(f"--ray {self.address}: {_last_line(exc)}") from exc
            self.connected = True
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        closing = [a.close.remote() for a in self.actors if a is not None]
        ray.wait(closing, num_returns=len(closing), timeout=10)
        for actor in self.actors:
            if actor is not None:
                ray.kill(actor)
        if self.connected:
            ray.shutdown()

    def _options(self) -> tuple[int, dict[str, Any]]:
        """How many actors, and the resources each asks for; on CPUs, also each one's threads (into ``spec``)."""
        import ray

        have = ray.cluster_resources()
        gpus, cpus = int(have.get("GPU", 0)), int(have.get("CPU", 0))
        if gpus:
            count = self.requested or gpus
            if count > gpus:
                raise InputError(f"--workers {count}: the cluster has {gpus} GPUs, one per worker; ask for at most "
                                 f"{gpus} workers")
            return count, {"num_gpus": 1, "num_cpus": 1}
        threads = self.spec.threads or 1
        self.spec = replace(self.spec, threads=threads)
        count = self.requested or max(1, cpus // threads)
        if count * threads > cpus:
            raise InputError(f"--workers {count} of {threads} threads each need {count * threads} CPUs, the cluster "
                             f"has {cpus}; ask for fewer workers or --threads")
        return count, {"num_cpus": threads}

    def start(self, task: VideoTask) -> Opened:
        import ray

        self.count, self.each = self._options()
        self.task = task
        self.actors = [None] * self.count
        self.export = ray.put(pack_export(self.spec.folder)) if self.ship_export else None
        self.remote = ray.remote(RayWorker).options(max_restarts=0, max_task_retries=0, scheduling_strategy="SPREAD",
                                                    **self.each)
        log.info("%d Ray workers, %s each", self.count, self.each)
        return start_workers(self)

    def run(self, names: Sequence[str]) -> Iterator[VideoResult]:
        return schedule(self, names)

    def launch(self, worker: int) -> None:
        actor: Any = self.remote.remote(self.spec, self.task, self.export, f"worker {worker + 1}")
        self.actors[worker] = actor
        self.calls[actor.ready.remote()] = worker

    def submit(self, worker: int, name: str) -> None:
        self.calls[self.actors[worker].segment.remote(name)] = worker

    def wait(self) -> list[Event]:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        done, _ = ray.wait(list(self.calls), num_returns=1)
        events: list[Event] = []
        for ref in done:
            w = self.calls.pop(ref)
            try:
                value = ray.get(ref)
            except RayActorError as exc:
                self.actors[w] = None
                events.append(Died(w, _start_failure(exc) if "creation task" in str(exc) else _last_line(exc)))
            except RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                error = cause if isinstance(cause, (SimVOSError, OSError)) else BackendError(_last_line(exc))
                events.append(Failed(w, error))
            else:
                events.append(Ready(w, value) if isinstance(value, Opened) else Done(w, value))
        return events
