"""The runtime behind NVIDIA Triton Inference Server (through PyTriton): one model, ``simvos``."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sysconfig
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, RequestRefused, ServeError, SimVOSError, describe_error, require
from ..manifest import read_manifest
from ..runtime import AUTO, VideoSegmenter, backend_options
from ..runtime.backends.base import Closing
from .protocol import (
    ERROR_MARKER,
    GRPC_PORT,
    HTTP_PORT,
    INPUTS,
    LOOPBACK,
    METRICS_PORT,
    MODEL,
    OUTPUTS,
    FrameRequest,
)
from .sessions import Limits, VideoStore
from .shm import unregister_orphans, write_token

log = logging.getLogger(__name__)

#: Seconds between two looks for the shared-memory regions of clients that died.
ORPHANS_EVERY = 30.0
#: Starts of Triton tried when PyTriton's start-up handshake with its model instances is refused (README.md).
START_TRIES = 3


@dataclass(frozen=True)
class ServeConfig:
    """What ``simvos-serve`` serves (an export folder, on a backend), where (Triton's address and ports), and its
    ``limits`` (README.md)."""

    folder: Path
    backend: str = AUTO
    host: str = LOOPBACK  # the address of all three endpoints: this machine only unless told otherwise
    http_port: int = HTTP_PORT
    grpc_port: int = GRPC_PORT
    metrics_port: int = METRICS_PORT
    instances: int = 1  # Triton model instances: requests (of different videos) run at once
    limits: Limits = Limits()
    triton_log: Path | None = None  # Triton's own log (None: triton.log in a private temporary folder)
    threads: int | None = None  # ONNX Runtime intra-op threads per graph (None: all cores)

    def __post_init__(self) -> None:
        if self.instances < 1:
            raise InputError(f"instances must be >= 1, got {self.instances}")


class SegmentationServer(Closing):
    """Serves one export folder on Triton until closed: ``with SegmentationServer(config) as s: s.wait(stop)``."""

    def __init__(self, config: ServeConfig) -> None:
        require("pytriton", "serve", "simvos-serve")
        self.config = config
        self._triton: Any = None
        self._segmenter: VideoSegmenter | None = None
        self._store: VideoStore | None = None
        self._libdir: tempfile.TemporaryDirectory[str] | None = None
        self._token_file: Path | None = None
        self._token = ""
        self.triton_log = config.triton_log

    def __enter__(self) -> SegmentationServer:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        c = self.config
        for flag, port in (("--http-port", c.http_port), ("--grpc-port", c.grpc_port),
                           ("--metrics-port", c.metrics_port)):
            check_port(c.host, port, flag)
        max_objects = read_manifest(c.folder, verify=False).max_objects
        max_buffers = c.limits.tensorrt_buffers(c.instances, max_objects)  # pools max_videos videos never exhaust
        options = backend_options(c.backend, threads=c.threads, max_buffers=max_buffers)
        self._segmenter = VideoSegmenter.open(c.folder, c.backend, **options)
        self._store = VideoStore(self._segmenter, c.limits)
        self._libdir = tempfile.TemporaryDirectory(prefix="simvos-serve-")
        os.environ["LD_LIBRARY_PATH"] = ":".join(filter(None, [link_libpython(Path(self._libdir.name)),
                                                             os.environ.get("LD_LIBRARY_PATH")]))
        if self.triton_log is None:  # a folder only this user may open (mkdtemp: 0700)
            self.triton_log = Path(tempfile.mkdtemp(prefix="simvos-serve-log-")) / "triton.log"
        token = secrets.token_urlsafe(32)  # PyTriton restricts shared memory, model control... to callers with it
        for attempt in range(1, START_TRIES + 1):
            try:
                self._run_triton(token)
                break
            except Exception as exc:  # PyTriton's errors have no common base: a timeout, a model that did not load
                self._stop_triton()
                cause = f"{type(exc).__name__}: {describe_error(exc)}"
                if not handshake_refused(cause):
                    raise ServeError(f"Triton Inference Server did not start ({cause}); see its log "
                                     f"({self.triton_log})") from exc
                if attempt == START_TRIES:
                    raise ServeError(f"Triton Inference Server did not start in {START_TRIES} attempts: PyTriton's "
                                     f"start-up handshake with its model instances was refused each time (last: "
                                     f"{cause}); see its log ({self.triton_log})") from exc
                log.warning("Triton Inference Server did not start (attempt %d of %d): its model instances' "
                            "start-up handshake was refused (%s); starting it again", attempt, START_TRIES, cause)
        self._token = token
        self._token_file = write_token(c.grpc_port, token)  # for clients of this user on this host (shared memory)
        log.info("serving %s (%s) on Triton", c.folder, c.backend)

    def _run_triton(self, token: str) -> None:
        """Start Triton (a new PyTriton workspace) with the model ``simvos``, callers with ``token`` unrestricted."""
        from pytriton.model_config import ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

        c = self.config
        triton_config = TritonConfig(http_address=c.host, http_port=c.http_port, grpc_address=c.host,
                                     grpc_port=c.grpc_port, metrics_address=c.host, metrics_port=c.metrics_port,
                                     exit_timeout_secs=5, log_file=self.triton_log)
        self._triton = Triton(config=triton_config, security_config=TritonSecurityConfig(access_token=token))
        self._triton.bind(
            model_name=MODEL, infer_func=[self._infer] * c.instances,
            inputs=[Tensor(name=name, dtype=dtype, shape=shape, optional=True)
                    for name, (dtype, shape) in INPUTS.items()],
            outputs=[Tensor(name=name, dtype=dtype, shape=shape) for name, (dtype, shape) in OUTPUTS.items()],
            config=ModelConfig(batching=False), strict=True)
        self._triton.run()

    def _stop_triton(self) -> None:
        if self._triton is not None:
            self._triton.stop()
            self._triton = None

    def wait(self, stop: threading.Event, poll: float = 1.0) -> None:
        """Serve until ``stop`` is set; raises ServeError if Triton stops by itself. Every ``ORPHANS_EVERY``
        seconds, unregisters the shared-memory regions of clients that died (README.md, Shared memory)."""
        import tritonclient.grpc as grpc

        c, last = self.config, time.monotonic()
        host = LOOPBACK if c.host in ("0.0.0.0", "::") else c.host  # this machine's own Triton
        with grpc.InferenceServerClient(f"[{host}]:{c.grpc_port}" if ":" in host else f"{host}:{c.grpc_port}") as own:
            while not stop.wait(poll):
                if not self._triton.is_alive():
                    raise ServeError(f"Triton Inference Server stopped unexpectedly; see its log ({self.triton_log})")
                if time.monotonic() - last > ORPHANS_EVERY:
                    last = time.monotonic()
                    for name in unregister_orphans(own, self._token):
                        log.info("unregistered the shared-memory region %s: its client is gone", name)

    def close(self) -> None:
        """Stop Triton, close every video and free the graphs (idempotent)."""
        self._stop_triton()
        for part in (self._store, self._segmenter):  # the videos before the graphs they run on
            if part is not None:
                part.close()
        self._store = self._segmenter = None
        if self._libdir is not None:
            self._libdir.cleanup()
            self._libdir = None
        if self._token_file is not None:
            self._token_file.unlink(missing_ok=True)
            self._token_file = None

    def summary_line(self) -> str:
        """One line: what is served where."""
        c, seg = self.config, self._segmenter
        assert seg is not None, "the server is not started"
        m = seg.manifest
        return (f"model '{MODEL}' serves {c.folder} ({seg.backend.name}, {m.height}x{m.width}) with {c.instances} "
                f"instance(s) on {c.host}: HTTP :{c.http_port}, gRPC :{c.grpc_port}, metrics :{c.metrics_port}")

    def _infer(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        """PyTriton's inference callable: one request at a time (no batching)."""
        assert self._store is not None
        answers = []
        for request in requests:
            try:
                answers.append(self._store.handle(FrameRequest.parse(dict(request.items()), request.parameters or {})))
            except SimVOSError as exc:
                message = describe_error(exc)
                log.info("request refused: %s", message)
                raise RequestRefused(ERROR_MARKER + message) from None  # the client reads what follows the marker
            except Exception as exc:
                log.exception("request failed")  # the details stay in the server's log
                raise RequestRefused(f"{ERROR_MARKER}internal error ({type(exc).__name__}); the server's log has "
                                     "the details") from None
        return answers


def link_libpython(folder: Path) -> str:
    """Link this interpreter's libpython into ``folder`` for Triton's Python backend stub (README.md);
    returns ``folder`` for LD_LIBRARY_PATH."""
    name, libdir = sysconfig.get_config_var("INSTSONAME"), sysconfig.get_config_var("LIBDIR")
    library = Path(libdir or "") / (name or "")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not library.is_file():
        raise ServeError(f"simvos-serve needs a Python built with a shared libpython (--enable-shared); this one "
                         f"({sysconfig.get_config_var('VERSION')}) has none at {library}: use a distribution's "
                         "python3 (e.g. Debian's /usr/bin/python3.11) or pyenv with "
                         "PYTHON_CONFIGURE_OPTS=--enable-shared")
    (folder / library.name).symlink_to(library)
    return str(folder)


def check_port(host: str, port: int, flag: str) -> None:
    """Raise ServeError unless ``port`` is free on ``host`` (the address Triton will listen on)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Triton: a port in TIME_WAIT is free
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServeError(f"{flag} {port}: cannot listen on {host}:{port} ({exc.strerror}); choose another "
                             "port") from None


def handshake_refused(cause: str) -> bool:
    """Whether Triton's error ``cause`` says a model instance's start-up handshake with PyTriton was refused."""
    return "get_config_from_handshake_server" in cause and "ConnectionRefusedError" in cause
