"""Text reports of benchmark results: the per-row table, the stage split, and comparisons.

Pure formatting over ``results.RowResult`` rows (with their derived figures filled by
``results.derive``); the CLI prints what these return.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..tables import fmt, render
from .results import RowResult, read_results

log = logging.getLogger(__name__)

Column = tuple[str, Callable[[RowResult], Any], str]  # header, value, format


def configuration(r: RowResult) -> str:
    """``label [config]``, e.g. ``L=4 + TR 384/384 [base-L4-tr27x27]``."""
    return f"{r.label} [{r.config}]"


MAIN_COLUMNS: tuple[Column, ...] = (
    ("FPS", lambda r: r.fps, ".2f"),
    ("p90 ms", lambda r: r.p90_ms, ".1f"),
    ("speedup", lambda r: r.speedup, ".2f"),
    ("paper FPS", lambda r: r.paper_fps, ".1f"),
    ("paper x", lambda r: r.paper_speedup, ".2f"),
    ("GFLOP", lambda r: r.gflop, ".1f"),
    ("FLOP x", lambda r: r.flop_ratio, ".2f"),
    ("GFLOP/s", lambda r: r.achieved_gflops, ".1f"),
    ("joint GFLOP/s", lambda r: r.joint_gflops, ".1f"),
    ("roofline FPS", lambda r: r.roofline_fps, ".2f"),
    ("share", lambda r: None if r.roofline_share is None else 100 * r.roofline_share, ".1f"),
)
STAGE_COLUMNS: tuple[Column, ...] = (
    ("step ms", lambda r: r.median_ms, ".1f"),
    ("query", lambda r: r.query_ms, ".1f"),
    ("memory", lambda r: r.memory_ms, ".1f"),
    ("joint", lambda r: r.joint_ms, ".1f"),
    ("aggregate", lambda r: r.aggregate_ms, ".1f"),
    ("host", lambda r: r.host_ms, ".1f"),
    ("joint %", lambda r: None if not r.joint_ms or not r.median_ms else 100 * r.joint_ms / r.median_ms, ".0f"),
    ("RSS MB", lambda r: r.peak_rss_mb, ".0f"),
    ("device MB", lambda r: r.device_memory_mb, ".0f"),
)


def table(rows: Sequence[RowResult], columns: Sequence[Column]) -> str:
    """One line per row: the configuration, then ``columns`` ("-" where a value is missing)."""
    header = ["configuration", *(c[0] for c in columns)]
    body = []
    for r in rows:
        cells = [fmt(get(r), spec) for _, get, spec in columns] if r.ok else [r.status] + ["-"] * (len(columns) - 1)
        body.append([configuration(r), *cells])
    return render(header, body)


def format_report(meta: dict[str, Any], rows: Sequence[RowResult]) -> str:
    """The full text report of one result folder (one backend): stamp, tables, notes."""
    s, host = meta.get("settings", {}), meta.get("host", {})
    backend = rows[0].backend if rows else s.get("backend", "?")
    lines = [f"simvos-bench: backend {backend}, precision {s.get('precision')}, {s.get('height')}x{s.get('width')}, "
             f"{s.get('objects')} objects, {s.get('frames')} frames after {s.get('warmup')} warm-up"
             + (f", fastest of {s['repeats']} passes" if s.get("repeats", 1) > 1 else ""),
             f"host {host.get('host')}: {host.get('cpu')}, {host.get('cores', {}).get('usable')} usable cores, "
             f"GPU {host.get('gpu') or 'none'}; {host.get('date')}", ""]
    lines += [table(rows, MAIN_COLUMNS), "", "median per-frame stage times (ms):", table(rows, STAGE_COLUMNS), ""]
    peak = meta.get("cpu_gemm_peak")
    if peak:
        libs = ", ".join(f"{k} {v:.1f} GFLOP/s (n={peak['best_size'][k]})" for k, v in peak["gflops"].items())
        joint = [r.joint_gflops for r in rows if r.ok and r.joint_gflops]
        span = f"; the joint decoder achieves {min(joint):.1f}..{max(joint):.1f} GFLOP/s" if joint else ""
        lines.append(f"CPU float32 GEMM peak: {libs}{span}")
    gpu = meta.get("gpu_peak")
    if gpu:
        lines.append(f"GPU peak ({gpu['name']}): FP16 tensor {gpu['fp16_tensor']} / FP32 {gpu['fp32']} TFLOP/s, "
                     f"{gpu['source']}")
    lines += NOTES
    for message in dict.fromkeys(r.message for r in rows if not r.ok):
        lines.append(f"not measured: {message}")
    return "\n".join(lines)


NOTES = [
    "FPS = 1000 / median step ms; speedup = FPS / FPS of the B (L=0) row; paper x = paper FPS / 4.9 (its B);",
    "FLOP x = GFLOP of B / GFLOP of the row (the speedup if time followed FLOPs); roofline FPS = peak rate / GFLOP",
    "(a GPU's datasheet peak; on a CPU the measured float32 GEMM peak); share = FPS / roofline FPS, in %.",
]


# ---------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class ComparedRow:
    """One configuration in two result folders (None where a folder lacks it or did not measure it)."""

    configuration: str
    fps_a: float | None
    fps_b: float | None
    speedup_a: float | None
    speedup_b: float | None

    @property
    def ratio(self) -> float | None:
        """FPS of B over FPS of A."""
        return None if not self.fps_a or self.fps_b is None else self.fps_b / self.fps_a


def compare(rows_a: Sequence[RowResult], rows_b: Sequence[RowResult]) -> list[ComparedRow]:
    """Pair rows by configuration (label and config name), in A's order then B's extra rows."""
    def fps(r: RowResult | None) -> float | None:
        return r.fps if r is not None and r.ok else None

    def speedup(r: RowResult | None) -> float | None:
        return r.speedup if r is not None and r.ok else None

    a = {r.key(): r for r in rows_a}
    b = {r.key(): r for r in rows_b}
    keys = list(a) + [k for k in b if k not in a]
    return [ComparedRow(f"{k[0]} [{k[1]}]", fps(a.get(k)), fps(b.get(k)), speedup(a.get(k)), speedup(b.get(k)))
            for k in keys]


def compare_folders(folder_a: str | Path, folder_b: str | Path) -> tuple[str, list[ComparedRow]]:
    """The comparison table of two result folders (text) and its rows."""
    meta_a, rows_a = read_results(folder_a)
    meta_b, rows_b = read_results(folder_b)
    pairs = compare(rows_a, rows_b)

    def describe(meta: dict[str, Any], rows: Sequence[RowResult], folder: str | Path) -> str:
        s, host = meta.get("settings", {}), meta.get("host", {})
        backend = rows[0].backend if rows else "?"
        return (f"{folder}: {backend} {s.get('precision')} at {s.get('height')}x{s.get('width')}, "
                f"{host.get('cpu')}, GPU {host.get('gpu') or 'none'}, {host.get('date')}")

    body = [[p.configuration, fmt(p.fps_a, ".2f"), fmt(p.fps_b, ".2f"), fmt(p.ratio, ".2f"),
             fmt(p.speedup_a, ".2f"), fmt(p.speedup_b, ".2f")] for p in pairs]
    text = "\n".join([f"A = {describe(meta_a, rows_a, folder_a)}", f"B = {describe(meta_b, rows_b, folder_b)}", "",
                      render(["configuration", "FPS A", "FPS B", "B/A", "speedup A", "speedup B"], body)])
    return text, pairs
