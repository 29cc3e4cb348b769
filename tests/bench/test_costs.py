"""The analytic cost model against sums worked out by hand, and the facts it must respect."""

from __future__ import annotations

import dataclasses

import pytest

from simvos_trt.bench.costs import StageCost, frame_costs, joint_cost
from simvos_trt.config import SimVOSConfig, preset
from simvos_trt.errors import InputError
from simvos_trt.manifest import Weights

PAPER = (480, 864)  # DAVIS 854x480 padded; N = 30 * 54 = 1620 tokens
#: Graph -> the ``FrameCost`` stage it must equal (steady state, two memories).
GRAPH_STAGES = {"query_encoder": "query", "memory_encoder": "memory", "joint_decoder_2mem": "joint"}


def test_tiny_config_by_hand():
    """Tiny ViT (C=192, 12 blocks), L=2, TR Kf=2 Kb=1, 32x48 (h=2, w=3, N=6, M=3), B=2.

    One block on S tokens: linear 24*S*C^2 = 884736*S, attention 4*S^2*C = 768*S^2.
    """
    cost = frame_costs(SimVOSConfig(backbone="tiny", layer_index=2, token_refinement=True, kf=2, kb=1),
                       32, 48, 2)
    # query: RGB patch embedding 2*3*192*256*6 = 1769472;
    #   2 blocks, S=6: linear 2*884736*6 = 10616832, attention 2*768*36 = 55296.
    assert cost.query == StageCost(attention=55_296, linear=1_769_472 + 10_616_832)
    # memory: RGB embedding once 1769472; mask embedding 2*1*192*256*6 = 589824 per object (x2);
    #   2 blocks x 2 objects, S=6: linear 4*884736*6 = 21233664, attention 4*768*36 = 110592;
    #   TR per object: conv 2*193*48*9*6 = 1000512 per branch (x2), linear 2*6*48*(2+1) = 1728,
    #   pooling 2*(2+1)*6*192 = 6912 -> 2009664, x2 objects = 4019328.
    assert cost.memory == StageCost(attention=110_592,
                                    linear=1_769_472 + 2 * 589_824 + 21_233_664 + 4_019_328)
    # joint: S = 2*3 + 6 = 12; 10 blocks x 2 objects: linear 20*884736*12 = 212336640,
    #   attention 20*768*144 = 2211840.
    #   decoder per object (1/16: 6 positions, 1/8: 24, 1/4: 96):
    #   fpn2 2*192*512*4*6 = 4718592; fpn1 2*192*192*4*6 + 2*192*256*4*24 = 11206656;
    #   compress 2*(2*192*512*9*6) + 2*512*512*9*6 = 49545216;
    #   up_16_8 2*512*512*9*24 + 2*(2*512*256*9*24) + 2*256*256*9*24 = 254803968;
    #   up_8_4 3*(2*256*256*9*96) = 339738624; pred 2*256*9*96 = 442368
    #   -> 660455424 per object, x2 = 1320910848.
    assert cost.joint == StageCost(attention=2_211_840, linear=212_336_640, decoder=1_320_910_848)
    assert cost.total == 12_441_600 + 28_312_704 + 1_535_459_328 == 1_576_213_632
    assert (cost.attention, cost.decoder) == (55_296 + 110_592 + 2_211_840, 1_320_910_848)


def test_paper_setting_b_and_bs():
    """ViT-B at 480x864 with 2 objects: about 3.8 TFLOP/frame for B and 2.0 for BS."""
    b, bs = frame_costs(preset("B"), *PAPER, 2), frame_costs(preset("BS"), *PAPER, 2)
    assert b.total / 1e12 == pytest.approx(3.826, abs=5e-4)
    assert bs.total / 1e12 == pytest.approx(2.032, abs=5e-4)
    # B: the encoders are the embeddings only: 2*3*768*256*1620 (RGB) and 2*768*256*1620 per object.
    assert b.query.total == 1_911_029_760
    assert b.memory.total == 1_911_029_760 + 2 * 637_009_920
    # Both share the decoder (fpn + STCN) at the same size and object count.
    assert b.decoder == bs.decoder


def test_l0_joint_attention_is_quadratic_in_three_frames():
    C, N, B = 768, 1620, 3
    cost = frame_costs(preset("B"), *PAPER, B)
    assert cost.joint.attention == 12 * B * 4 * (3 * N) ** 2 * C
    assert cost.query.attention == cost.memory.attention == 0


