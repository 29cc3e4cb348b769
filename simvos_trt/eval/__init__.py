"""DAVIS 2017 evaluation: the toolkit's J and F measures (``metrics``), a scorer of a
folder of predicted PNGs with the toolkit's CSV files (``davis``), running a segmenter
over a DAVIS root, resumably, and comparing two runs (``run``), and a synthetic
DAVIS-layout dataset for tests and demos (``synthetic``). See ``README.md`` here for how
each definition matches the official toolkit.
"""
