"""Token refinement (paper eq. 3-5) with static ops only: a finite fill and a validity mask in place
of the official ``-inf`` and ``nan_to_num`` (model/README.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Logit given to suppressed positions: finite in float16, yet its softmax weight underflows to 0.
SUPPRESSED_LOGIT = -1.0e4


class TokenRefiner(nn.Module):
    """One branch of token refinement (``tlearner`` or ``tlearner_back``): LayerNorm(C+1) of [features,
    weight] -> Conv3x3 (C+1 -> C/4, no bias) -> GELU -> Linear (C/4 -> K) gives logits over N positions."""

    def __init__(self, dim: int, num_tokens: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.norm = nn.LayerNorm(dim)
        self.input_norm = nn.LayerNorm(dim + 1)
        self.patch_to_cluster_atten = nn.Sequential(nn.Conv2d(dim + 1, dim // 4, kernel_size=3, padding=1, bias=False),
                                                    nn.GELU())
        self.patch_to_cluster_linear = nn.Linear(dim // 4, num_tokens)

    def forward(self, x: torch.Tensor, weight: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, C) prototypes of B frames from x (B, h, w, C) tokens after block L, their weight map
        (B, 1, h, w) and ``valid`` (B, 1, h, w) bool, the positions taken (default ``weight != 0``)."""
        B, h, w, C = x.shape
        valid = weight != 0 if valid is None else valid
        sel = torch.cat((x, weight.permute(0, 2, 3, 1).to(x.dtype)), dim=-1)  # (B, h, w, C+1)
        sel = self.input_norm(sel).permute(0, 3, 1, 2)  # (B, C+1, h, w)
        sel = self.patch_to_cluster_atten(sel).permute(0, 2, 3, 1)  # (B, h, w, C/4)
        logits = self.patch_to_cluster_linear(sel.reshape(B, h * w, -1))  # (B, N, K)
        logits = logits.transpose(1, 2)  # (B, K, N)
        attn = masked_softmax(logits, valid.reshape(B, 1, h * w))  # (B, K, N)
        out = attn @ x.reshape(B, h * w, C)  # (B, K, C)
        return self.norm(out)


def masked_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax of (..., N) ``logits`` over the last axis restricted to ``valid`` (bool, broadcastable);
    all-invalid rows give zeros."""
    filled = torch.where(valid, logits, torch.full_like(logits, SUPPRESSED_LOGIT))
    return F.softmax(filled, dim=-1) * valid.to(logits.dtype)


def refinement_weights(masks: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(fg, bg) weight maps, each (B, 1, h, w) float32 on the token ``grid``, of the (B, 1, H, W) float32 masks of
    ALL objects of the video, as the official inference forms them (each depends on every mask: model/README.md)."""
    planes = masks.permute(1, 0, 2, 3)  # (1, B, H, W)
    bg = torch.ones_like(masks[0:1]) - torch.sum(planes, dim=1, keepdim=True)  # (1, 1, H, W)
    bg = torch.where(bg == 1, bg, torch.zeros_like(bg))
    both = torch.cat((bg, planes), dim=1)  # (1, B+1, H, W)
    props = F.interpolate(both, size=grid, mode="bilinear", align_corners=False)  # (1, B+1, h, w)
    winner = torch.argmax(props, dim=1, keepdim=True)  # (1, 1, h, w)
    channels = torch.arange(props.shape[1], device=props.device).view(1, -1, 1, 1)
    hard = (winner == channels).to(props.dtype)[:, 1:]  # (1, B, h, w)
    prob = props[:, 1:]
    fg = (prob * hard).permute(1, 0, 2, 3)  # (B, 1, h, w)
    bg = ((1 - prob) * (1 - hard)).permute(1, 0, 2, 3)  # (B, 1, h, w)
    return fg, bg


class RefinementWeights(nn.Module):
    """``refinement_weights`` as a module (a float32 island of FP16 graphs): (fg, bg, fg != 0, bg != 0),
    each (B, 1, h, w), where they are non-zero decided before any float16 rounding."""

    def forward(self, masks: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        fg, bg = refinement_weights(masks, grid)
        return fg, bg, fg != 0, bg != 0
