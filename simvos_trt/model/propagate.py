"""Reference video propagation with the official inference's memory schedule (numpy in, numpy out):
what the runtime and the exported graphs are checked against."""

from __future__ import annotations

import numpy as np
import torch

from .. import processing
from .simvos import SimVOS, soft_aggregate


@torch.inference_mode()
def propagate(model: SimVOS, frames: np.ndarray, first_mask: np.ndarray) -> np.ndarray:
    """(T, K+1, H, W) float32 probabilities (background first, channel i of ``processing.object_ids(first_mask)
    [i - 1]``; frame 0: the first mask's soft aggregation) of ``frames`` (T, H, W, 3) uint8 RGB given the (H, W)
    uint8 index mask of frame 0, on the evaluation-mode ``model``'s device and dtype (aggregation in float32)."""
    processing.check_video(frames, first_mask)
    device = model.patch_embed.proj.weight.device
    dtype = model.patch_embed.proj.weight.dtype  # float16 under precision.to_fp16
    T, H, W, _ = frames.shape
    padding = processing.padding_for(H, W)
    Hp, Wp = padding.padded_size(H, W)
    grid = (Hp // processing.PATCH, Wp // processing.PATCH)
    pos = model.position_embedding(grid)

    def frame_tensor(t: int) -> torch.Tensor:  # (1, 3, Hp, Wp)
        return torch.from_numpy(processing.pad(processing.normalize(frames[t]), padding))[None].to(device, dtype)

    ids = processing.object_ids(first_mask)
    masks = torch.from_numpy(processing.pad(processing.one_hot(first_mask, ids), padding))[:, None].to(device)
    out = np.empty((T, len(ids) + 1, H, W), dtype=np.float32)
    out[0] = processing.unpad(soft_aggregate(masks)[:, 0].cpu().numpy(), padding)

    first = model.encode_memory(frame_tensor(0), masks, pos)  # (K, M, C)
    memories = [first]
    for t in range(1, T):
        frame = frame_tensor(t)
        query = model.encode_query(frame, pos)  # (1, N, C)
        prob = soft_aggregate(model.decode(query, memories, grid).float())  # (K+1, 1, Hp, Wp)
        out[t] = processing.unpad(prob[:, 0].cpu().numpy(), padding)
        if t + 1 < T:
            memories = [first, model.encode_memory(frame, prob[1:], pos)]
    return out
