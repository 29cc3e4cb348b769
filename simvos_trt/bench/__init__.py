"""Benchmarks: the FLOP model (``costs``), the paper's rows (``sweep``), timing (``measure``), the
``simvos-bench`` sweep (``runner``), result files and reports (``results``), the machine (``hardware``)
and the GPU kit (``gpukit``, run by ``benchmarks/gpu/run.sh``). Design: ``bench/README.md``."""
