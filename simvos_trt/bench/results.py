"""Benchmark results: one ``RowResult`` per (configuration, backend), their derived figures (``derive``),
the result folder (``results.json`` stamped with host, versions, settings and peaks; ``results.csv``, both
rewritten atomically after every row), the text reports, comparisons and Figure 5 (``plot_sweep``)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import write_atomic, write_json_atomic
from ..manifest import Precision
from ..tables import fmt, render
from .hardware import GpuPeak
from .sweep import is_baseline, load_paper_tables

log = logging.getLogger(__name__)

FORMAT = "simvos-bench/1"
JSON_FILE = "results.json"
CSV_FILE = "results.csv"
PLOT_FILE = "fps_vs_L.png"


class RowStatus(StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"  # the backend cannot run here (its library or a GPU is missing)
    FAILED = "failed"


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
    precision: Precision
    device: str
    height: int
    width: int
    objects: int
    frames: int
    warmup: int
    status: RowStatus = RowStatus.OK
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RowResult:
        """A row of results.json, which holds the enums as plain strings."""
        return cls(**{**d, "status": RowStatus(d["status"]), "precision": Precision(d["precision"])})

    @property
    def ok(self) -> bool:
        return self.status == RowStatus.OK

    def key(self) -> tuple[str, str]:
        """(label, config): what identifies a row across result folders."""
        return self.label, self.config


SCALARS = tuple(f.name for f in dataclasses.fields(RowResult) if not str(f.type).startswith("list"))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def derive(rows: list[RowResult], *, cpu_peak_gflops: float | None = None,
           gpu_peak: GpuPeak | None = None) -> list[RowResult]:
    """New rows with the derived figures (defined in ``bench/README.md``): speedup, paper speedup, FLOP ratio,
    achieved GFLOP/s, joint GFLOP/s, roofline FPS (GPU datasheet or measured CPU GEMM peak) and share."""
    paper_b = next(r.fps for r in load_paper_tables().rows if r.variant == "B")
    out = []
    for row in rows:
        same = [r for r in rows if r.backend == row.backend and r.precision == row.precision]
        base = next((r for r in same if r.ok and is_baseline(r)), None)  # the B row, if measured
        base_cost = next((r for r in same if is_baseline(r)), None)
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


def to_csv(rows: list[RowResult]) -> str:
    """The rows' scalar fields as CSV text (empty cells for None)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SCALARS)
    for r in rows:
        writer.writerow(["" if getattr(r, k) is None else getattr(r, k) for k in SCALARS])
    return buf.getvalue()


class ResultFolder:
    """A result folder being written (created by the first write): ``add`` a row and both files are rewritten
    atomically; ``meta`` is the stamp stored beside the rows, ``gpu_peak`` the GPU's peaks for roofline figures."""

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
            return self.add(row)
        prev = self.rows[old]
        faster = row.ok and (not prev.ok or (row.median_ms or 0.0) < (prev.median_ms or 0.0))
        self.rows[old] = dataclasses.replace(row if faster else prev,
                                             pass_medians_ms=prev.pass_medians_ms + row.pass_medians_ms)
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
        raise InputError(f"{folder} has no {JSON_FILE}; give a folder written by simvos-bench "
                         "(benchmarks/results/<date>-<host>-<backend>)")
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT!r}")
        rows = [RowResult.from_dict(r) for r in doc.pop("rows")]
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{path} is not a simvos-bench result file ({exc})") from exc
    doc.pop("format")
    return doc, rows


