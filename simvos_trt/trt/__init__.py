"""TensorRT helpers shared by the engine build (``export``) and the runtime: which TensorRT
library is installed, engine identity and compatibility, loading an engine, the CUDA runtime.

Nothing here imports TensorRT or CUDA at import time.
"""
