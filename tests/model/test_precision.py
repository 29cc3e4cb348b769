"""The FP16 emulation on the CPU: float16 with the float32 islands of ``simvos_trt.precision``,
on the golden videos (including the vanishing object)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from goldens import load_golden  # noqa: E402

from simvos_trt.model import load_official_checkpoint, propagate  # noqa: E402
from simvos_trt.model.precision import ISLAND_MODULES, Float32Island, to_fp16  # noqa: E402
from simvos_trt.precision import ISLANDS  # noqa: E402


def test_every_island_has_its_module():
    assert set(ISLAND_MODULES) == {i.name for i in ISLANDS}


@pytest.mark.parametrize("name", ["tiny_L0", "tiny_L2_tr_odd"])
def test_fp16_is_finite_and_agrees_with_float32(name, tiny_checkpoint):
    case = load_golden(name)
    model = to_fp16(load_official_checkpoint(tiny_checkpoint, case.config()))
    assert model.blocks[0].attn.qkv.weight.dtype == torch.float16
    assert isinstance(model.blocks[0].norm1, Float32Island)
    assert model.blocks[0].norm1.inner.weight.dtype == torch.float32
    assert isinstance(model.to_prob, Float32Island) and model.to_prob.out_dtype is None
    prob = propagate(model, case.frames, case.first_mask)
    assert np.isfinite(prob).all()
    agreement = (prob.argmax(1) == case.labels).mean()
    assert agreement >= 0.995, agreement  # measured: 0.9992 (L0), 0.9980 (L2 TR odd)
    assert np.abs(prob - case.prob).max() < 0.05


def test_islands_cast_in_and_out(tiny_checkpoint):
    case = load_golden("tiny_L4_tr")
    model = to_fp16(load_official_checkpoint(tiny_checkpoint, case.config()))
    masks = torch.zeros(2, 1, 128, 192)
    masks[0, :, :64] = 1
    masks[:, :, 64:80] = 2e-8  # sum 4e-8: no background; object 1 wins the tie with a weight zero in float16
    fg, bg, fg_valid, bg_valid = model.refinement_weights(masks, (8, 12))
    assert fg.dtype == bg.dtype == torch.float16 and fg_valid.dtype == torch.bool
    assert (fg_valid != (fg != 0)).any()  # validity decided in float32, before the float16 rounding
    to_fp16(model)  # a second conversion wraps nothing twice
    assert not isinstance(model.blocks[0].norm1.inner, Float32Island)
