"""Parity with the official SimVOS inference on the golden cases (the issue's acceptance bar)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from goldens import GOLDEN_CASES, SHARED_GOLDEN, load_golden  # noqa: E402

from simvos_trt.config import preset  # noqa: E402
from simvos_trt.model import load_official_checkpoint, propagate, synthetic_state_dict  # noqa: E402

#: Golden probabilities whose top two channels are closer than this are near-ties:
#: float32 noise (~2e-6 between equivalent kernels) may flip their argmax.
NEAR_TIE = 1e-5


@pytest.mark.skipif(not (SHARED_GOLDEN / "tiny_official_layout.pth").exists(),
                    reason="the shared golden folder exists on the project's machines only")
def test_recipe_rebuilds_the_shared_checkpoint_bit_for_bit():
    shared = torch.load(SHARED_GOLDEN / "tiny_official_layout.pth", weights_only=True)
    rebuilt = synthetic_state_dict(preset("T"), seed=1)
    assert sorted(shared) == sorted(rebuilt)
    for k in shared:
        assert shared[k].dtype == rebuilt[k].dtype and torch.equal(shared[k], rebuilt[k]), k


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_propagate_matches_official(name, tiny_checkpoint):
    case = load_golden(name)
    model = load_official_checkpoint(tiny_checkpoint, case.config())
    prob = propagate(model, case.frames, case.first_mask)
    assert prob.shape == case.prob.shape and prob.dtype == np.float32
    assert np.abs(prob - case.prob).max() <= 1e-4
    top2 = np.sort(case.prob, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > NEAR_TIE
    np.testing.assert_array_equal(prob.argmax(1)[decided], case.labels[decided])
    assert decided.mean() > 0.999
