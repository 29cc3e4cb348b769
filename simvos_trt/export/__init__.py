"""ONNX export (needs torch), TensorRT-readiness checks, and TensorRT engine builds.

Modules: ``graphs`` (the stage wrappers and the graph I/O contract), ``onnx_export``
(the export folder), ``fp16`` (the float16 pass), ``check`` (the TensorRT-readiness
checker), ``trt_build`` (the engine build steps, TensorRT or TensorRT-RTX).
"""
