"""TensorRT helpers shared by the engine build (``export``) and the runtime: ``library``, ``plan``, ``records``
(engine records, compatibility), ``engine`` (loading), ``cuda``; none imports TensorRT or CUDA at import time."""
