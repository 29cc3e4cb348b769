"""The exported graphs: one thin module per stage, tensor-only inputs, static spatial shapes.

Every graph has the engine's fixed frame size (H, W) and token grid (h, w) baked in
(the position embedding included); the object batch B (ONNX dim ``objects``) is the
only dynamic axis. Names of inputs and outputs are part of the contract between the
export, the manifest and the runtime backends:

======================  ==========================================  ==================================
graph                   inputs                                      outputs
======================  ==========================================  ==================================
``query_encoder``       ``frame``, [``padding``]                    ``query`` (1, N, C) f32
``memory_encoder``      ``frame``, [``padding``], ``masks``         ``memory`` (B, M, C) f32
``joint_decoder_1mem``  ``query``, ``memory_first``                 ``prob`` (B, 1, H, W) f32
``joint_decoder_2mem``  ``query``, ``memory_first``, ``memory_prev``  ``prob`` (B, 1, H, W) f32
``aggregate``           ``prob``                                    ``background`` (1, 1, H, W) f32,
                                                                    ``objects`` (B, 1, H, W) f32,
                                                                    ``labels`` (1, H, W) uint8
======================  ==========================================  ==================================

``frame`` is either uint8 (1, H, W, 3) RGB with ``padding`` int64 (4,) = [left, right,
top, bottom] (normalised inside the graph; the padding band is zeroed after
normalisation, exactly as the official zero-padding of the normalised frame), or
float32 (1, 3, H, W) already normalised and padded (``uint8_input=False``).
``masks`` are the memory frame's masks of all objects (B, 1, H, W) f32: the
first-frame annotation, or the ``objects`` output of ``aggregate`` for the previous
frame. Soft aggregation is its own graph so that it runs in float32 and across all
objects (the decoder may be run in chunks).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import FrameInput
from .simvos import SimVOS, soft_aggregate

GRAPH_NAMES = ("query_encoder", "memory_encoder", "joint_decoder_1mem", "joint_decoder_2mem", "aggregate")


class QueryEncoder(nn.Module):
    """frame -> query (1, N, C): patch embedding, position embedding, blocks[0:L]."""

    def __init__(self, model: SimVOS, height: int, width: int, uint8_input: bool) -> None:
        super().__init__()
        self.model = model
        self.grid = (height // 16, width // 16)
        self.register_buffer("pos", model.position_embedding(self.grid).detach().clone())
        self.frame_input = FrameInput(height, width) if uint8_input else None

    def prepare(self, frame: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        if self.frame_input is None:
            return frame
        assert padding is not None, "uint8 frames need their padding"
        return self.frame_input(frame, padding)

    def forward(self, frame: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.encode_query(self.prepare(frame, padding), self.pos)


class MemoryEncoder(QueryEncoder):
    """frame [+ padding] + masks (B, 1, H, W) -> memory (B, M, C).

    Called as ``(frame, padding, masks)`` with uint8 input, ``(frame, masks)`` otherwise.
    """

    def forward(self, frame: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        padding, masks = rest if self.frame_input is not None else (None, *rest)
        return self.model.encode_memory(self.prepare(frame, padding), masks, self.pos)


class JointDecoder(nn.Module):
    """query (1, N, C) + one or two memories (B, M, C) -> prob (B, 1, H, W)."""

    def __init__(self, model: SimVOS, height: int, width: int) -> None:
        super().__init__()
        self.model = model
        self.grid = (height // 16, width // 16)

    def forward(self, query: torch.Tensor, memory_first: torch.Tensor,
                memory_prev: torch.Tensor | None = None) -> torch.Tensor:
        memories = [memory_first] if memory_prev is None else [memory_first, memory_prev]
        return self.model.decode(query, memories, self.grid)


class Aggregate(nn.Module):
    """prob (B, 1, H, W) of all objects -> background, objects (soft aggregation) and labels."""

    def forward(self, prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        agg = soft_aggregate(prob)  # (B+1, 1, H, W)
        labels = torch.argmax(agg, dim=0).to(torch.uint8)  # (1, H, W)
        return agg[:1], agg[1:], labels
