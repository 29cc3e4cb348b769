"""simvos-trt: SimVOS video object segmentation from PyTorch to ONNX and TensorRT.

Dimension letters used in every docstring and shape comment:

    T   frames of a video
    K   objects of a video (its first mask's distinct non-zero ids)
    B   objects in one batch (B <= K; the engine's object axis)
    H,W pixels of a (padded) frame, multiples of the patch size 16
    h,w token grid, H // 16 and W // 16
    N   tokens of one frame, h * w
    M   memory tokens of one frame: Kf + Kb with token refinement, N without
    C   channels of the ViT (192 tiny, 768 base, 1024 large)
    L   the layer index: blocks[0:L] run per frame, blocks[L:] jointly

Subpackages: ``model`` (PyTorch reference, needs torch and timm), ``export``
(ONNX graphs and TensorRT engines), ``runtime`` (streaming segmenter, no torch),
``bench``, ``eval``, ``cli``.
"""

__version__ = "0.1.0"
