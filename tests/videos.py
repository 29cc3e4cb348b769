"""Helpers shared by test folders, importable from any of them by this unique module name (docs/design.md,
"Test helpers"): the small exports' size, a synthetic video, and whether TensorRT and a GPU are here."""

from __future__ import annotations

import numpy as np

#: Engine size and object limit of the small exports (tiny ViT, L=1, no token refinement).
SMALL = (32, 48)
SMALL_MAX_OBJECTS = 2


def gpu_missing() -> str | None:
    """Why the TensorRT runtime cannot run here (a skip reason), or None when TensorRT and a GPU are here."""
    from simvos_trt.errors import DeviceUnavailableError, MissingDependencyError
    from simvos_trt.runtime.backends.trt import require_runtime

    try:
        require_runtime()
    except (MissingDependencyError, DeviceUnavailableError) as exc:
        return f"needs TensorRT and an NVIDIA GPU ({exc})"
    return None


def moving_video(T: int, H: int, W: int, objects: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) uint8 frames of textured boxes drifting right, and the (H, W) first mask (ids 1..K)."""
    g = np.random.default_rng(seed)
    background = g.integers(0, 80, (H, W + T, 3), dtype=np.uint8)
    mask = np.zeros((H, W + T), np.uint8)
    for k in range(objects):
        top, left = (k * H) // (objects + 1), (k * W) // (objects + 2)
        h, w = max(4, H // (objects + 1)), max(4, W // 3)
        box = (slice(top, top + h), slice(T + left, T + left + w))
        background[box] = g.integers(120, 256, (h, w, 3), dtype=np.uint8)
        mask[box] = k + 1
    frames = np.stack([np.ascontiguousarray(background[:, T - t : T - t + W]) for t in range(T)])
    return frames, np.ascontiguousarray(mask[:, T : T + W])
