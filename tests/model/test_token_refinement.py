"""The static-op token refinement equals the official dynamic formulation.

The official code suppresses positions by boolean-mask assignment of -inf, takes the
softmax and repairs all-suppressed rows with nan_to_num; its hard one-hot is
torch.max + scatter_. Both are re-stated here as the oracle.
"""

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from simvos_trt.model.token_refinement import (  # noqa: E402
    TokenRefiner,
    masked_softmax,
    refinement_weights,
)


def official_softmax(logits, weight_rows):
    x = logits.clone()
    x[weight_rows.expand_as(x) == 0] = -float("inf")
    return torch.nan_to_num(F.softmax(x, dim=-1))


def official_weights(masks, grid):
    bg = torch.ones_like(masks[0].unsqueeze(0)) - torch.sum(masks.permute(1, 0, 2, 3), dim=1, keepdim=True)
    bg[bg != 1] = 0
    props = F.interpolate(torch.cat((bg, masks.permute(1, 0, 2, 3)), dim=1), size=grid,
                          mode="bilinear", align_corners=False)
    hard = torch.zeros_like(props)
    hard.scatter_(dim=1, index=torch.max(props, dim=1, keepdim=True)[1], value=1.0)
    hard = hard[:, 1:]
    w = torch.stack([props[:, 1:] * hard, (1 - props[:, 1:]) * (1 - hard)], dim=2)  # (1, B, 2, h, w)
    return w[0, :, 0:1], w[0, :, 1:2]


def test_masked_softmax_equals_official_including_all_suppressed_rows():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 40, generator=g) * 20
    weight = (torch.rand(3, 1, 40, generator=g) > 0.6).float() * torch.rand(3, 1, 40, generator=g)
    weight[1] = 0  # an object whose weight map is all zero
    ours = masked_softmax(logits, weight != 0)
    ref = official_softmax(logits, weight)
    assert torch.equal(ours[1], torch.zeros_like(ours[1]))
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_masked_softmax_with_very_negative_logits():
    # Valid logits far below zero still dominate the finite fill.
    logits = torch.tensor([[-5000.0, -5001.0, 3.0, 0.0]])
    valid = torch.tensor([[True, True, False, False]])
    ref = official_softmax(logits, valid.float())
    torch.testing.assert_close(masked_softmax(logits, valid), ref, rtol=0, atol=0)


def test_weights_equal_official_with_ties_and_vanishing_object():
    H, W = 64, 96
    masks = torch.zeros(3, 1, H, W)
    masks[0, 0, :32, :48] = 1.0
    masks[1, 0, 32:, 48:] = 0.5  # ties with background-free pixels at 0.5 / 0.5
    masks[2, 0, 32:, 48:] = 0.5  # exact tie between objects 2 and 3: the first must win
    masks[2, 0, 1:5, 60:64] = 1.0  # 4x4 square missing rows/cols 16i+7, 16i+8: vanishes
    fg, bg = refinement_weights(masks, (4, 6))
    rfg, rbg = official_weights(masks, (4, 6))
    assert torch.equal(fg, rfg) and torch.equal(bg, rbg)
    assert fg[1].sum() > 0 and fg[2, :, 2:, 3:].sum() == 0  # tie went to object 2 (index 1)


def test_weights_equal_official_on_soft_probabilities():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(4, 1, 48, 80, generator=g)
    p = p / p.sum(0, keepdim=True) * 0.9
    p[:, :, :16] = 0  # background exactly 1 there
    fg, bg = refinement_weights(p, (3, 5))
    rfg, rbg = official_weights(p, (3, 5))
    assert torch.equal(fg, rfg) and torch.equal(bg, rbg)


def official_refiner(module, x, weight):
    B, h, w, C = x.shape
    sel = module.input_norm(torch.cat((x, weight.permute(0, 2, 3, 1)), dim=-1)).permute(0, 3, 1, 2)
    sel = module.patch_to_cluster_atten(sel).permute(0, 2, 3, 1).reshape(B, h * w, -1)
    sel = module.patch_to_cluster_linear(sel).permute(0, 2, 1)
    sel = official_softmax(sel, weight.flatten(2, 3))
    out = torch.einsum("...si,...id->...sd", sel, x.reshape(B, h * w, C))
    return module.norm(out)


def test_refiner_equals_official_and_empty_map_gives_layernorm_bias():
    torch.manual_seed(0)
    m = TokenRefiner(32, 6).eval()
    torch.nn.init.normal_(m.norm.bias)
    x = torch.randn(2, 4, 5, 32)
    weight = torch.rand(2, 1, 4, 5) * (torch.rand(2, 1, 4, 5) > 0.5)
    weight[1] = 0
    with torch.no_grad():
        ours, ref = m(x, weight), official_refiner(m, x, weight)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours[1], m.norm.bias.expand(6, 32).detach(), rtol=0, atol=0)
