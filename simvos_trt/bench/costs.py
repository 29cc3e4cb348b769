"""An analytic FLOP model of SimVOS per propagated frame under our three-stage caching.

A multiply-add counts as 2 FLOPs; element-wise ops, LayerNorm, GELU, softmax, bias
adds and bilinear resizes are not counted (negligible at these sizes, and not counted
by ``onnx_flops.count_graph_flops`` either, so the two can be compared exactly).

Per ViT block on S tokens of width C (MLP ratio 4), per sequence:

    qkv 2*S*C*3C + proj 2*S*C*C + mlp 2*S*C*4C*2   -> ``linear``    (24*S*C^2)
    scores 2*S*S*C + weighted sum 2*S*S*C          -> ``attention`` (4*S^2*C)

Stages (DESIGN.md section 2; B objects, N = (H/16)(W/16), M = Kf+Kb with token
refinement, N without):

- ``query``: patch embedding (3 -> C) + blocks[0:L] on N tokens, once per frame for all
  objects (independent of B). Equals the ``query_encoder`` graph.
- ``memory``: the RGB patch embedding once, the mask patch embedding (1 -> C) per
  object, blocks[0:L] per object on N tokens, and token refinement per object and
  branch: Conv3x3 (C+1 -> C/4) on the h x w grid, Linear (C/4 -> K), and the
  prototype pooling softmax(logits) @ tokens (K x N x C). Equals the
  ``memory_encoder`` graph at B objects. It runs once per frame (for the previous
  frame); the first frame's run happens once per video and is reported as
  ``per_video``, not in the per-frame total.
- ``joint``: blocks[L:] per object on 2M + N tokens (two memories, steady state),
  then the decoder per object: fpn2 (ConvTranspose C->512 k2 s2), fpn1
  (ConvTranspose C->C, ConvTranspose C->256), the STCN decoder (ResBlock C->512 at
  1/16, UpsampleBlock(512,512,256) at 1/8, UpsampleBlock(256,256,256) at 1/4,
  Conv3x3 256->1). Equals the ``joint_decoder_2mem`` graph at B objects
  (``joint_cost(..., memories=1)`` is ``joint_decoder_1mem``).

Split: ``attention`` is the two S^2 terms of every block; ``linear`` is qkv, proj, MLP,
both patch embeddings and all of token refinement (its K x N x C pooling included);
``decoder`` is fpn1, fpn2 and the STCN decoder.

At the paper's setting (ViT-B, 480x864 so N = 30*54 = 1620, 2 objects) this model
gives, in TFLOP per frame (10^12 FLOPs):

    SimVOS-B  (L=0, no TR):       3.826 = query 0.002 + memory 0.003 + joint 3.821
                                  (attention 1.741, linear 1.656, decoder 0.428)
    SimVOS-BS (L=4, TR 384/384):  2.032 = query 0.126 + memory 0.273 + joint 1.633
                                  (attention 0.586, linear 1.017, decoder 0.428)

in agreement with the "about 3.8" and "about 2.0" expected for them; the first frame's
memory (``per_video``) adds 0.003 (B) or 0.273 (BS) TFLOP once per video. Nearly all of
B is the joint sequence of 3N = 4860 tokens per object; BS shortens it to 2*768 + 1620 =
3156 tokens over 8 blocks. A one-off run found every stage equal, to the FLOP, to
``count_graph_flops`` of the exported graph (B and BS at 480x864 with 2 objects; tiny
configurations at several sizes and object counts); the automated cross-check against
exported graphs is not part of this module's tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import SimVOSConfig
from ..errors import InputError

#: Graph name -> the ``FrameCost`` stage it must equal (steady state, two memories).
GRAPH_STAGES: dict[str, str] = {
    "query_encoder": "query",
    "memory_encoder": "memory",
    "joint_decoder_2mem": "joint",
}


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

    __rmul__ = __mul__


@dataclass(frozen=True)
class FrameCost:
    """FLOPs of one propagated frame in steady state (two memory frames), per stage.

    ``query``, ``memory`` and ``joint`` are each one run of the corresponding graph
    (see ``GRAPH_STAGES``) at ``objects`` objects; the per-frame figures are their sum.
    ``per_video`` is the first frame's memory encoding, paid once per video and not
    included in the per-frame figures.
    """

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

    @property
    def attention(self) -> int:
        return self.frame.attention

    @property
    def linear(self) -> int:
        return self.frame.linear

    @property
    def decoder(self) -> int:
        return self.frame.decoder

    @property
    def total(self) -> int:
        return self.frame.total

    def by_graph(self) -> dict[str, int]:
        """Total FLOPs keyed by exported graph name, to compare with ``count_graph_flops``."""
        return {graph: getattr(self, stage).total for graph, stage in GRAPH_STAGES.items()}


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


def _grid(height: int, width: int, objects: int) -> tuple[int, int]:
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 16 or v % 16:
            raise InputError(f"{name}: got {v!r}, expected a positive multiple of 16 (e.g. 480x864)")
    if isinstance(objects, bool) or not isinstance(objects, int) or objects < 1:
        raise InputError(f"objects: got {objects!r}, expected an int >= 1")
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
    N = h * w
    S = memories * config.memory_tokens((h, w)) + N
    blocks = _blocks(config, config.depth - config.layer_index, S, objects)
    return blocks + StageCost(decoder=objects * _decoder(config, (h, w)))


def frame_costs(config: SimVOSConfig, height: int, width: int, objects: int) -> FrameCost:
    """FLOPs per propagated frame (steady state, two memories) of ``config`` at H x W with B objects.

    Args:
        config: the model.
        height, width: the padded frame size H, W in pixels (multiples of 16).
        objects: B, the objects segmented together.
    Returns:
        A ``FrameCost``: per stage, by kind, and the once-per-video first-frame memory.
    """
    memory = memory_cost(config, height, width, objects)
    return FrameCost(config=config, height=height, width=width, objects=objects,
                     query=query_cost(config, height, width), memory=memory,
                     joint=joint_cost(config, height, width, objects), per_video=memory)
