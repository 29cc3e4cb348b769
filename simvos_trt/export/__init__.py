"""ONNX export (``onnx_export``, needs torch; ``fp16``, ``shapes``), TensorRT-readiness checks (``check``) and
engine builds (``trt_build``). Why they work as they do: README.md here."""
