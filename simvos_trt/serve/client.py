"""The Python client of simvos-serve (Triton's gRPC protocol): the runtime's segmenter API, remotely, over one
server or several (each video placed on one, moved with its state when that one fails: README.md, "Failover")."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import InputError, ServeError, ServerUnreachable, VideoLost, require
from ..runtime.backends.base import Closing
from ..runtime.pipeline import Prefetch
from ..runtime.video import Result, segment_frames
from .protocol import (
    FRAME,
    LABELS,
    MODEL,
    OBJECT_IDS,
    PROB,
    ROUTING_HEADER,
    STATE,
    FrameRequest,
    grpc_address,
    is_not_open,
    server_message,
)
from .remote import RemoteVideo
from .shm import SharedRegion, is_loopback, read_token

log = logging.getLogger(__name__)

#: Seconds a server that failed stays out of new placements (then it is tried again).
RETRY_AFTER = 10.0
#: The gRPC status of a server that cannot be reached or dropped the connection.
UNAVAILABLE = "StatusCode.UNAVAILABLE"
#: Triton's answer to a request naming a shared-memory region it does not know (a restarted server).
UNKNOWN_REGION = "Unable to find shared memory region"


class Endpoint:
    """One simvos-serve server: its ``url`` (HOST:PORT), gRPC client, whether shared memory may be used."""

    def __init__(self, url: str, grpc: Any, shared_memory: bool | None) -> None:
        self.url, self._error = url, grpc.InferenceServerException
        self.shared_memory = is_loopback(url) if shared_memory is None else shared_memory
        self.shared_memory_required = shared_memory is True  # a failed registration is an error, not a fallback
        self.client = grpc.InferenceServerClient(url)
        self.down_since: float | None = None
        self._free: list[SharedRegion] = []  # regions of ended videos, for the next ones
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for region in free:
            region.close()
        self.client.close()

    def takes_videos(self, now: float) -> bool:
        """Whether new videos may be placed here: it never failed, or failed over ``RETRY_AFTER`` seconds ago."""
        return self.down_since is None or now - self.down_since > RETRY_AFTER

    def give_back(self, region: SharedRegion) -> None:
        """Keep the region of a video that ended here for the next video (registering one takes two calls)."""
        with self._lock:
            self._free.append(region)

    def region(self, nbytes: int) -> SharedRegion | None:
        """A shared-memory region of at least ``nbytes`` registered here (one given back, or a new one), or None
        when shared memory is not used."""
        if not self.shared_memory:
            return None
        with self._lock:
            fits = [r for r in self._free if r.nbytes >= nbytes]
            if fits:
                region = min(fits, key=lambda r: r.nbytes)
                self._free.remove(region)
                return region
        try:
            token = read_token(int(self.url.rpartition(":")[2]))
            if token is None:
                raise ServeError("it left no access token for this user (is it on this host, run by this user?)")
            return SharedRegion(self.client, nbytes, token)
        except Exception as exc:  # tritonclient's and the OS's errors: a server in another container, say
            if isinstance(exc, self._error) and exc.status() == UNAVAILABLE:  # the server is gone, not its memory
                raise ServerUnreachable(f"server {self.url}: {_one_line(str(exc))}") from None
            if self.shared_memory_required:
                raise ServeError(f"server {self.url}: cannot share memory with it ({_one_line(str(exc))}); is it "
                                 "on this host? Pass shared_memory=False to send tensors over gRPC") from None
            log.warning("server %s: shared memory unavailable (%s); sending tensors over gRPC", self.url, exc)
            self.shared_memory = False
            return None


class SegmentationClient(Closing):
    """A thread-safe connection to simvos-serve: ``servers`` is one gRPC endpoint HOST[:PORT] or several,
    comma-separated or as a list; ``timeout`` seconds per request; ``shared_memory`` passes a video's frames and
    labels through Triton's system shared memory (None: for loopback addresses; True: required; False: never);
    ``exact_failover`` has every answer carry the video's state (4 bytes per engine pixel and object) so that a
    failover continues exactly, not closely (README.md, "Failover"). ServeError when no server can be reached or
    one serves no ready ``simvos`` model."""

    def __init__(self, servers: str | Iterable[str], *, timeout: float = 600.0, shared_memory: bool | None = None,
                 exact_failover: bool = True) -> None:
        require("tritonclient", "client", "the simvos-serve client")
        import tritonclient.grpc as grpc
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        urls = [grpc_address(u.strip()) for u in (servers.split(",") if isinstance(servers, str) else servers)]
        if not urls or len(set(urls)) != len(urls):
            raise InputError(f"servers: got {servers!r}, expected one or more distinct HOST:PORT addresses")
        self.timeout, self.grpc, self.exact_failover = timeout, grpc, exact_failover
        self._error, self._dtype = InferenceServerException, np_to_triton_dtype
        self._lock = threading.Lock()
        self.endpoints = [Endpoint(url, grpc, shared_memory) for url in urls]
        problems = [p for p in map(self._check_ready, self.endpoints) if p]
        if len(problems) == len(urls):
            raise ServeError("; ".join(problems))
        for problem in problems:
            log.warning("%s; placing videos on the other servers", problem)

    @property
    def url(self) -> str:
        """The servers, comma-separated (one server: its HOST:PORT)."""
        return ",".join(e.url for e in self.endpoints)

    def _check_ready(self, endpoint: Endpoint) -> str | None:
        """Why ``endpoint`` cannot serve (it is then marked down), or None."""
        try:
            if endpoint.client.is_model_ready(MODEL):
                return None
            problem = f"server {endpoint.url} has no ready model '{MODEL}': is it a simvos-serve server?"
        except self._error as exc:
            problem = (f"server {endpoint.url}: cannot reach it ({_one_line(exc.message())}); start one with "
                       "simvos-serve --engine-dir DIR and give its gRPC port (default 8001)")
        self.mark_down(endpoint)
        return problem

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()

    def video(self, video_id: str | None = None) -> RemoteVideo:
        """A new, not yet started, video (a random id unless given), placed when it starts."""
        return RemoteVideo(self, video_id or uuid.uuid4().hex)

    def segment(self, frames: Iterable[np.ndarray], masks: np.ndarray | Mapping[int, np.ndarray], *,
                bgr: bool = False, return_prob: bool = False) -> Iterator[Result]:
        """As ``VideoSegmenter.segment``, through the servers, the next frames taken from ``frames`` (decoded, if
        it decodes them) while a request is under way; the video is ended when the iteration ends."""
        ahead = Prefetch(frames) if isinstance(frames, Iterator) else frames  # lists and arrays are decoded
        with self.video() as video:
            yield from segment_frames(video, ahead, masks, bgr=bgr, return_prob=return_prob)

    def place(self, video_id: str, avoid: Endpoint | None = None) -> Endpoint:
        """The server for ``video_id``: of the live servers (not ``avoid``), the one that ranks highest for it
        (rendezvous hashing: a video stays where it is while its server lives, and when a server fails only its
        videos move). ServeError when no server is left."""
        now = time.monotonic()
        with self._lock:
            live = [e for e in self.endpoints if e is not avoid and e.takes_videos(now)]
        if not live:
            raise ServeError(f"video {video_id!r}: no server left to place it on (of {self.url})")
        return max(live, key=lambda e: hashlib.blake2b(f"{e.url}/{video_id}".encode(), digest_size=8).digest())

    def mark_down(self, endpoint: Endpoint) -> None:
        """Keep ``endpoint`` out of new placements for ``RETRY_AFTER`` seconds."""
        with self._lock:
            endpoint.down_since = time.monotonic()

    def infer(self, request: FrameRequest, endpoint: Endpoint | None = None,
              region: SharedRegion | None = None) -> dict[str, np.ndarray]:
        """Send one request as it is to ``endpoint`` (default: where ``place`` puts its video), its frame, mask
        and labels through ``region`` if given; returns its output tensors by name. Raises ServerUnreachable when the
        server cannot be reached, ServeError with the server's reason when it refuses."""
        endpoint = endpoint or self.place(request.video_id)
        tensors = request.tensors()
        shared = region if FRAME in tensors else None  # only a request with a frame has labels to share
        if shared is not None:
            inputs, labels = shared.request(self.grpc, tensors, tensors[FRAME].shape[:2])
            wanted = [OBJECT_IDS]
            if request.return_prob:
                wanted.append(PROB)
            if request.return_state:
                wanted.append(STATE)
            outputs = [labels, *(self.grpc.InferRequestedOutput(name) for name in wanted)]
        else:
            inputs, outputs = [self._input(name, array) for name, array in tensors.items()], None
        try:
            result = endpoint.client.infer(MODEL, inputs, outputs=outputs, parameters=request.parameters(),
                                           client_timeout=self.timeout, headers={ROUTING_HEADER: request.video_id})
        except self._error as exc:
            text = exc.message() or str(exc)
            if exc.status() == UNAVAILABLE:
                raise ServerUnreachable(f"server {endpoint.url}: {_one_line(text)}") from None
            reason = server_message(text)
            region_lost = shared is not None and UNKNOWN_REGION in text  # the server restarted
            if is_not_open(reason, request.video_id) or region_lost:
                raise VideoLost(f"server {endpoint.url}: {reason or _one_line(text)}") from None
            raise ServeError(f"server {endpoint.url}: {reason or _one_line(text)}") from None
        names = {o.name for o in result.get_response().outputs}
        out = {name: result.as_numpy(name) for name in names if name != LABELS}
        if LABELS in names:
            out[LABELS] = result.as_numpy(LABELS) if shared is None else shared.labels()
        return out

    def _input(self, name: str, array: np.ndarray) -> Any:
        tensor = self.grpc.InferInput(name, list(array.shape), self._dtype(array.dtype))
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        return tensor


def _one_line(text: str) -> str:
    return " ".join(text.split())[:400]
