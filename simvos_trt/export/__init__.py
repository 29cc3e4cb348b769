"""ONNX export (needs torch), TensorRT-readiness checks, and TensorRT engine builds.

Modules: ``graphs`` (the stage wrappers and the graph I/O contract), ``onnx_export``
(the export folder), ``check`` (the TensorRT-readiness checker).
"""
