"""The paper's tables as data: the shipped file, its rows, and the cost model against them."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from simvos_trt.bench.costs import frame_costs
from simvos_trt.bench.sweep import load_paper_tables
from simvos_trt.config import preset

ROOT = Path(__file__).resolve().parents[2]


def test_rows_and_metadata():
    t = load_paper_tables()
    assert (t.venue, t.arxiv, t.gpu) == ("ICCV 2023", "2308.09903", "NVIDIA A100")
    assert t.dataset == "DAVIS-2017 val" and t.resolution.startswith("480p")
    assert len(t.table(2)) == 10 and len(t.table(3)) == 5
    t2 = {(r.layer_index, r.token_refinement): r.fps for r in t.table(2) if r.backbone == "base"}
    assert t2 == {(0, False): 4.9, (2, False): 5.7, (4, False): 6.5, (6, False): 7.6, (8, False): 8.8,
                  (2, True): 9.4, (4, True): 9.9, (6, True): 10.7, (8, True): 11.4}
    t3 = {(r.kf, r.kb): r.fps for r in t.table(3)}
    assert t3 == {(384, 384): 9.9, (256, 256): 11.4, (128, 128): 13.5, (512, 256): 9.9, (256, 512): 9.9}
    assert all(r.layer_index == 4 and r.token_refinement for r in t.table(3))


def test_every_number_has_a_source():
    for r in load_paper_tables().rows:
        assert r.fps > 0 and r.fps_source
        assert (r.jf is None) == (r.jf_source is None), r.label
        assert r.token_refinement == (r.kf is not None) == (r.kb is not None), r.label


@pytest.mark.parametrize("variant, jf, fps", [("B", 88.0, 4.9), ("L", 88.5, 2.0), ("BS", 87.1, 9.9)])
def test_variant_rows_are_the_presets(variant, jf, fps):
    rows = [r for r in load_paper_tables().rows if r.variant == variant]
    assert rows and all(r.config() == preset(variant) and (r.jf, r.fps) == (jf, fps) for r in rows)


def test_json_fields():
    d = json.loads((ROOT / "simvos_trt" / "data" / "paper_tables.json").read_text())
    fields = {"table", "label", "variant", "backbone", "layer_index", "token_refinement", "kf", "kb",
              "fps", "fps_source", "jf", "jf_source"}
    assert all(set(r) == fields for r in d["rows"])


def test_cost_model_ranks_rows_as_the_paper_measured_them():
    """At 480x864 with 2 objects, a faster row never costs more FLOPs than a slower one."""
    rows = [(r.fps, frame_costs(r.config(), 480, 864, 2).total) for r in load_paper_tables().rows]
    for (fps_a, cost_a), (fps_b, cost_b) in itertools.permutations(rows, 2):
        if fps_a > fps_b:
            assert cost_a < cost_b
