"""Benchmark results: one record per (configuration, backend), derived figures, files.

A result folder holds ``results.json`` (the stamp: host, CPU, GPU, versions, settings,
CPU GEMM peak; and every row with its per-frame times) and ``results.csv`` (the same
rows, scalar fields only). Both are rewritten atomically after every measured row, so
an interrupted sweep leaves a consistent folder with the rows measured so far.

Derived figures (``derive``), per backend:

- ``speedup``: FPS over the FPS of the B (L=0, no token refinement) row;
- ``paper_speedup``: the paper's FPS over the paper's SimVOS-B FPS (4.9);
- ``flop_ratio``: GFLOP/frame of B over GFLOP/frame of the row (> 1: fewer FLOPs), the
  speedup a purely compute-bound runtime would show;
- ``achieved_gflops``: GFLOP/frame x FPS; ``joint_gflops``: the joint decoder's FLOPs
  over its median time;
- ``roofline_fps``: the peak rate over GFLOP/frame, from the GPU's datasheet peak
  (``gpu_peaks.json``) on a GPU, from the CPU's measured float32 GEMM peak on a CPU
  (``roofline_source`` says which); ``roofline_share`` = FPS / roofline FPS.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import write_atomic, write_json_atomic
from .hardware import GpuPeak
from .paper import load_paper_tables

log = logging.getLogger(__name__)

FORMAT = "simvos-bench/1"
JSON_FILE = "results.json"
CSV_FILE = "results.csv"
OK, UNAVAILABLE, FAILED = "ok", "unavailable", "failed"


class ResultsError(InputError):
    """A result folder is missing or unreadable."""


@dataclass
class RowResult:
    """One configuration on one backend: what was run, what it cost, what was measured."""

    label: str
    tables: str  # "2", "3", "2;3", "" (custom grid)
    config: str  # SimVOSConfig.name of the measured configuration
    backbone: str
    layer_index: int
    token_refinement: bool
    kf: int | None
    kb: int | None
    backend: str
    precision: str
    device: str
    height: int
    width: int
    objects: int
    frames: int
    warmup: int
    status: str = OK
    message: str = ""
    gflop: float | None = None
    joint_gflop: float | None = None
    attention_gflop: float | None = None
    linear_gflop: float | None = None
    decoder_gflop: float | None = None
    paper_label: str | None = None
    paper_fps: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    fps: float | None = None
    query_ms: float | None = None
    memory_ms: float | None = None
    joint_ms: float | None = None
    aggregate_ms: float | None = None
    host_ms: float | None = None
    peak_rss_mb: float | None = None
    device_memory_mb: float | None = None
    speedup: float | None = None
    paper_speedup: float | None = None
    flop_ratio: float | None = None
    achieved_gflops: float | None = None
    joint_gflops: float | None = None
    roofline_fps: float | None = None
    roofline_share: float | None = None
    roofline_source: str | None = None
    step_ms: list[float] = field(default_factory=list)  # per measured frame of the kept pass; JSON only
    pass_medians_ms: list[float] = field(default_factory=list)  # median of every pass, in order; JSON only

    @property
    def ok(self) -> bool:
        return self.status == OK

    def key(self) -> tuple[str, str]:
        """(label, config): what identifies a row across result folders."""
        return self.label, self.config


SCALARS = tuple(f.name for f in dataclasses.fields(RowResult) if not str(f.type).startswith("list"))
_TYPES = {f.name: str(f.type) for f in dataclasses.fields(RowResult)}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def baseline(rows: list[RowResult], *, measured: bool = True) -> RowResult | None:
    """The B row (L=0, no token refinement, not ViT-L) among ``rows`` of one backend.

    With ``measured`` only a row that was measured (status ok) counts.
    """
    return next((r for r in rows if (r.ok or not measured) and r.layer_index == 0 and not r.token_refinement
                 and r.backbone != "large"), None)


def derive(rows: list[RowResult], *, cpu_peak_gflops: float | None = None,
           gpu_peak: GpuPeak | None = None) -> list[RowResult]:
    """Fill every row's derived figures (see the module docstring); returns new rows."""
    paper_b = next(r.fps for r in load_paper_tables().rows if r.variant == "B")
    out = []
    for row in rows:
        same = [r for r in rows if r.backend == row.backend and r.precision == row.precision]
        base, base_cost = baseline(same), baseline(same, measured=False)
        r = dataclasses.replace(row)
        r.paper_speedup = _ratio(r.paper_fps, paper_b)
        r.flop_ratio = _ratio(base_cost.gflop, r.gflop) if base_cost else None
        r.speedup = _ratio(r.fps, base.fps) if base and r.ok else None
        if r.ok and r.fps is not None and r.gflop is not None:
            r.achieved_gflops = r.gflop * r.fps
            r.joint_gflops = _ratio(r.joint_gflop, None if r.joint_ms is None else r.joint_ms / 1000)
            peak, source = None, None
            if r.device == "cuda" and gpu_peak is not None:
                peak, source = gpu_peak.tflops(r.precision) * 1000, f"{gpu_peak.name} datasheet {r.precision}"
            elif r.device == "cpu" and cpu_peak_gflops:
                peak, source = cpu_peak_gflops, "measured CPU float32 GEMM peak"
            if peak is not None:
                r.roofline_fps, r.roofline_source = peak / r.gflop, source
                r.roofline_share = r.fps / r.roofline_fps
        out.append(r)
    return out


