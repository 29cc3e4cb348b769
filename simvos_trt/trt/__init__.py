"""TensorRT helpers shared by the engine build (``export``) and the runtime: the library (``library``), build
plans (``plan``), engine records and compatibility (``records``), loading engines (``engine``), CUDA (``cuda``).
Nothing here imports TensorRT or CUDA at import time."""
