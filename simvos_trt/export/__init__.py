"""ONNX export (needs torch), TensorRT-readiness checks, and TensorRT engine builds.

Modules: ``graphs`` (the stage wrappers and the graph I/O contract), ``onnx_export``
(the export folder), ``check`` (the TensorRT-readiness checker), ``engine_cache``
(engine identity, cache keys, compatibility; pure Python), ``trt_env`` (lazy TensorRT
and CUDA imports, GPU information), ``trt_build`` (the FP16 engine build steps).
"""
