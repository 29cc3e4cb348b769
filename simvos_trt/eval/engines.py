"""Verify TensorRT engines after a build: every engine against ONNX Runtime (``verify_engines``) and a
video's labels (``video_agreement``); the comparison rules and tolerances: ``README.md`` beside this file."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..manifest import Graph, Precision, read_manifest
from ..tables import render

log = logging.getLogger(__name__)

CHECKS = ("elemwise", "max", "mean", "median", "quantile", "rel_l2")
EPSILON = 2.220446049250313e-16  # Polygraphy's: zeros of the reference, for the relative error
PROBABILITIES = frozenset({"prob", "background", "objects"})


@dataclass(frozen=True)
class Tolerance:
    """When an output matches (README.md); integer outputs need ``min_agreement`` of their elements equal."""

    atol: float = 1e-4
    rtol: float = 1e-3
    check: str = "elemwise"
    quantile: float = 0.99
    min_agreement: float = 0.999

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"check: {self.check!r} is not one of {CHECKS}")
        if self.atol < 0 or self.rtol < 0 or not 0 <= self.min_agreement <= 1 or not 0 <= self.quantile <= 1:
            raise ValueError(f"tolerances must be >= 0 and fractions in [0, 1]: {self}")

    def __str__(self) -> str:
        if self.check == "rel_l2":
            return f"rel_l2 <= {self.rtol:g}"
        return f"{self.check} abs <= {self.atol:g} or rel <= {self.rtol:g}"


def tolerance_for(output: str, dtype: np.dtype[Any], precision: Precision) -> Tolerance:
    """The tolerance of one output of an engine built from a graph of ``precision``."""
    half = precision == Precision.FP16
    if not np.issubdtype(dtype, np.floating):
        return Tolerance(min_agreement=0.98 if half else 0.999)
    if not half:
        return Tolerance()
    if output in PROBABILITIES:
        return Tolerance(atol=0.05, rtol=0.0, check="max")
    return Tolerance(atol=0.0, rtol=2e-2, check="rel_l2")


@dataclass(frozen=True)
class TensorCheck:
    """One output of one engine run compared with ONNX Runtime."""

    graph: str
    output: str
    objects: int
    shape: tuple[int, ...]
    tolerance: Tolerance
    passed: bool
    excess: float  # the factor by which the tolerance is exceeded (<= 1 passes), which ranks failures
    max_abs: float = 0.0
    max_rel: float = 0.0
    mean_abs: float = 0.0
    rel_l2: float = 0.0
    mismatched: float = 0.0  # fraction of elements outside both tolerances (elemwise), or unequal (integers)
    integer: bool = False  # compared for equality (labels)

    @property
    def name(self) -> str:
        return f"{self.graph}.{self.output} ({self.objects} object{'s' if self.objects != 1 else ''})"

    @property
    def tolerance_text(self) -> str:
        if self.integer:
            return f">= {100 * self.tolerance.min_agreement:g} % equal"
        return str(self.tolerance)

    def summary(self) -> str:
        """One line: the errors and the tolerance."""
        if self.integer:
            return f"{self.name}: {100 * (1 - self.mismatched):.3f} % equal, needs {self.tolerance_text}"
        return (f"{self.name}: max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}, rel_l2 {self.rel_l2:.3g}, "
                f"{100 * self.mismatched:.3g} % of elements outside atol and rtol; tolerance {self.tolerance_text}")


_STATISTICS: dict[str, Callable[[np.ndarray], Any]] = {"max": np.max, "mean": np.mean, "median": np.median}


def _ratio(value: float, limit: float) -> float:
    if np.isnan(value):
        return float("inf")
    if limit > 0:
        return value / limit
    return 0.0 if value == 0 else float("inf")


def compare(graph: str, output: str, objects: int, got: np.ndarray, ref: np.ndarray,
            tolerance: Tolerance) -> TensorCheck:
    """Compare one output with its reference (shapes must match; NaN never matches)."""
    make = partial(TensorCheck, graph, output, objects, tuple(ref.shape), tolerance)
    integer = not np.issubdtype(ref.dtype, np.floating)
    if got.shape != ref.shape:
        return make(passed=False, excess=float("inf"), mismatched=1.0, integer=integer)
    if integer:
        unequal = float(np.mean(got != ref)) if ref.size else 0.0
        excess = _ratio(unequal, 1 - tolerance.min_agreement)
        return make(passed=unequal <= 1 - tolerance.min_agreement, excess=excess, mismatched=unequal, integer=True)
    g, r = got.astype(np.float64), ref.astype(np.float64)
    absdiff = np.abs(g - r)
    reldiff = absdiff / np.abs(np.where(r == 0, EPSILON, r))
    outside = (~(absdiff <= tolerance.atol)) & (~(reldiff <= tolerance.rtol))  # NaN counts as outside
    rel_l2 = _ratio(float(np.linalg.norm(g - r)), float(np.linalg.norm(r)))
    if tolerance.check == "rel_l2":
        excess = _ratio(rel_l2, tolerance.rtol)
    elif tolerance.check == "elemwise":
        excess = float("inf") if np.isnan(absdiff).any() else float(np.max(
            np.minimum(absdiff / max(tolerance.atol, EPSILON), reldiff / max(tolerance.rtol, EPSILON)),
            initial=0.0))
    else:
        stat: Callable[[np.ndarray], Any] = _STATISTICS.get(tolerance.check, partial(np.quantile, q=tolerance.quantile))
        a = float(stat(absdiff)) if absdiff.size else 0.0
        q = float(stat(reldiff)) if reldiff.size else 0.0
        excess = min(_ratio(a, tolerance.atol), _ratio(q, tolerance.rtol))
    passed = bool(not outside.any()) if tolerance.check == "elemwise" else excess <= 1.0
    return make(passed=passed, excess=excess, max_abs=float(np.nanmax(absdiff, initial=0.0)),
                max_rel=float(np.nanmax(reldiff, initial=0.0)), rel_l2=rel_l2,
                mean_abs=float(np.mean(absdiff)) if absdiff.size else 0.0,
                mismatched=float(np.mean(outside)) if outside.size else 0.0)


def compare_outputs(graph: str, objects: int, got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray],
                    precision: Precision) -> list[TensorCheck]:
    """Every output of one run against the reference; a missing output fails."""
    return [compare(graph, name, objects, got.get(name, np.empty(0)), ref, tolerance_for(name, ref.dtype, precision))
            for name, ref in want.items()]


@dataclass
class EngineReport:
    """Every output of every engine at each object count, against ONNX Runtime."""

    folder: str
    precision: Precision
    checks: list[TensorCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def worst(self) -> TensorCheck | None:
        """The check furthest beyond its tolerance (the largest ``excess``)."""
        return max(self.checks, key=lambda c: c.excess, default=None)

    def failure(self) -> str | None:
        """None if every output matched, else a message naming the worst tensor."""
        failed = sum(not c.passed for c in self.checks)
        if not failed or self.worst is None:  # a failed check has the largest excess (> 1)
            return None
        return (f"{failed} of {len(self.checks)} engine outputs of {self.folder} ({self.precision}) differ from "
                f"ONNX Runtime beyond tolerance; worst: {self.worst.summary()}")

    def table(self, markdown: bool = False) -> str:
        """The checks as a table for the terminal (or Markdown)."""
        body = [[c.graph, str(c.objects), c.output, f"{c.max_abs:.3g}", f"{c.max_rel:.3g}", f"{c.rel_l2:.3g}",
                 c.tolerance_text, "ok" if c.passed else "FAILED"] for c in self.checks]
        return render(["graph", "objects", "output", "max abs", "max rel", "rel l2", "tolerance", "result"], body,
                      markdown)

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst
        return {"folder": self.folder, "precision": self.precision, "passed": self.passed,
                "failure": self.failure(), "worst": worst.name if worst else None,
                "checks": [{k: None if isinstance(v, float) and not np.isfinite(v) else v  # JSON has no inf, NaN
                            for k, v in asdict(c).items()} | {"shape": list(c.shape)} for c in self.checks]}


@dataclass(frozen=True)
class Agreement:
    """Label agreement of two runs of a video: fraction of equal pixels per frame."""

    per_frame: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_frame)) if self.per_frame else 1.0

    @property
    def lowest(self) -> float:
        return min(self.per_frame, default=1.0)

    @property
    def worst_frame(self) -> int:
        return int(np.argmin(self.per_frame)) if self.per_frame else 0

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "min": self.lowest, "worst_frame": self.worst_frame,
                "frames": len(self.per_frame), "per_frame": list(self.per_frame)}


def label_agreement(got: Sequence[np.ndarray] | np.ndarray, want: Sequence[np.ndarray] | np.ndarray) -> Agreement:
    """Per-frame fraction of equal labels of two label sequences ((T, H, W) each)."""
    if len(got) != len(want):
        raise ValueError(f"label_agreement: {len(got)} frames vs {len(want)}")
    per_frame = []
    for t, (a, b) in enumerate(zip(got, want, strict=True)):
        if np.shape(a) != np.shape(b):
            raise ValueError(f"label_agreement: frame {t} has shape {np.shape(a)} vs {np.shape(b)}")
        per_frame.append(float(np.mean(np.asarray(a) == np.asarray(b))))
    return Agreement(tuple(per_frame))


def graph_inputs(folder: Path, objects: int, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Random inputs per graph; the decoders get the encoders' outputs (ONNX Runtime) on random frames."""
    m = read_manifest(folder, verify=False)
    rng = np.random.default_rng(seed)
    sessions = _ort_sessions(folder, m, (Graph.QUERY_ENCODER, Graph.MEMORY_ENCODER))
    spec = next(t for t in m.graphs[Graph.QUERY_ENCODER].inputs if t.name == "frame")

    def frame() -> dict[str, np.ndarray]:
        if m.uint8_input:
            return {"frame": rng.integers(0, 256, (1, m.height, m.width, 3), dtype=np.uint8),
                    "padding": np.zeros(4, np.int64)}
        return {"frame": rng.standard_normal((1, 3, m.height, m.width), dtype=np.float32).astype(spec.dtype)}

    frames = [frame() for _ in range(3)]
    masks = [rng.random((objects, 1, m.height, m.width), dtype=np.float32) for _ in range(2)]
    query = sessions[Graph.QUERY_ENCODER].run(["query"], frames[0])[0]
    first, prev = (sessions[Graph.MEMORY_ENCODER].run(["memory"], {**f, "masks": k})[0]
                   for f, k in zip(frames[1:], masks, strict=True))
    return {Graph.QUERY_ENCODER: frames[0], Graph.MEMORY_ENCODER: {**frames[1], "masks": masks[0]},
            Graph.JOINT_DECODER_1MEM: {"query": query, "memory_first": first},
            Graph.JOINT_DECODER_2MEM: {"query": query, "memory_first": first, "memory_prev": prev},
            Graph.AGGREGATE: {"prob": rng.random((objects, 1, m.height, m.width), dtype=np.float32)}}