# ---------------------------------------------------------------------- files


def to_csv(rows: list[RowResult]) -> str:
    """The rows' scalar fields as CSV text (empty cells for None)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SCALARS)
    for r in rows:
        writer.writerow(["" if getattr(r, k) is None else getattr(r, k) for k in SCALARS])
    return buf.getvalue()


def _parse(name: str, text: str) -> Any:
    kind = _TYPES[name]
    if text == "" and "None" in kind:
        return None
    if kind.startswith("int"):
        return int(text)
    if kind.startswith("float"):
        return float(text)
    if kind == "bool":
        return text == "True"
    return text


def from_csv(text: str) -> list[RowResult]:
    """Rows read back from ``to_csv`` text (``step_ms`` is not in the CSV and comes back empty)."""
    reader = csv.DictReader(io.StringIO(text))
    return [RowResult(**{k: _parse(k, v) for k, v in rec.items()}) for rec in reader]


class ResultFolder:
    """A result folder being written: ``add`` a row and both files are rewritten atomically.

    Args:
        folder: created (if absent) by the first write.
        meta: the stamp (host, settings, peaks) stored beside the rows in results.json.
        gpu_peak: datasheet peaks of this machine's GPU, for roofline figures.
    """

    def __init__(self, folder: str | Path, meta: dict[str, Any], gpu_peak: GpuPeak | None = None) -> None:
        self.folder = Path(folder)
        self.meta = meta
        self.gpu_peak = gpu_peak
        self.rows: list[RowResult] = []

    @property
    def cpu_peak_gflops(self) -> float | None:
        peak = self.meta.get("cpu_gemm_peak")
        return None if not peak else float(peak["best"])

    def add(self, row: RowResult) -> None:
        """Append ``row`` and write the files."""
        self.rows.append(row)
        self.flush()

    def put(self, row: RowResult) -> None:
        """Add ``row``, or merge it into the row with its key: the faster pass (lower median) is kept
        and every pass's median is remembered in ``pass_medians_ms``; then write the files."""
        old = next((i for i, r in enumerate(self.rows) if r.key() == row.key()), None)
        if old is None:
            self.add(row)
            return
        prev = self.rows[old]
        medians = prev.pass_medians_ms + row.pass_medians_ms
        faster = row.ok and (not prev.ok or (row.median_ms or 0.0) < (prev.median_ms or 0.0))
        keep = row if faster else prev
        keep.pass_medians_ms = medians
        self.rows[old] = keep
        self.flush()

    def derived(self) -> list[RowResult]:
        return derive(self.rows, cpu_peak_gflops=self.cpu_peak_gflops, gpu_peak=self.gpu_peak)

    def flush(self) -> None:
        """Write results.json and results.csv (each atomically) with every row so far."""
        self.folder.mkdir(parents=True, exist_ok=True)
        rows = self.derived()
        doc = {"format": FORMAT, **self.meta, "rows": [dataclasses.asdict(r) for r in rows]}
        write_json_atomic(self.folder / JSON_FILE, doc)
        write_atomic(self.folder / CSV_FILE, to_csv(rows))
        log.info("%s: %d rows written", self.folder, len(rows))


def read_results(folder: str | Path) -> tuple[dict[str, Any], list[RowResult]]:
    """(meta, rows) of a result folder's results.json."""
    path = Path(folder) / JSON_FILE
    if not path.is_file():
        raise ResultsError(f"{folder} has no {JSON_FILE}; give a folder written by simvos-bench "
                           "(benchmarks/results/<date>-<host>-<backend>)")
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT!r}")
        rows = [RowResult(**r) for r in doc.pop("rows")]
    except (ValueError, TypeError, KeyError) as exc:
        raise ResultsError(f"{path} is not a simvos-bench result file ({exc})") from exc
    doc.pop("format")
    return doc, rows


def write_text(folder: str | Path, name: str, text: str) -> Path:
    """Write a text file into a result folder atomically; returns its path."""
    path = Path(folder) / name
    write_atomic(path, text)
    return path
