"""Benchmark harnesses: the analytic cost model (``costs``), FLOPs of ONNX graphs
(``onnx_flops``) and the paper's reference tables (``paper``); the ``simvos-bench`` sweep:
its rows (``sweep``), exports reused by key (``artifacts``), the timing proxy (``proxy``),
per-frame measurement (``measure``), the runner (``runner``), result files (``results``),
text reports (``report``), Figure 5 (``plot``) and the machine's stamp and peaks
(``hardware``); the GPU measurement kit (``gpukit``, run by ``benchmarks/gpu/run.sh``) and
its timed step on fixed device buffers (``stream``)."""
