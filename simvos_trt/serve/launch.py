"""simvos-serve in a child process on free local ports (tests, benchmarks, notebooks)."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from ..errors import ServeError

#: The start of the line simvos-serve prints when it serves.
READY = "simvos-serve: ready"
#: The environment variable naming the Python that runs the server (PyTriton pins numpy < 2: README.md).
PYTHON_ENV = "SIMVOS_SERVE_PYTHON"


def serve_python() -> str:
    """The Python that runs ``ServerProcess`` servers: $SIMVOS_SERVE_PYTHON, else this one."""
    return os.environ.get(PYTHON_ENV) or sys.executable


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now (another process may take one before use)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


class ServerProcess:
    """Runs ``simvos-serve --engine-dir folder *options`` with ``python`` (default ``serve_python()``)
    until the ``with`` block ends; ``url`` is its gRPC endpoint, ``log`` gets its stderr and Triton's log."""

    def __init__(self, folder: str | Path, *options: str, python: str | None = None, log: Path | None = None,
                 startup_timeout: float = 180.0) -> None:
        self.folder, self.options, self.log, self.startup_timeout = Path(folder), options, log, startup_timeout
        self.python = python or serve_python()
        self.grpc_port, self.http_port, self.metrics_port = free_ports(3)
        self.url = f"127.0.0.1:{self.grpc_port}"
        self.process: subprocess.Popen[str] | None = None
        self.ready_line = ""

    def __enter__(self) -> ServerProcess:
        cmd = [self.python, "-m", "simvos_trt.cli.serve", "--engine-dir", str(self.folder),
               "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
               "--metrics-port", str(self.metrics_port), *self.options]
        if self.log is not None and "--triton-log" not in self.options:
            cmd += ["--triton-log", str(self.log.with_suffix(".triton.log"))]
        log = open(self.log, "w") if self.log is not None else contextlib.nullcontext(subprocess.DEVNULL)  # noqa: SIM115
        with log as err:
            # a session of its own: ``kill`` reaches Triton and its Python backend stubs too
            self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                            start_new_session=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump, args=(self.process.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.ready_line.startswith(READY):
            try:
                self.ready_line = lines.get(timeout=0.5).strip()
            except queue.Empty:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop(signal.SIGKILL)
                    raise ServeError(f"simvos-serve did not become ready (exit code {self.process.returncode}); "
                                     f"see {self.log or 'its log (pass log=...)'}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the server and wait for it; returns its exit code (killed after ``timeout``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the server and every process it started (Triton, its Python backend stubs), as when its
        machine fails: nothing is cleaned up."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)
