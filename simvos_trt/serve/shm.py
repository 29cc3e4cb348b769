"""Triton system shared memory for a client on the server's host: the tensors of a request and its labels pass
through one region of /dev/shm instead of the gRPC message (README.md, "Shared memory")."""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..runtime.backends.base import Closing

log = logging.getLogger(__name__)


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
    """One region registered with one server (``client``: its tritonclient gRPC client), ``nbytes`` long: a
    request's input tensors are written at its start, its ``labels`` output follows them."""

    def __init__(self, client: Any, nbytes: int) -> None:
        import tritonclient.utils.shared_memory as shm

        self.client, self.nbytes, self._shm = client, nbytes, shm
        self.name = f"simvos-{uuid.uuid4().hex}"
        self.key = f"/{self.name}"
        self._handle = shm.create_shared_memory_region(self.name, self.key, nbytes, create_only=True)
        try:
            client.register_system_shared_memory(self.name, self.key, nbytes)
        except BaseException:
            shm.destroy_shared_memory_region(self._handle)
            raise

    def close(self) -> None:
        """Unregister the region (quietly: its server may be gone) and free it."""
        if self._handle is None:
            return
        try:
            self.client.unregister_system_shared_memory(self.name)
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
        output = grpc.InferRequestedOutput("labels")
        output.set_shared_memory(self.name, labels[0] * labels[1], offset)
        self._labels = (offset, labels)
        return inputs, output

    def labels(self) -> np.ndarray:
        """A copy of the labels the server wrote for the last ``request``."""
        offset, shape = self._labels
        return np.array(self._shm.get_contents_as_numpy(self._handle, np.uint8, shape, offset))
