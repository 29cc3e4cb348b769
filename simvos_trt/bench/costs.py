"""An analytic FLOP model of SimVOS per propagated frame under the runtime's three-stage caching: per stage
(query, memory, joint) and per kind (attention, linear, decoder). A multiply-add is 2 FLOPs; element-wise ops
are not counted. What each stage holds, and the figures at the paper's setting: ``bench/README.md``."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import SimVOSConfig
from ..errors import InputError, check_int


@dataclass(frozen=True)
class StageCost:
    """FLOPs of one run of one stage (all objects of the batch), by kind."""

    attention: int = 0
    linear: int = 0
    decoder: int = 0

    @property
    def total(self) -> int:
        return self.attention + self.linear + self.decoder

    def __add__(self, other: StageCost) -> StageCost:
        return StageCost(self.attention + other.attention, self.linear + other.linear,
                         self.decoder + other.decoder)

    def __mul__(self, k: int) -> StageCost:
        return StageCost(self.attention * k, self.linear * k, self.decoder * k)


@dataclass(frozen=True)
class FrameCost:
    """FLOPs of one propagated frame in steady state (two memory frames): ``query``, ``memory`` and ``joint``
    are one run each of the query encoder, memory encoder and two-memory joint decoder graphs at ``objects``
    objects; ``per_video`` (the first frame's memory, once per video) is not in the per-frame figures."""

    config: SimVOSConfig
    height: int
    width: int
    objects: int
    query: StageCost
    memory: StageCost
    joint: StageCost
    per_video: StageCost

    @property
    def frame(self) -> StageCost:
        """The per-frame cost: query + memory + joint."""
        return self.query + self.memory + self.joint

    def __getattr__(self, kind: str) -> int:
        """``attention``, ``linear``, ``decoder`` and ``total``: those of the per-frame cost (``frame``)."""
        if kind not in ("attention", "linear", "decoder", "total"):
            raise AttributeError(kind)
        return int(getattr(self.frame, kind))


def _conv(cin: int, cout: int, k: int, hout: int, wout: int) -> int:
    """A k x k convolution producing (cout, hout, wout)."""
    return 2 * cin * cout * k * k * hout * wout


def _deconv2(cin: int, cout: int, hin: int, win: int) -> int:
    """A ConvTranspose k2 s2 reading (cin, hin, win)."""
    return 2 * cin * cout * 4 * hin * win


def _blocks(config: SimVOSConfig, n_blocks: int, tokens: int, sequences: int) -> StageCost:
    """``n_blocks`` ViT blocks over ``sequences`` independent sequences of ``tokens`` tokens."""
    S, C, r = tokens, config.embed_dim, config.mlp_ratio
    linear = 2 * S * C * 3 * C + 2 * S * C * C + 2 * S * C * r * C * 2
    attention = 2 * S * S * C * 2
    return StageCost(attention=attention, linear=linear) * (n_blocks * sequences)


def _refinement(config: SimVOSConfig, grid: tuple[int, int]) -> int:
    """Token refinement of one memory frame for one object, both branches."""
    (h, w), C = grid, config.embed_dim
    N, Cq = h * w, C // 4
    return sum(_conv(C + 1, Cq, 3, h, w) + 2 * N * Cq * K + 2 * K * N * C for K in (config.kf, config.kb))


def _decoder(config: SimVOSConfig, grid: tuple[int, int]) -> int:
    """fpn1 + fpn2 + the STCN decoder for one object."""
    (h, w), C = grid, config.embed_dim
    fpn2 = _deconv2(C, 512, h, w)
    fpn1 = _deconv2(C, C, h, w) + _deconv2(C, 256, 2 * h, 2 * w)
    compress = 2 * _conv(C, 512, 3, h, w) + _conv(512, 512, 3, h, w)  # downsample, conv1; conv2
    h8, w8 = 2 * h, 2 * w
    up_16_8 = _conv(512, 512, 3, h8, w8) + 2 * _conv(512, 256, 3, h8, w8) + _conv(256, 256, 3, h8, w8)
    h4, w4 = 4 * h, 4 * w
    up_8_4 = 3 * _conv(256, 256, 3, h4, w4)  # skip_conv, conv1, conv2 (no downsample)
    pred = _conv(256, 1, 3, h4, w4)
    return fpn2 + fpn1 + compress + up_16_8 + up_8_4 + pred


def check_size(height: int, width: int, prefix: str = "") -> None:
    """Raise InputError (its message after ``prefix``) unless both sides are positive multiples of 16."""
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 16 or v % 16:
            raise InputError(f"{prefix}{name} {v!r} is not a positive multiple of 16 (the patch size); "
                             "e.g. 128x224 or 480x864")


def _grid(height: int, width: int, objects: int) -> tuple[int, int]:
    check_size(height, width)
    check_int("objects", objects, 1)
    return height // 16, width // 16


def query_cost(config: SimVOSConfig, height: int, width: int) -> StageCost:
    """One run of the query encoder: patch embedding + blocks[0:L] on N tokens."""
    h, w = _grid(height, width, 1)
    N, C, p = h * w, config.embed_dim, config.patch_size
    embed = StageCost(linear=_conv(3, C, p, h, w))
    return embed + _blocks(config, config.layer_index, N, 1)


def memory_cost(config: SimVOSConfig, height: int, width: int, objects: int) -> StageCost:
    """One run of the memory encoder for ``objects`` objects (one memory frame)."""
    h, w = _grid(height, width, objects)
    N, C, p, B = h * w, config.embed_dim, config.patch_size, objects
    embed = StageCost(linear=_conv(3, C, p, h, w) + B * _conv(1, C, p, h, w))
    cost = embed + _blocks(config, config.layer_index, N, B)
    if config.token_refinement:
        cost = cost + StageCost(linear=B * _refinement(config, (h, w)))
    return cost


def joint_cost(config: SimVOSConfig, height: int, width: int, objects: int, memories: int = 2) -> StageCost:
    """One run of the joint decoder for ``objects`` objects with ``memories`` (1 or 2) memory frames."""
    if memories not in (1, 2):
        raise InputError(f"memories: got {memories!r}, expected 1 (first propagated frame) or 2")
    h, w = _grid(height, width, objects)
    S = memories * config.memory_tokens((h, w)) + h * w
    blocks = _blocks(config, config.depth - config.layer_index, S, objects)
    return blocks + StageCost(decoder=objects * _decoder(config, (h, w)))


def frame_costs(config: SimVOSConfig, height: int, width: int, objects: int) -> FrameCost:
    """FLOPs per propagated frame (steady state, two memories) of ``config`` at the padded size H x W
    (multiples of 16) with B ``objects`` segmented together."""
    memory = memory_cost(config, height, width, objects)
    return FrameCost(config=config, height=height, width=width, objects=objects,
                     query=query_cost(config, height, width), memory=memory,
                     joint=joint_cost(config, height, width, objects), per_video=memory)