def _ort_sessions(folder: Path, m: Any, graphs: Sequence[str]) -> dict[str, Any]:
    """ONNX Runtime CPU sessions of ``graphs`` of an export folder."""
    import onnxruntime as ort

    return {g: ort.InferenceSession(str(folder / m.graphs[g].file), providers=["CPUExecutionProvider"])
            for g in graphs}


#: Graphs whose objects are independent (a batch of B runs as B batches of 1); the memory
#: encoder is not (token refinement weighs each object by all objects' masks), nor is ``aggregate``.
PER_OBJECT = frozenset({Graph.JOINT_DECODER_1MEM, Graph.JOINT_DECODER_2MEM})
OBJECT_INPUTS = frozenset({"memory_first", "memory_prev"})


def reference_outputs(session: Any, graph: str, names: list[str], inputs: Mapping[str, np.ndarray]
                      ) -> dict[str, np.ndarray]:
    """ONNX Runtime outputs of ``graph``; the decoders run one object at a time (bounding the memory of
    their attention scores: 9 GB for SimVOS-B at 480x864 and 8 objects), concatenated."""
    objects = next((v.shape[0] for k, v in inputs.items() if k in OBJECT_INPUTS), 1)
    if graph not in PER_OBJECT or objects == 1:
        return dict(zip(names, session.run(names, dict(inputs)), strict=True))
    parts = [session.run(names, {k: v[b : b + 1] if k in OBJECT_INPUTS else v for k, v in inputs.items()})
             for b in range(objects)]
    return {n: np.concatenate([p[i] for p in parts]) for i, n in enumerate(names)}


