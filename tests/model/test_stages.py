"""Stage-level behaviour: batching, caching, object ids, the memory schedule."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from goldens import load_golden  # noqa: E402

from simvos_trt import processing  # noqa: E402
from simvos_trt.config import SimVOSConfig  # noqa: E402
from simvos_trt.errors import InputError  # noqa: E402
from simvos_trt.model import load_official_checkpoint, propagate, soft_aggregate  # noqa: E402
from simvos_trt.model.token_refinement import RefinementWeights  # noqa: E402

CONFIGS = {
    "L0": SimVOSConfig(backbone="tiny", layer_index=0),
    "L3": SimVOSConfig(backbone="tiny", layer_index=3),
    "L2tr": SimVOSConfig(backbone="tiny", layer_index=2, token_refinement=True, kf=16, kb=16),
}


@pytest.fixture(scope="module")
def video():
    case = load_golden("tiny_L2_tr_odd")
    return case.frames[:4], case.first_mask


def _inputs(frames, mask, model):
    pad = processing.padding_for(*mask.shape)
    Hp, Wp = pad.padded_size(*mask.shape)
    grid = (Hp // 16, Wp // 16)
    frame = torch.from_numpy(processing.pad(processing.normalize(frames[0]), pad))[None]
    ids = processing.object_ids(mask)
    masks = torch.from_numpy(processing.pad(processing.one_hot(mask, ids), pad))[:, None]
    return frame, masks, grid, model.position_embedding(grid)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@torch.inference_mode()
def test_batched_objects_equal_one_at_a_time(name, video, tiny_checkpoint):
    model = load_official_checkpoint(tiny_checkpoint, CONFIGS[name])
    frame, masks, grid, pos = _inputs(*video, model)
    weights = RefinementWeights()(masks, grid)
    memory = model.encode_memory(frame, masks, pos)
    query = model.encode_query(frame, pos)
    prob = model.decode(query, [memory, memory], grid)
    for i in range(masks.shape[0]):
        w = tuple(m[i : i + 1] for m in weights)
        mem_i = model.encode_memory(frame, masks[i : i + 1], pos, weights=w)
        torch.testing.assert_close(mem_i, memory[i : i + 1], rtol=1e-5, atol=1e-5)
        prob_i = model.decode(query, [mem_i, mem_i], grid)
        torch.testing.assert_close(prob_i, prob[i : i + 1], rtol=1e-5, atol=1e-5)


def _propagate_recomputing(model, frames, mask):
    """The official loop: every frame re-encodes the first-frame memory."""
    pad = processing.padding_for(*mask.shape)
    Hp, Wp = pad.padded_size(*mask.shape)
    grid = (Hp // 16, Wp // 16)
    pos = model.position_embedding(grid)
    ids = processing.object_ids(mask)
    masks = torch.from_numpy(processing.pad(processing.one_hot(mask, ids), pad))[:, None]
    tensors = [torch.from_numpy(processing.pad(processing.normalize(f), pad))[None] for f in frames]
    out, prev = [], None
    for t in range(1, len(frames)):
        mems = [model.encode_memory(tensors[0], masks, pos)]
        if prev is not None:
            mems.append(model.encode_memory(tensors[t - 1], prev, pos))
        prob = soft_aggregate(model.decode(model.encode_query(tensors[t], pos), mems, grid))
        out.append(processing.unpad(prob[:, 0].numpy(), pad))
        prev = prob[1:]
    return np.stack(out)


@torch.inference_mode()
def test_cached_first_memory_equals_recomputation(video, tiny_checkpoint):
    model = load_official_checkpoint(tiny_checkpoint, CONFIGS["L2tr"])
    frames, mask = video
    cached = propagate(model, frames, mask)[1:]
    np.testing.assert_array_equal(cached, _propagate_recomputing(model, frames, mask))


def test_non_contiguous_ids_map_to_channels_in_increasing_order(video, tiny_checkpoint):
    model = load_official_checkpoint(tiny_checkpoint, CONFIGS["L2tr"])
    frames, mask = video
    dense = propagate(model, frames, mask)
    sparse = np.choose(mask, [0, 1, 3, 7]).astype(np.uint8)  # ids 1, 2, 3 -> 1, 3, 7
    np.testing.assert_array_equal(propagate(model, frames, sparse), dense)
    # Reversed ids (1, 2, 3 -> 7, 3, 1) put the objects in the opposite channel order.
    # Token refinement depends on that order only through sums and ties, so the
    # probabilities agree to float32 noise once the channels are put back.
    reverse = np.choose(mask, [0, 7, 3, 1]).astype(np.uint8)
    np.testing.assert_allclose(propagate(model, frames, reverse), dense[:, [0, 3, 2, 1]], atol=1e-4)


def test_first_frame_is_the_aggregated_mask_and_single_frame_video(video, tiny_checkpoint):
    model = load_official_checkpoint(tiny_checkpoint, CONFIGS["L0"])
    frames, mask = video
    prob = propagate(model, frames[:1], mask)
    assert prob.shape == (1, 4, *mask.shape)
    np.testing.assert_array_equal(prob[0].argmax(0), mask)
    np.testing.assert_allclose(prob.sum(1), 1.0, atol=1e-6)


def test_bad_input(tiny_checkpoint):
    model = load_official_checkpoint(tiny_checkpoint, CONFIGS["L0"])
    with pytest.raises(InputError, match="differs"):
        propagate(model, np.zeros((2, 32, 32, 3), np.uint8), np.ones((32, 16), np.uint8))
