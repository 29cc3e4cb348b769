"""Benchmark harnesses: the analytic cost model (``costs``), FLOPs of ONNX graphs
(``onnx_flops``) and the paper's reference tables (``paper``)."""
