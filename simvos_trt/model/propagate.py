"""Reference video propagation (numpy in, numpy out): the official inference's memory schedule, extended to
objects that join, get corrected or leave at any frame (docs/runtime.md, "Objects over time"). What the
runtime and the exported graphs are checked against."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from .. import processing
from .simvos import SimVOS, soft_aggregate


@torch.inference_mode()
def propagate(model: SimVOS, frames: np.ndarray, masks: np.ndarray | Mapping[int, np.ndarray],
              removals: Mapping[int, Iterable[int]] | None = None) -> np.ndarray:
    """(T, K+1, H, W) float32 probabilities of ``frames`` (T, H, W, 3) uint8 RGB, background first, then one
    channel per object id ever annotated, in increasing id order (0 where the object is not alive).

    ``masks`` is frame 0's (H, W) uint8 index mask, or a mapping frame index -> index mask (frame 0 included):
    a mask's ids join there or, if alive, are corrected (their reference memory becomes that frame's); its 0
    pixels state nothing. ``removals`` maps a frame index to the ids removed before that frame. Runs on the
    evaluation-mode ``model``'s device and dtype (aggregation in float32)."""
    annotations = processing.check_annotations(frames, masks)
    removed = processing.check_removals(annotations, removals or {}, len(frames))
    device = model.patch_embed.proj.weight.device
    dtype = model.patch_embed.proj.weight.dtype  # float16 under precision.to_fp16
    T, H, W, _ = frames.shape
    padding = processing.padding_for(H, W)
    Hp, Wp = padding.padded_size(H, W)
    grid = (Hp // processing.PATCH, Wp // processing.PATCH)
    pos = model.position_embedding(grid)
    every_id = processing.object_ids(np.stack(list(annotations.values())))
    channel = {int(i): c for c, i in enumerate(every_id, start=1)}

    def frame_tensor(t: int) -> torch.Tensor:  # (1, 3, Hp, Wp)
        return torch.from_numpy(processing.pad(processing.normalize(frames[t]), padding))[None].to(device, dtype)

    def planes(index_mask: np.ndarray, ids: list[int]) -> torch.Tensor:  # (len(ids), 1, Hp, Wp) float32 one-hot
        one_hot = processing.one_hot(index_mask, np.array(ids, dtype=np.uint8))
        return torch.from_numpy(processing.pad(one_hot, padding))[:, None].to(device)

    alive: list[int] = []  # the ids alive, increasing
    reference: dict[int, torch.Tensor] = {}  # id -> (1, M, C) memory of its reference frame
    reference_frame: dict[int, int] = {}
    previous: tuple[torch.Tensor, torch.Tensor] | None = None  # the last frame and its (K, 1, Hp, Wp) objects
    out = np.zeros((T, len(every_id) + 1, H, W), dtype=np.float32)
    for t in range(T):
        if removed.get(t):
            keep = [r for r, i in enumerate(alive) if i not in removed[t]]
            alive = [alive[r] for r in keep]
            previous = None if previous is None else (previous[0], previous[1][keep])
        frame = frame_tensor(t)
        prob = None  # (K, 1, Hp, Wp) float32 of the alive objects, decoded
        if alive and t > 0:
            assert previous is not None
            query = model.encode_query(frame, pos)  # (1, N, C)
            prob = decode(model, query, alive, reference, reference_frame, previous, t, pos, grid)
        mask = annotations.get(t)
        if mask is not None:
            stated = [int(i) for i in processing.object_ids(mask)]
            joined = sorted(set(alive) | set(stated))
            objects = torch.zeros((len(joined), 1, Hp, Wp), dtype=torch.float32, device=device)
            if prob is not None:  # propagated objects keep their probabilities where the mask states nothing
                stated_area = processing.pad((mask != 0).astype(np.float32), padding)  # the padding states nothing
                unstated = torch.from_numpy(1 - stated_area).to(device)
                objects[[joined.index(i) for i in alive]] = prob * unstated
            objects[[joined.index(i) for i in stated]] = planes(mask, stated)
            alive, prob = joined, objects
        if not alive:
            out[t, 0] = 1
            previous = None
            continue
        assert prob is not None  # objects are alive: decoded, stated, or both
        aggregated = soft_aggregate(prob)  # (K+1, 1, Hp, Wp)
        out[t, [0, *(channel[i] for i in alive)]] = processing.unpad(aggregated[:, 0].cpu().numpy(), padding)
        if mask is not None:  # the stated objects' reference: this frame and its labels, as a first frame's
            lut = np.array([0, *alive], dtype=np.uint8)
            labels = np.where(mask != 0, mask, lut[out[t, [0, *(channel[i] for i in alive)]].argmax(0)])
            present = [int(i) for i in processing.object_ids(labels)]
            memory = model.encode_memory(frame, planes(labels, present), pos)  # (P, M, C)
            for i in stated:
                reference[i], reference_frame[i] = memory[present.index(i)][None], t
        previous = (frame, aggregated[1:])
    return out


def decode(model: SimVOS, query: torch.Tensor, alive: list[int], reference: dict[int, torch.Tensor],
           reference_frame: dict[int, int], previous: tuple[torch.Tensor, torch.Tensor], t: int,
           pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(K, 1, Hp, Wp) float32 probabilities of the ``alive`` objects at frame ``t``: an object whose reference
    is the previous frame is decoded against it alone (as frame 1 against frame 0), the others against
    [reference, previous frame], the previous frame's memory encoded from its soft-aggregated objects."""
    fresh = [i for i in alive if reference_frame[i] == t - 1]
    settled = [i for i in alive if reference_frame[i] != t - 1]
    prob = torch.empty((len(alive), 1, *previous[1].shape[-2:]), dtype=torch.float32, device=query.device)
    if fresh:
        first = torch.cat([reference[i] for i in fresh])  # (B, M, C)
        prob[[alive.index(i) for i in fresh]] = model.decode(query, [first], grid).float()
    if settled:
        rows = [alive.index(i) for i in settled]
        last = model.encode_memory(previous[0], previous[1], pos)[rows]  # all objects' masks, as token refinement needs
        first = torch.cat([reference[i] for i in settled])
        prob[rows] = model.decode(query, [first, last], grid).float()
    return prob
