"""The exported graphs: one thin module per stage, tensor-only inputs, static spatial shapes, the object
batch the only dynamic axis (inputs and outputs: model/README.md)."""

from __future__ import annotations

import torch
from torch import nn

from ..manifest import GRAPHS, Graph
from .layers import FrameInput
from .simvos import SimVOS, soft_aggregate


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
    """frame [+ padding] + masks (B, 1, H, W) -> memory (B, M, C): ``(frame, padding, masks)`` with uint8
    input, ``(frame, masks)`` otherwise."""

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


def stage_modules(model: SimVOS, height: int, width: int, uint8_input: bool) -> dict[Graph, nn.Module]:
    """The five graph wrappers of ``model`` at ``height`` x ``width`` (in ``GRAPHS`` order), in evaluation mode:
    what the export traces and the torch backend runs."""
    modules = (QueryEncoder(model, height, width, uint8_input), MemoryEncoder(model, height, width, uint8_input),
               JointDecoder(model, height, width), JointDecoder(model, height, width), Aggregate())
    return {g: m.eval() for g, m in zip(GRAPHS, modules, strict=True)}