def test_per_video_memory_is_not_in_the_frame():
    cost = frame_costs(preset("BS"), *PAPER, 2)
    assert cost.per_video == cost.memory
    assert cost.total == cost.query.total + cost.memory.total + cost.joint.total
    assert cost.frame.total == cost.total
    assert sum(getattr(cost, s).total for s in GRAPH_STAGES.values()) == cost.total


@pytest.mark.parametrize("name", ["B", "BS", "T"])
def test_object_scaling(name):
    config = preset(name)
    one = frame_costs(config, *PAPER, 1)
    rgb = 2 * 3 * config.embed_dim * 256 * 1620  # the frame's patch embedding, shared by all objects
    for B in (2, 3, 5):
        cost = frame_costs(config, *PAPER, B)
        assert cost.query == one.query  # shared by all objects
        assert cost.joint == one.joint * B
        assert cost.memory.total - rgb == B * (one.memory.total - rgb)


@pytest.mark.parametrize("layer_index", [1, 4, 8, 11])
def test_refinement_cuts_the_joint_cost_only_when_it_shrinks_the_memory(layer_index):
    plain = SimVOSConfig(layer_index=layer_index)
    tr = dataclasses.replace(plain, token_refinement=True, kf=384, kb=384)
    # 480x864: M = 768 < N = 1620, so the joint sequence 2M + N is shorter.
    assert frame_costs(tr, *PAPER, 2).joint.total < frame_costs(plain, *PAPER, 2).joint.total
    # 320x320: M = 768 > N = 400, so refinement lengthens the joint sequence.
    assert frame_costs(tr, 320, 320, 2).joint.total > frame_costs(plain, 320, 320, 2).joint.total
    # The query stage never depends on refinement; the memory stage pays for it.
    assert frame_costs(tr, *PAPER, 2).query == frame_costs(plain, *PAPER, 2).query
    assert frame_costs(tr, *PAPER, 2).memory.total > frame_costs(plain, *PAPER, 2).memory.total


def test_more_per_frame_blocks_cost_less():
    """Moving a block from the joint sequence (3N per object) to the per-frame encoders pays."""
    plain = [frame_costs(SimVOSConfig(layer_index=L), *PAPER, 2).total for L in range(13)]
    tr = [frame_costs(SimVOSConfig(layer_index=L, token_refinement=True), *PAPER, 2).total
          for L in range(1, 13)]
    assert plain == sorted(plain, reverse=True) and len(set(plain)) == 13
    assert tr == sorted(tr, reverse=True) and len(set(tr)) == 12


def test_one_memory_decoder():
    config = preset("BS")
    assert joint_cost(config, *PAPER, 2, memories=1).total < joint_cost(config, *PAPER, 2).total
    # With every block per frame the joint decoder is the mask decoder alone.
    deep = SimVOSConfig(layer_index=12, token_refinement=True)
    assert joint_cost(deep, *PAPER, 2, memories=1) == joint_cost(deep, *PAPER, 2, memories=2)
    assert joint_cost(deep, *PAPER, 2).attention == joint_cost(deep, *PAPER, 2).linear == 0


@pytest.mark.parametrize("args, field", [((470, 864, 2), "height"), ((480, 0, 2), "width"),
                                         ((480, 864, 0), "objects"), ((480.0, 864, 2), "height")])
def test_bad_arguments_name_the_argument(args, field):
    with pytest.raises(InputError, match=f"^{field}"):
        frame_costs(preset("B"), *args)
    with pytest.raises(InputError, match="^memories"):
        joint_cost(preset("B"), 480, 864, 2, memories=3)


@pytest.mark.parametrize(
    "config, objects",
    [
        (SimVOSConfig(backbone="tiny", layer_index=0), 2),
        (SimVOSConfig(backbone="tiny", layer_index=3), 1),
        (SimVOSConfig(backbone="tiny", layer_index=2, token_refinement=True, kf=8, kb=4), 3),
    ],
)
def test_model_equals_the_flops_of_the_exported_graphs(config, objects, tmp_path):
    pytest.importorskip("torch")
    import onnx
    from onnx_flops import count_graph_flops

    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.model import random_model

    export_folder(random_model(config), tmp_path / "e", ExportSettings(48, 64, 4), checkpoint=Weights("random", seed=0))
    cost = frame_costs(config, 48, 64, objects)
    for graph, stage in GRAPH_STAGES.items():
        analytic = getattr(cost, stage).total
        counted = count_graph_flops(onnx.load(str(tmp_path / "e" / f"{graph}.onnx")), {"objects": objects})
        assert counted["total"] == analytic, graph
