"""The SimVOS network as named stages (``position_embedding``, ``encode_query``, ``encode_memory``,
``decode``; no ``forward``), parameters under the official checkpoint's key names (model/README.md)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from ..config import SimVOSConfig
from .layers import STCNDecoder, fpn_eighth, fpn_quarter
from .token_refinement import RefinementWeights, TokenRefiner


class SimVOS(nn.Module):
    """SimVOS: a plain ViT doing joint feature extraction and matching, plus a mask decoder. Its stages take
    ImageNet-normalised, zero-padded float32 frames (H, W multiples of 16) and ``pos`` =
    ``position_embedding((H // 16, W // 16))``."""

    def __init__(self, config: SimVOSConfig) -> None:
        super().__init__()
        self.config = config
        C, p = config.embed_dim, config.patch_size
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.patch_embed = PatchEmbed(img_size=None, patch_size=p, in_chans=3, embed_dim=C)
        self.mask_patch_embed = PatchEmbed(img_size=None, patch_size=p, in_chans=1, embed_dim=C)
        gh, gw = config.train_grid
        self.pos_embed_new = nn.Parameter(torch.zeros(1, 1 + gh * gw, C))  # slot 0 unused
        self.blocks = nn.ModuleList(
            Block(C, config.num_heads, mlp_ratio=config.mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(config.depth)
        )
        self.norm = norm_layer(C)
        self.fpn1 = fpn_quarter(C)
        self.fpn2 = fpn_eighth(C)
        self.stcn_decoder = STCNDecoder(C)
        self.to_prob = nn.Sigmoid()
        if config.token_refinement:
            self.tlearner = TokenRefiner(C, config.kf)
            self.tlearner_back = TokenRefiner(C, config.kb)
            self.refinement_weights = RefinementWeights()

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """``pos_embed_new`` (without its unused first slot) resized bicubically to a video's token grid,
        as the official inference does: (1, N, C) float32, N = h * w."""
        gh, gw = self.config.train_grid
        return resize_tokens(self.pos_embed_new[:, 1 : 1 + gh * gw, :], (gh, gw), grid)

    def encode_query(self, frame: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(1, N, C) float32 query tokens of the current frame (1, 3, H, W) float32 after the per-frame
        blocks[0:L]; ``pos`` (1, N, C) float32."""
        x = self.patch_embed(frame) + pos  # (1, N, C)
        for blk in self.blocks[: self.config.layer_index]:
            x = blk(x)
        return x

    def encode_memory(self, frame: torch.Tensor, masks: torch.Tensor, pos: torch.Tensor,
                      weights: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """(B, M, C) memory tokens in the model's dtype (M = Kf + Kb prototypes with token refinement, else N)
        of the memory ``frame`` (1, 3, H, W) for the objects' ``masks`` (B, 1, H, W) float32 (0/1 or
        probabilities); ``pos`` (1, N, C). ``weights``: token refinement's (fg, bg, fg != 0, bg != 0) maps,
        each (B, 1, h, w), for a subset of the objects its rows of those of all masks (default from ``masks``)."""
        cfg = self.config
        B = masks.shape[0]
        x = self.patch_embed(frame).expand(B, -1, -1)  # (B, N, C)
        mask_tokens = self.mask_patch_embed(masks.to(x.dtype))  # (B, N, C)
        if cfg.layer_index == 0:
            # The official L=0 path adds the mask tokens before the position embedding.
            return x + mask_tokens + pos
        x = x + pos + mask_tokens
        for blk in self.blocks[: cfg.layer_index]:
            x = blk(x)
        if not cfg.token_refinement:
            return x
        h, w = masks.shape[-2] // cfg.patch_size, masks.shape[-1] // cfg.patch_size
        fg, bg, fg_valid, bg_valid = weights if weights is not None else self.refinement_weights(masks, (h, w))
        x = x.reshape(B, h, w, -1)  # (B, h, w, C)
        return torch.cat((self.tlearner(x, fg, fg_valid), self.tlearner_back(x, bg, bg_valid)), dim=1)  # (B, M, C)

    def decode(self, query: torch.Tensor, memories: Sequence[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """Joint blocks[L:] over [memories...; query], then the mask decoder: (B, 1, H, W) float32 object
        probabilities at every precision, from ``query`` (1, N, C), one or two (B, M, C) ``memories`` (the
        first frame's, then the previous one's) and the query frame's token ``grid`` (h, w)."""
        B = memories[0].shape[0]
        N = query.shape[1]
        x = torch.cat([*memories, query.expand(B, -1, -1)], dim=1)  # (B, T*M + N, C)
        for blk in self.blocks[self.config.layer_index :]:
            x = blk(x)
        x = self.norm(x)
        m16 = x[:, -N:, :].transpose(1, 2).reshape(B, -1, *grid)  # (B, C, h, w)
        logits = self.stcn_decoder(m16, self.fpn2(m16), self.fpn1(m16))  # (B, 1, H, W)
        return self.to_prob(logits)


def resize_tokens(tokens: torch.Tensor, source: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """(1, h*w, C) tokens of the ``source`` grid (h, w) -> (1, N, C) on ``grid``, resized bicubically."""
    if tuple(grid) == tuple(source):
        return tokens
    x = tokens.reshape(1, *source, -1).permute(0, 3, 1, 2)  # (1, C, h, w)
    x = F.interpolate(x, size=tuple(grid), mode="bicubic", align_corners=False)
    return x.permute(0, 2, 3, 1).flatten(1, 2)


def soft_aggregate(prob: torch.Tensor) -> torch.Tensor:
    """Soft aggregation (from STM) of (K, 1, H, W) float32 object probabilities into a distribution:
    (K+1, 1, H, W) float32, background first, summing to 1 over the first axis."""
    p = torch.cat((torch.prod(1 - prob, dim=0, keepdim=True), prob), dim=0)
    p = p.clamp(1e-7, 1 - 1e-7)
    return F.softmax(torch.log(p / (1 - p)), dim=0)
