"""Sweep definitions: the paper's tables as rows, their mapping to other sizes, custom grids."""

from __future__ import annotations

import dataclasses

import pytest

from simvos_trt.bench.costs import check_size
from simvos_trt.bench.sweep import (
    PAPER_SIZE,
    PAPER_TOKENS,
    build_sweep,
    grid_rows,
    is_baseline,
    load_paper_tables,
    parse_ks,
    scale_k,
    table_rows,
)
from simvos_trt.config import SimVOSConfig, preset
from simvos_trt.errors import InputError


@pytest.mark.parametrize("number", [2, 3])
def test_table_rows_are_the_papers_configurations(number):
    paper = load_paper_tables().table(number)
    rows = table_rows(number, "base", PAPER_SIZE)
    assert [r.config for r in rows] == [p.config() for p in paper]
    assert [r.label for r in rows] == [p.label for p in paper]
    assert all(r.paper == p and r.tables == (number,) for r, p in zip(rows, paper, strict=True))


def test_table_2_on_the_tiny_vit_at_a_small_size():
    rows = table_rows(2, "tiny", (128, 224))  # N = 8 * 14 = 112 tokens
    assert len(rows) == 9  # the ViT-L row needs backbone base
    assert all(r.config.backbone == "tiny" for r in rows)
    tr = [r.config for r in rows if r.config.token_refinement]
    assert {(c.kf, c.kb) for c in tr} == {(27, 27)}  # round(384 * 112 / 1620) = round(26.5) = 27
    assert [r.config.layer_index for r in rows] == [0, 2, 4, 6, 8, 2, 4, 6, 8]
    unscaled = table_rows(2, "tiny", (128, 224), scale=False)
    assert {(r.config.kf, r.config.kb) for r in unscaled if r.config.token_refinement} == {(384, 384)}


def test_table_3_scaled_keeps_the_ratios():
    rows = table_rows(3, "base", (128, 224))
    assert [(r.config.kf, r.config.kb) for r in rows] == [(27, 27), (18, 18), (9, 9), (35, 18), (18, 35)]
    assert all(r.config.layer_index == 4 and r.config.token_refinement for r in rows)


def test_scale_k():
    assert scale_k(384, PAPER_TOKENS) == 384
    assert scale_k(128, 112) == 9
    assert scale_k(1, 6) == 1  # never below one prototype


def test_build_sweep_merges_tables_and_adds_the_baseline():
    t2, t3 = table_rows(2, "base"), table_rows(3, "base")
    rows = build_sweep([t2, t3], "base")
    assert len(rows) == 10 + 5 - 1  # SimVOS-BS is in both tables, measured once
    bs = next(r for r in rows if r.config == preset("BS"))
    assert bs.tables == (2, 3)
    assert is_baseline(rows[0].config) and rows[0].config == preset("B")
    only3 = build_sweep([t3], "base")
    assert is_baseline(only3[0].config) and only3[0].label == "SimVOS-B (L=0)" and len(only3) == 6
    assert [r.config for r in only3[1:]] == [r.config for r in t3]


def test_grid_rows():
    rows = grid_rows([0, 2], [(384, 384), (128, 128)], "both", "base", PAPER_SIZE)
    assert [r.label for r in rows] == ["SimVOS-B (L=0)", "L=2", "L=2 + TR 384/384", "L=2 + TR 128/128"]
    assert rows[1].paper is not None and rows[1].paper.fps == 5.7
    assert rows[3].paper is None and rows[3].tables == ()  # not in the paper's tables
    assert rows[3].config == SimVOSConfig(backbone="base", layer_index=2, token_refinement=True, kf=128, kb=128)
    bs = grid_rows([4], [(384, 384)], "on", "base", PAPER_SIZE)
    assert len(bs) == 1 and bs[0].tables == (2, 3) and bs[0].config == preset("BS")
    off = grid_rows([0, 4], [(384, 384)], "off", "tiny", (64, 64))
    assert [r.config for r in off] == [dataclasses.replace(preset("B"), backbone="tiny"),
                                       SimVOSConfig(backbone="tiny", layer_index=4)]
    large = grid_rows([0, 20], [], "off", "large", PAPER_SIZE)  # ViT-L has 24 blocks, not base's 12
    assert [r.label for r in large] == ["SimVOS-L (L=0)", "L=20"] and large[0].paper.fps == 2.0
    assert large[1].config == SimVOSConfig(backbone="large", layer_index=20)


@pytest.mark.parametrize("call, match", [
    (lambda: grid_rows([13], [(384, 384)], "both", "base"), "layer_index"),
    (lambda: grid_rows([25], [], "off", "large"), "layer_index"),
    (lambda: grid_rows([2], [(384, 384)], "sometimes", "base"), "refinement"),
    (lambda: table_rows(4), "--table 4"),
    (lambda: parse_ks("384/abc"), "Kf/Kb"),
    (lambda: parse_ks("1/2/3"), "Kf/Kb"),
    (lambda: check_size(100, 224), "100 is not a positive multiple of 16"),
])
def test_bad_input_errors(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_parse_ks():
    assert parse_ks("384/384, 256/512,128") == [(384, 384), (256, 512), (128, 128)]
