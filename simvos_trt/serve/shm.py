"""Triton system shared memory for a client on the server's host: the tensors of a request and its labels pass
through one region of /dev/shm instead of the gRPC message (README.md, "Shared memory")."""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ServeError
from ..runtime.backends.base import Closing
from .protocol import LABELS

log = logging.getLogger(__name__)

#: The gRPC header with the token of Triton's restricted protocols: PyTriton restricts the shared-memory calls
#: (and model control, statistics, trace, logging) to callers that send it.
TOKEN_HEADER = "triton-grpc-protocol-triton-access-token"


def token_file(grpc_port: int) -> Path:
    """Where the server on this host with gRPC port ``grpc_port`` leaves its access token for its own user's
    clients (a folder only that user may open)."""
    return Path(tempfile.gettempdir()) / f"simvos-serve-{os.getuid()}" / f"grpc-{grpc_port}.token"


def write_token(grpc_port: int, token: str) -> Path:
    """Write ``token`` to ``token_file(grpc_port)`` (mode 0600, in a 0700 folder of this user's)."""
    path = token_file(grpc_port)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    _check_private(path.parent)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.replace(tmp, path)
    return path


def read_token(grpc_port: int) -> str | None:
    """The token of the server on this host at ``grpc_port`` (None if it left none for this user)."""
    path = token_file(grpc_port)
    try:
        _check_private(path.parent)
        return path.read_text().strip()
    except (OSError, ServeError) as exc:
        log.debug("no access token for gRPC port %d: %s", grpc_port, exc)
        return None


def _check_private(folder: Path) -> None:
    info = folder.stat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise ServeError(f"{folder} is not a folder of this user's that only it may open; remove it (the server "
                         "recreates it)")


def is_loopback(url: str) -> bool:
    """Whether the ``HOST:PORT`` address ``url`` names this machine by a loopback address or ``localhost``."""
    host = url.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


class SharedRegion(Closing):
    """One region registered with one server (``client``: its tritonclient gRPC client; ``token``: its access
    token), ``nbytes`` long: a request's input tensors are written at its start, its ``labels`` output follows."""

    def __init__(self, client: Any, nbytes: int, token: str) -> None:
        import tritonclient.utils.shared_memory as shm

        self.client, self.nbytes, self._shm = client, nbytes, shm
        self.name = f"simvos-{uuid.uuid4().hex}"
        self.key = f"/{self.name}"
        self._headers = {TOKEN_HEADER: token}
        self._handle = shm.create_shared_memory_region(self.name, self.key, nbytes, create_only=True)
        try:
            client.register_system_shared_memory(self.name, self.key, nbytes, headers=self._headers)
        except BaseException:
            shm.destroy_shared_memory_region(self._handle)
            raise

    def close(self) -> None:
        """Unregister the region (quietly: its server may be gone) and free it."""
        if self._handle is None:
            return
        try:
            self.client.unregister_system_shared_memory(self.name, headers=self._headers)
        except Exception as exc:  # the server died or restarted: nothing is registered there any more
            log.debug("unregistering %s: %s", self.name, exc)
        self._shm.destroy_shared_memory_region(self._handle)
        self._handle = None

    def request(self, grpc: Any, tensors: Mapping[str, np.ndarray], labels: tuple[int, int]) -> tuple[list, Any]:
        """The InferInputs of ``tensors`` written into the region and the requested ``labels`` output of shape
        ``labels`` placed after them (tritonclient.grpc is ``grpc``)."""
        inputs, offset = [], 0
        for name, array in tensors.items():
            self._shm.set_shared_memory_region(self._handle, [np.ascontiguousarray(array)], offset)
            tensor = grpc.InferInput(name, list(array.shape), "UINT8")
            tensor.set_shared_memory(self.name, array.nbytes, offset)
            inputs.append(tensor)
            offset += array.nbytes
        output = grpc.InferRequestedOutput(LABELS)
        output.set_shared_memory(self.name, labels[0] * labels[1], offset)
        self._labels = (offset, labels)
        return inputs, output

    def labels(self) -> np.ndarray:
        """A copy of the labels the server wrote for the last ``request``."""
        offset, shape = self._labels
        return np.array(self._shm.get_contents_as_numpy(self._handle, np.uint8, shape, offset))


def unregister_orphans(client: Any, token: str) -> list[str]:
    """Unregister this package's regions whose segment is gone from /dev/shm (their client died: its resource
    tracker unlinked them), so Triton unmaps them; returns their names. ``client``: a tritonclient gRPC client
    of the server itself."""
    headers = {TOKEN_HEADER: token}
    status = client.get_system_shared_memory_status(headers=headers, as_json=True)
    orphans = [r["name"] for r in status.get("regions", {}).values()
               if r["name"].startswith("simvos-") and not (Path("/dev/shm") / r["key"].lstrip("/")).exists()]
    for name in orphans:
        client.unregister_system_shared_memory(name, headers=headers)
    return orphans
