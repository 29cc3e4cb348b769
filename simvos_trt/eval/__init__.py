"""DAVIS 2017 evaluation as the official toolkit computes it (``metrics``, ``davis``), running a segmenter
over a DAVIS root (``run``) and engine verification (``engines``)."""