def dated_name(host: str, what: str, date: _dt.date | None = None) -> str:
    """``<date>-<host>-<what>``, the host name made safe for a path: a result folder's name."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", host)[:40] or "host"
    return f"{(date or _dt.date.today()).isoformat()}-{safe}-{what}"


Column = tuple[str, Callable[[RowResult], Any], str]  # header, value, format


def configuration(r: RowResult) -> str:
    """``label [config]``, e.g. ``L=4 + TR 384/384 [base-L4-tr27x27]``."""
    return f"{r.label} [{r.config}]"


MAIN_COLUMNS: tuple[Column, ...] = (
    ("FPS", lambda r: r.fps, ".2f"), ("p90 ms", lambda r: r.p90_ms, ".1f"), ("speedup", lambda r: r.speedup, ".2f"),
    ("paper FPS", lambda r: r.paper_fps, ".1f"), ("paper x", lambda r: r.paper_speedup, ".2f"),
    ("GFLOP", lambda r: r.gflop, ".1f"), ("FLOP x", lambda r: r.flop_ratio, ".2f"),
    ("GFLOP/s", lambda r: r.achieved_gflops, ".1f"), ("joint GFLOP/s", lambda r: r.joint_gflops, ".1f"),
    ("roofline FPS", lambda r: r.roofline_fps, ".2f"),
    ("share", lambda r: None if r.roofline_share is None else 100 * r.roofline_share, ".1f"))
STAGE_COLUMNS: tuple[Column, ...] = (
    ("step ms", lambda r: r.median_ms, ".1f"), ("query", lambda r: r.query_ms, ".1f"),
    ("memory", lambda r: r.memory_ms, ".1f"), ("joint", lambda r: r.joint_ms, ".1f"),
    ("aggregate", lambda r: r.aggregate_ms, ".1f"), ("host", lambda r: r.host_ms, ".1f"),
    ("joint %", lambda r: None if not r.joint_ms or not r.median_ms else 100 * r.joint_ms / r.median_ms, ".0f"),
    ("RSS MB", lambda r: r.peak_rss_mb, ".0f"), ("device MB", lambda r: r.device_memory_mb, ".0f"))


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
    lines += [table(rows, MAIN_COLUMNS), "", "median per-frame stage times (ms) from the split pass (step ms from the "
              "headline pass):", table(rows, STAGE_COLUMNS), ""]
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
    "Step ms, p90 and FPS: the headline pass, whole steps with nothing inside them timed; stage ms: a separate split",
    "pass that times every graph call (synchronised); host = that pass's step minus its stages.",
    "FPS = 1000 / median step ms; speedup = FPS / FPS of the B (L=0) row; paper x = paper FPS / 4.9 (its B);",
    "FLOP x = GFLOP of B / GFLOP of the row (the speedup if time followed FLOPs); roofline FPS = peak rate / GFLOP",
    "(a GPU's datasheet peak; on a CPU the measured float32 GEMM peak); share = FPS / roofline FPS, in %.",
]


def kit_report(meta: dict[str, Any], rows: list[RowResult]) -> str:
    """The GPU kit's report: stamp, phases, golden checks, FPS per row and mode beside the paper's, every row."""
    host, kit, s, peak = meta["host"], meta["kit"], meta["settings"], meta.get("gpu_peak")
    phases = kit.get("phases", [])
    lines = [f"SimVOS GPU kit{' DRY RUN on a CPU with tiny sizes (no GPU figure)' if kit['dry_run'] else ''}: "
             f"{host.get('gpu') or host.get('cpu')}; torch {host['torch']}, CUDA {host.get('cuda')}; {host['date']}",
             host.get("nvidia_smi") or "",
             f"{s['height']}x{s['width']}, {s['objects']} objects, random weights; float32: {kit['fp32']}; FP16: "
             f"precision.to_fp16; FLOPs: costs.frame_costs; FP16 peak: {peak['name'] if peak else 'unknown GPU'}",
             "", "phases (seconds):",
             render(["phase", "budget", "used", "status", "done", "skipped"],
                    [[p["name"], f"{p['budget_s']:.0f}", f"{p['used_s']:.1f}", p["status"], str(len(p["done"])),
                      str(len(p["skipped"]))] for p in phases]),
             *(f"  skipped in {p['name']}: {why}" for p in phases for why in p["skipped"]),
             "", f"golden videos through propagate on the device, against the official outputs (pass: "
             f"{kit['golden_rule']}):",
             render(["case", "frames", "fp32 max|dp|", "FP16 labels %", "FP16 max|dp|", "passed"],
                    [[g["case"], str(g["frames"]), f"{g['fp32_max_abs_diff']:.1e}",
                      f"{100 * g['fp16_label_agreement']:.2f}", f"{g['fp16_max_abs_diff']:.1e}",
                      "yes" if g["passed"] else "NO"] for g in meta["golden"]]), ""]
    modes = list(dict.fromkeys((r.backend, r.precision) for r in rows if r.ok))
    fps = {(r.key(), r.backend, r.precision): r.fps for r in rows if r.ok}
    header = ["configuration", "paper FPS (A100)", "GFLOP", *(f"{b} {p}" for b, p in modes)]
    body = [[configuration(r), fmt(r.paper_fps, ".1f"), fmt(r.gflop, ".1f"),
             *(fmt(fps.get((r.key(), *m)), ".2f") for m in modes)] for r in {r.key(): r for r in rows}.values()]
    fp16 = peak["fp16_tensor"] * 1000 if peak else None
    columns = (("mode", lambda r: f"{r.backend} {r.precision}", ""), ("steps", lambda r: r.frames, ""),
               ("median ms", lambda r: r.median_ms, ".2f"), ("p90 ms", lambda r: r.p90_ms, ".2f"),
               ("FPS", lambda r: r.fps, ".2f"), ("x B", lambda r: r.speedup, ".2f"),
               ("paper x", lambda r: r.paper_speedup, ".2f"), ("FLOP x", lambda r: r.flop_ratio, ".2f"),
               ("TFLOP/s", lambda r: None if r.achieved_gflops is None else r.achieved_gflops / 1000, ".2f"),
               ("% FP16 peak", lambda r: 100 * r.achieved_gflops / fp16 if fp16 and r.achieved_gflops else None, ".1f"),
               ("peak GPU MiB", lambda r: r.device_memory_mb, ".0f"))
    lines += ["FPS (1000 / median step) per mode:", render(header, body), "", "the same in Markdown:",
              render(header, body, markdown=True), "", "every timed row:", table(rows, columns), "", *STEP_NOTE]
    return "\n".join(lines + [f"failed: {configuration(r)} {r.backend} {r.precision}: {r.message}"
                              for r in rows if not r.ok])


STEP_NOTE = [
    "A step: the uint8 frame uploaded, the previous frame's memory encoded, the query encoded, all objects decoded",
    "as one batch, soft aggregation, the labels to the host; the first frame's memory is cached (DESIGN.md 2).",
    "Step time: the runtime's VideoSession.step (torch backend), wall clock from the host frame to the host labels.",
]


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
    a, b = {r.key(): r for r in rows_a}, {r.key(): r for r in rows_b}

    def measured(r: RowResult | None, name: str) -> float | None:
        return getattr(r, name) if r is not None and r.ok else None

    out = []
    for key in list(a) + [k for k in b if k not in a]:
        row_a, row_b = a.get(key), b.get(key)
        out.append(ComparedRow(f"{key[0]} [{key[1]}]", fps_a=measured(row_a, "fps"), fps_b=measured(row_b, "fps"),
                               speedup_a=measured(row_a, "speedup"), speedup_b=measured(row_b, "speedup")))
    return out


def compare_folders(folder_a: str | Path, folder_b: str | Path) -> tuple[str, list[ComparedRow]]:
    """The comparison table of two result folders (text) and its rows."""
    meta_a, rows_a = read_results(folder_a)
    meta_b, rows_b = read_results(folder_b)
    pairs = compare(rows_a, rows_b)

    def setting_line(meta: dict[str, Any], rows: Sequence[RowResult], folder: str | Path) -> str:
        s, host = meta.get("settings", {}), meta.get("host", {})
        backend = rows[0].backend if rows else "?"
        return (f"{folder}: {backend} {s.get('precision')} at {s.get('height')}x{s.get('width')}, "
                f"{host.get('cpu')}, GPU {host.get('gpu') or 'none'}, {host.get('date')}")

    body = [[p.configuration, fmt(p.fps_a, ".2f"), fmt(p.fps_b, ".2f"), fmt(p.ratio, ".2f"),
             fmt(p.speedup_a, ".2f"), fmt(p.speedup_b, ".2f")] for p in pairs]
    text = "\n".join([f"A = {setting_line(meta_a, rows_a, folder_a)}",
                      f"B = {setting_line(meta_b, rows_b, folder_b)}", "",
                      render(["configuration", "FPS A", "FPS B", "B/A", "speedup A", "speedup B"], body)])
    return text, pairs


def plot_sweep(rows: Sequence[RowResult], path: str | Path, title: str = "") -> Path | None:
    """Write Figure 5 (FPS and speedup against L; groups at a single L, Table 3's, as crosses) to ``path``
    with matplotlib's Agg backend; None (nothing written) when no row was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[tuple[str, str], list[RowResult]] = defaultdict(list)  # (backend, TR group) -> rows sorted by L
    for r in sorted(rows, key=lambda r: r.layer_index):
        if r.ok and r.backbone != "large":  # the ViT-L row left out
            lines[(r.backend, f"TR {r.kf}/{r.kb}" if r.token_refinement else "no TR")].append(r)
    if not lines:
        log.info("no measured row to plot")
        return None
    backends = sorted({b for b, _ in lines})
    colours = {b: f"C{i}" for i, b in enumerate(backends)}
    fig, (ax_fps, ax_x) = plt.subplots(1, 2, figsize=(12, 5))
    labelled: set[str] = set()  # backends with their crosses in the legend
    references: set[str] = set()  # groups (and "points") with their reference lines drawn
    for (backend, group), pts in sorted(lines.items()):
        L, paper = [r.layer_index for r in pts], [r for r in pts if r.paper_speedup is not None]
        single = len(set(L)) < 2  # a single point: a Table 3 variant, drawn as crosses
        if single:
            style, kwargs = "x", {"ms": 8, "label": None if backend in labelled else f"{backend}, other Kf/Kb"}
        else:
            style, marker = ("-", "o") if group == "no TR" else ("--", "s")
            kwargs = {"marker": marker, "label": f"{backend}, {group}"}
        for ax, figure in ((ax_fps, "fps"), (ax_x, "speedup")):
            ax.plot(L, [getattr(r, figure) for r in pts], style, color=colours[backend], **kwargs)
        paper_xy = ([r.layer_index for r in paper], [r.paper_speedup for r in paper])
        if single:
            labelled.add(backend)
            if paper:
                ax_x.plot(*paper_xy, "x", ms=8, color="black",
                          label=None if "points" in references else "paper (A100), other Kf/Kb")
                references.add("points")
        elif group not in references:
            references.add(group)
            ax_x.plot(L, [r.flop_ratio for r in pts], style, color="0.6", lw=1, label=f"FLOP ratio, {group}")
            ax_x.plot(*paper_xy, style, marker=marker, color="black", mfc="none", label=f"paper (A100), {group}")
    ax_fps.set(xlabel="layer index L (blocks run per frame)", ylabel="frames per second (median step)",
               title="FPS against L (cf. paper Fig. 5)")
    ax_x.set(xlabel="layer index L", ylabel="speedup over SimVOS-B (L=0)", title="speedup over B")
    layers = sorted({r.layer_index for pts in lines.values() for r in pts})
    for ax in (ax_fps, ax_x):
        ax.set_xticks(layers)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
