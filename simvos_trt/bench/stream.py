"""The streaming runtime's per-frame step in PyTorch on static device buffers, and its timing.

    stream = TorchStream(model, 480, 864, objects=2)        # model on its device, float32 or to_fp16
    stream.start(frames[0], first_masks); stream.first_step(frames[1])
    stream.use(compile=True); stream.capture()             # optional: torch.compile, a CUDA graph
    ms = time_steps(stream, frames, count=20, minimum=5, until=deadline)

One ``step`` is what the runtime does per frame (``runtime.session.VideoSession.step``):
the previous frame's memory encoded from its soft-aggregated objects, the query encoded
once for all objects, the joint decoder over [first, previous] memories with the objects
batched, soft aggregation in float32 and the label map; the first frame's memory is
cached. Casts follow ``model.propagate``; a test checks the two agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..model.layers import FrameInput
from ..model.simvos import SimVOS, soft_aggregate

Tensors = tuple[torch.Tensor, torch.Tensor]


class TorchStream:
    """One video's state in fixed device buffers, so a step can be compiled or captured as a CUDA graph.

    Buffers: ``frame`` (1, H, W, 3) uint8, the frame to segment; ``prev_frame`` and
    ``prev_objects`` (B, 1, H, W) float32, the previous frame and its probabilities;
    ``labels`` (1, H, W) uint8, the last result (0 background, i for object i).
    """

    def __init__(self, model: SimVOS, height: int, width: int, objects: int) -> None:
        self.model = model
        self.device = model.patch_embed.proj.weight.device
        self.dtype = model.patch_embed.proj.weight.dtype  # float16 under precision.to_fp16
        self.grid = (height // 16, width // 16)
        with torch.no_grad():
            self.pos = model.position_embedding(self.grid)  # (1, N, C), fixed per size as in the graphs
        self.normalise = FrameInput(height, width).to(self.device)
        self.padding = torch.zeros(4, dtype=torch.int64, device=self.device)  # frames have the engine size
        self.frame = torch.zeros((1, height, width, 3), dtype=torch.uint8, device=self.device)
        self.prev_frame = torch.zeros_like(self.frame)
        self.prev_objects = torch.zeros((objects, 1, height, width), device=self.device)
        self.labels = torch.zeros((1, height, width), dtype=torch.uint8, device=self.device)
        self.memory_first = torch.empty(0, device=self.device)
        self.advance: Callable[..., Tensors] = self._advance
        self.run: Callable[[], None] = self.step  # or a CUDA graph's replay after ``capture``
        self.graph: torch.cuda.CUDAGraph | None = None

    def _input(self, frame: torch.Tensor) -> torch.Tensor:
        # (1, 3, H, W); contiguous as propagate's frames: a permuted layout changes FP16 CPU convolutions' rounding
        return self.normalise(frame, self.padding).to(self.dtype).contiguous()

    def _memory(self, frame: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.model.encode_memory(self._input(frame), masks, self.pos)  # (B, M, C); masks float32

    def _aggregate(self, prob: torch.Tensor) -> Tensors:
        agg = soft_aggregate(prob.float())  # (B+1, 1, H, W) float32
        return torch.argmax(agg, dim=0).to(torch.uint8), agg[1:]

    def _advance(self, frame: torch.Tensor, prev_frame: torch.Tensor, prev_objects: torch.Tensor,
                 memory_first: torch.Tensor) -> Tensors:
        memory_prev = self._memory(prev_frame, prev_objects)
        query = self.model.encode_query(self._input(frame), self.pos)  # (1, N, C)
        return self._aggregate(self.model.decode(query, [memory_first, memory_prev], self.grid))

    @torch.inference_mode()
    def start(self, frame: torch.Tensor, masks: torch.Tensor) -> None:
        """Cache the first frame's memory: ``frame`` (1, H, W, 3) uint8, ``masks`` (B, 1, H, W) 0/1 float32."""
        self.memory_first = self._memory(frame.to(self.device), masks.to(self.device))

    @torch.inference_mode()
    def first_step(self, frame: torch.Tensor) -> None:
        """The first propagated frame, decoded against the first memory alone."""
        self.frame.copy_(frame)
        query = self.model.encode_query(self._input(self.frame), self.pos)
        labels, objects = self._aggregate(self.model.decode(query, [self.memory_first], self.grid))
        self._keep(labels, objects)

    @torch.inference_mode()
    def step(self) -> None:
        """Segment ``frame`` against [first, previous] memories; the state moves on by one frame."""
        self._keep(*self.advance(self.frame, self.prev_frame, self.prev_objects, self.memory_first))

    def _keep(self, labels: torch.Tensor, objects: torch.Tensor) -> None:
        self.labels.copy_(labels)
        self.prev_frame.copy_(self.frame)
        self.prev_objects.copy_(objects)

    def use_compile(self, backend: str = "inductor") -> None:
        """Run the step through ``torch.compile`` (compiled at the next step)."""
        torch._dynamo.reset()  # one code object serves every model: start each from a clean cache
        self.advance = torch.compile(self._advance, backend=backend, fullgraph=True)

    def capture(self, warmup: int = 2) -> None:
        """Record one step as a CUDA graph; ``run`` replays it (every step after this one is the replay)."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self.step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step()
        self.graph = graph
        self.run = graph.replay


def time_steps(stream: TorchStream, frames: Sequence[torch.Tensor], *, count: int, minimum: int,
               until: float) -> tuple[list[float], list[float]]:
    """Time up to ``count`` whole steps, each from the frame's upload to the labels on the host.

    Stops early once ``time.monotonic()`` passes ``until`` with ``minimum`` steps timed.
    ``frames`` are (1, H, W, 3) uint8 host tensors (pinned on a GPU), used in turn. Returns
    (per-step ms, wall ms): on CUDA the first from CUDA events, nothing synchronised
    inside the step; on a CPU both are the wall clock.
    """
    cuda = stream.device.type == "cuda"
    host = torch.empty(stream.labels.shape, dtype=torch.uint8, pin_memory=cuda)
    steps: list[float] = []
    walls: list[float] = []
    for i in range(count):
        if i >= minimum and time.monotonic() > until:
            break
        events = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if cuda else []
        t0 = time.perf_counter()
        if events:
            events[0].record()
        stream.frame.copy_(frames[i % len(frames)], non_blocking=cuda)
        stream.run()
        host.copy_(stream.labels, non_blocking=cuda)
        if events:
            events[1].record()
            events[1].synchronize()
        walls.append(1000 * (time.perf_counter() - t0))
        steps.append(events[0].elapsed_time(events[1]) if events else walls[-1])
    return steps, walls


def video_tensors(frames: np.ndarray, first_mask: np.ndarray, objects: int,
                  pin: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Host frames (1, H, W, 3) uint8 (pinned if ``pin``) and the first frame's (B, 1, H, W) one-hot masks."""
    tensors = [torch.from_numpy(np.ascontiguousarray(f))[None] for f in frames]
    masks = torch.from_numpy(np.stack([first_mask == i + 1 for i in range(objects)]).astype(np.float32))[:, None]
    return [t.pin_memory() for t in tensors] if pin else tensors, masks
