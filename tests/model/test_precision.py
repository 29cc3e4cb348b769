"""FP16 safety on the CPU: float16 everywhere TensorRT would use it, LayerNorm and soft
aggregation in float32, on the golden videos (including the vanishing object)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import load_golden  # noqa: E402
from simvos_trt.model import load_official_checkpoint, propagate  # noqa: E402
from simvos_trt.model.precision import Float32LayerNorm, to_fp16  # noqa: E402


@pytest.mark.parametrize("name", ["tiny_L0", "tiny_L2_tr_odd"])
def test_fp16_is_finite_and_agrees_with_float32(name, tiny_checkpoint):
    case = load_golden(name)
    model = to_fp16(load_official_checkpoint(tiny_checkpoint, case.config()))
    assert model.blocks[0].attn.qkv.weight.dtype == torch.float16
    assert isinstance(model.blocks[0].norm1, Float32LayerNorm)
    assert model.blocks[0].norm1.ln.weight.dtype == torch.float32
    prob = propagate(model, case.frames, case.first_mask)
    assert np.isfinite(prob).all()
    agreement = (prob.argmax(1) == case.labels).mean()
    assert agreement >= 0.99, agreement  # measured: 0.9990 (L0), 0.9979 (L2 TR odd)
    assert np.abs(prob - case.prob).max() < 0.05