def verify_engines(folder: str | Path, *, objects: Sequence[int] | None = None,
                   graphs: Sequence[str] | None = None, seed: int = 0, device: int = 0) -> EngineReport:
    """Each engine against its ONNX graph on ONNX Runtime (CPU) at 1 and the maximum objects; needs
    TensorRT and a GPU. A mismatch raises nothing: see ``EngineReport.passed`` / ``failure``."""
    from ..runtime.backends.trt import TensorRTBackend

    folder = Path(folder)
    m = read_manifest(folder, verify=False)
    report = EngineReport(str(folder), m.precision)
    backend = TensorRTBackend(folder, m, device=device, graphs=graphs)
    with backend:
        refs = _ort_sessions(folder, m, backend.engines)
        for n in sorted(set(objects or (1, m.max_objects))):
            for graph, inputs in graph_inputs(folder, n, seed).items():
                if graph not in refs:
                    continue
                want = reference_outputs(refs[graph], graph, [t.name for t in m.graphs[graph].outputs], inputs)
                got = {k: backend.to_host(v) for k, v in backend.run(graph, inputs).items()}
                report.checks += compare_outputs(graph, n, got, want, m.graphs[graph].precision)
                log.info("verified %s at %d objects", graph, n)
    return report


def segment_labels(folder: str | Path, frames: np.ndarray, first_mask: np.ndarray, backend: str,
                   **options: Any) -> list[np.ndarray]:
    """(T, H, W) labels of a (T, H, W, 3) uint8 video from its first mask, by ``backend`` (ONNX Runtime: CPU)."""
    from ..runtime import VideoSegmenter

    if backend == "onnxruntime":
        options.setdefault("providers", ["CPUExecutionProvider"])
    with VideoSegmenter.open(folder, backend, verify=False, **options) as seg:
        return [np.asarray(x) for x in seg.segment(frames, first_mask)]

