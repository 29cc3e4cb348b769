"""simvos-trt: SimVOS video object segmentation from PyTorch to ONNX and TensorRT (subpackages, layers and the
dimension letters T, K, B, H, W, h, w, N, M, C, L of every shape comment: docs/design.md)."""

__version__ = "0.1.0"
