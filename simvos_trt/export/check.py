"""TensorRT-readiness checks for the exported ONNX graphs: ``check_model`` runs every rule of ``RULES`` and
reports one ``Violation`` per offending node or tensor with its fix (rules: simvos_trt/export/README.md)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper
from onnx.external_data_helper import load_external_data_for_model, uses_external_data
from onnx.helper import get_attribute_value

from ..errors import ExportError
from ..manifest import OBJECTS_AXIS

FP16_MAX = 65504.0
TOPK_K_LIMIT = 3840  # TensorRT: K must be less than this
OP_LIST = "trt10_onnx_ops.json"  # in simvos_trt/data/
_EXPRESSION_FUNCTIONS = {"floor", "ceiling", "Max", "Min", "Mod"}  # in symbolic dims (sympy)
_SHAPE_VALUES_MAX = 4096  # initializers up to this size keep their values for shape inference

#: Ops TensorRT may parse but our static graphs must never contain, with the usual cause and fix.
FORBIDDEN_OPS: dict[str, str] = {
    "NonZero": "data-dependent output shape, from boolean-mask indexing `x[m]` or `nonzero()`: use Where/Mul",
    "ScatterND": "usually masked assignment `x[m] = v` (NonZero + ScatterND): write `x = torch.where(m, v, x)`",
    "Compress": "data-dependent output shape (boolean selection): use Where/Mul with the mask",
    "Unique": "data-dependent output shape: not expressible statically",
    "Loop": "control flow (a Python loop over tensor values or a scripted loop): unroll it or batch it",
    "Scan": "control flow: unroll it or batch it",
    "If": "control flow from a value-dependent Python `if`: compute both branches and select with Where",
}
_SEQUENCE_REASON = "sequence/optional types (a list of tensors in a scripted function): use Concat/Split"


@dataclass(frozen=True)
class Check:
    """One rule's row in a report: ``checked`` counts the items the rule inspected."""

    rule: str
    description: str
    passed: bool
    checked: int


@dataclass(frozen=True)
class Violation:
    """One offending node or tensor: ``node`` is the node's name (or ``<model>``, ``<graph input>``...)."""

    rule: str
    node: str
    op_type: str
    message: str


@dataclass
class CheckReport:
    """The result of ``check_model``: one ``Check`` per rule, and every ``Violation`` found."""

    checks: list[Check] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    def violations_of(self, rule: str) -> list[Violation]:
        return [v for v in self.violations if v.rule == rule]

    def format_violations(self) -> str:
        """One line per violation: ``[rule] node (op): message``."""
        if not self.violations:
            return "no violations"
        return "\n".join(f"[{v.rule}] {v.node} ({v.op_type or '-'}): {v.message}" for v in self.violations)


@lru_cache(maxsize=1)
def trt_op_list() -> dict[str, Any]:
    """The TensorRT 10 ONNX-parser op list: ``source``, ``tensorrt_version``, ``opset_range``, ``ops``..."""
    try:
        data: dict[str, Any] = json.loads((resources.files("simvos_trt") / "data" / OP_LIST).read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot read simvos_trt/data/{OP_LIST}: {e}; reinstall the package") from e
    return data


Finding = tuple[str, str, str]  # (node name, op type, message)
_MODEL = ("<model>", "")


def _at(node: onnx.NodeProto | None) -> tuple[str, str]:
    """(name, op type) of a node; an unnamed node is named after its first output."""
    if node is None:
        return ("<graph input>", "")
    return (node.name or f"<{node.op_type} -> {node.output[0] if node.output else '?'}>", node.op_type)


def _walk(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph nested in its nodes' attributes (If/Loop/Scan bodies)."""
    yield graph
    for node in graph.node:
        for a in node.attribute:
            for sub in [a.g] if a.type == AttributeProto.GRAPH else a.graphs:
                yield from _walk(sub)


class _Graph:
    """What the rules look up: nodes (subgraphs included), producers, consumers, constants."""

    def __init__(self, model: onnx.ModelProto, path: Path | None) -> None:
        self.model, self.path = model, path
        graphs = list(_walk(model.graph))
        self.nodes = [n for g in graphs for n in g.node]
        self.initializers = {t.name: t for g in graphs for t in g.initializer}
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in self.nodes for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in self.nodes:
            for i in dict.fromkeys(n.input):
                self.consumers[i].append(n)
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)

    def of_type(self, *ops: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if n.op_type in ops and n.domain in ("", "ai.onnx")]

    def next(self, node: onnx.NodeProto, *ops: str) -> list[onnx.NodeProto]:
        """The consumers of ``node``'s first output whose op type is in ``ops``."""
        return [c for c in self.consumers.get(node.output[0], []) if c.op_type in ops]

    def is_constant(self, name: str) -> bool:
        """An initializer (TensorRT's parser imports these as weights) or a Constant's output."""
        producer = self.producer.get(name)
        return name in self.initializers or (producer is not None and producer.op_type == "Constant")

    def constant_value(self, name: str) -> np.ndarray:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        a = self.producer[name].attribute[0]
        return numpy_helper.to_array(a.t) if a.type == AttributeProto.TENSOR else np.array(get_attribute_value(a))

    def value_source(self, name: str) -> str | None:
        """The first non-constant tensor whose values ``name`` is computed from; None for constants and shapes."""
        stack, seen = [name], set()
        while stack:
            t = stack.pop()
            if not t or t in seen or self.is_constant(t):
                continue
            seen.add(t)
            producer = self.producer.get(t)
            if producer is None:
                return t
            if producer.op_type not in ("Shape", "Size", "ConstantOfShape"):
                stack.extend(producer.input)
        return None

    def source(self, name: str) -> str:
        node, op = _at(self.producer.get(name))
        return f"node {node} ({op})" if op else "a graph input"


def _rule_onnx_checker(g: _Graph) -> tuple[int, list[Finding]]:
    try:
        onnx.checker.check_model(str(g.path) if g.path else g.model, full_check=True)
    except Exception as e:  # the checker raises several C++-bound exception types
        return 1, [(*_MODEL, f"onnx.checker.check_model(full_check=True) failed: {str(e).strip()}; "
                    "fix the export so the graph is valid ONNX")]
    return 1, []


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A weightless copy for shape inference: initializers too large to decide a shape become graph inputs."""
    graph = onnx.GraphProto(name=model.graph.name)
    graph.node.extend(model.graph.node)
    declared = {vi.name for vi in model.graph.input}
    for t in model.graph.initializer:
        if int(np.prod(t.dims)) <= _SHAPE_VALUES_MAX:
            graph.initializer.append(t)
        elif t.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)
    out = onnx.ModelProto(ir_version=model.ir_version, graph=graph)
    out.opset_import.extend(model.opset_import)
    out.functions.extend(model.functions)
    return out


def _infos(graph: onnx.GraphProto) -> dict[str, onnx.ValueInfoProto]:
    return {vi.name: vi for vi in [*graph.value_info, *graph.input, *graph.output]}


def _symbolic_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """onnxruntime's symbolic shape inference, naming dims such as ``objects + 1`` ({} if unavailable)."""
    try:
        from .shapes import infer_symbolic_shapes

        return _infos(infer_symbolic_shapes(model).graph)
    except Exception:  # ImportError (onnxruntime or sympy missing), or incomplete inference
        return {}


def _has_shape(vi: onnx.ValueInfoProto | None) -> bool:
    return vi is not None and vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape")


def _shape_text(vi: onnx.ValueInfoProto) -> str:
    dims = vi.type.tensor_type.shape.dim
    return "(" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else d.dim_param or "?" for d in dims) + ")"


def _shape_problem(vi: onnx.ValueInfoProto | None) -> str | None:
    """What is wrong with one tensor's inferred type, or None: every dim an int or an expression of the object
    batch (``OBJECTS_AXIS``)."""
    if vi is None:
        return "has no inferred type or shape"
    if not vi.type.HasField("tensor_type"):
        return f"is not a tensor ({vi.type.WhichOneof('value')})"
    if not _has_shape(vi):
        return "has unknown rank"
    ok = {OBJECTS_AXIS} | _EXPRESSION_FUNCTIONS
    bad = [i for i, d in enumerate(vi.type.tensor_type.shape.dim) if not d.HasField("dim_value")
           and not (d.dim_param and set(re.findall(r"[A-Za-z_]\w*", d.dim_param)) <= ok)]
    return f"has unknown or non-batch dynamic dims {bad} in shape {_shape_text(vi)}" if bad else None


def _rule_static_shapes(g: _Graph) -> tuple[int, list[Finding]]:
    skeleton = _skeleton(g.model)
    try:
        graph = onnx.shape_inference.infer_shapes(skeleton, strict_mode=True, data_prop=True).graph
    except Exception as e:  # shape inference raises C++-bound exception types
        return 0, [(*_MODEL, f"strict shape inference failed: {str(e).strip()}")]
    infos, inputs = _infos(graph), {vi.name for vi in g.model.graph.input}
    names = [n for n in infos if n not in g.initializers]
    names += [o for n in graph.node for o in n.output if o and o not in infos]
    problems = {n: p for n in names if (p := _shape_problem(infos.get(n)))}
    # Dims ONNX leaves unnamed may be functions of the batch: symbolic inference names them (README.md).
    unnamed = [n for n in problems if n not in inputs and _has_shape(infos.get(n))]
    symbolic = _symbolic_infos(skeleton) if unnamed else {}
    for name in unnamed:
        if _shape_problem(symbolic.get(name)) is None:
            del problems[name]
    out: list[Finding] = []
    for name, problem in problems.items():
        out.append((*_at(g.producer.get(name)), f"tensor '{name}' {problem}; only '{OBJECTS_AXIS}' (the object "
                    "batch) may vary: export with fixed H, W and shape logic that does not depend on values "
                    "(constant K, scales, sizes; no NonZero), then fold constants"))
    return len(names), out


def _rule_supported_ops(g: _Graph) -> tuple[int, list[Finding]]:
    data = trt_op_list()
    ops, version = set(data["ops"]), data["tensorrt_version"]
    lo, hi = data["opset_range"]
    out: list[Finding] = []
    if not lo <= g.opset <= hi:
        out.append((*_MODEL, f"default-domain opset {g.opset} is outside {lo}..{hi}, the range the op list "
                    f"(TensorRT {version}) covers; export with opset 17"))
    for n in g.nodes:
        if n.domain not in ("", "ai.onnx"):
            out.append((*_at(n), f"custom-domain op '{n.domain}::{n.op_type}' needs a TensorRT plugin; "
                        "express it with standard ONNX ops"))
        elif n.op_type not in ops:
            out.append((*_at(n), f"'{n.op_type}' is not supported by TensorRT {version}'s ONNX parser "
                        f"({data['source']}); rewrite that part of the model with supported ops"))
    return len(g.nodes), out


def _rule_forbidden_ops(g: _Graph) -> tuple[int, list[Finding]]:
    out: list[Finding] = []
    for n in g.nodes:
        if n.op_type in FORBIDDEN_OPS:
            out.append((*_at(n), f"{n.op_type}: {FORBIDDEN_OPS[n.op_type]}"))
        elif n.op_type.startswith(("Sequence", "Optional")) or n.op_type.endswith("Sequence"):
            out.append((*_at(n), f"{n.op_type}: {_SEQUENCE_REASON}"))
        elif n.op_type == "ScatterElements" and not g.is_constant(n.input[1]):
            out.append((*_at(n), f"{n.op_type}: scatter with data-dependent indices from {g.source(n.input[1])} "
                        "(one_hot/scatter_ or masked assignment): compare with a constant index range (Equal) and "
                        "select with Where"))
    return len(g.nodes), out


def _rule_topk(g: _Graph) -> tuple[int, list[Finding]]:
    out: list[Finding] = []
    nodes = g.of_type("TopK")
    for n in nodes:
        attrs = {a.name: get_attribute_value(a) for a in n.attribute}
        if attrs.get("sorted", 1) != 1:
            out.append((*_at(n), "sorted = 0; TensorRT needs sorted = 1"))
        if len(n.input) > 1 and not g.is_constant(n.input[1]):
            out.append((*_at(n), f"K ('{n.input[1]}') comes from {g.source(n.input[1])}; TensorRT needs a "
                        "build-time constant: compute k as a Python int, or fold constants"))
            continue
        k = int(g.constant_value(n.input[1]).reshape(-1)[0]) if len(n.input) > 1 else int(attrs.get("k", 0))
        if k >= TOPK_K_LIMIT:
            out.append((*_at(n), f"K = {k}; TensorRT needs K < {TOPK_K_LIMIT}: select fewer, or split it"))
    return len(nodes), out


def _rule_resize(g: _Graph) -> tuple[int, list[Finding]]:
    nodes = g.of_type("Resize")
    roles = {1: "scales"} if g.opset < 11 else {2: "scales", 3: "sizes"}
    out = [(*_at(n), f"{role} ('{n.input[i]}') depends on the values of '{src}' ({g.source(src)}); give "
            "F.interpolate a constant size or scale factor, not one computed from a tensor")
           for n in nodes for i, role in roles.items() if i < len(n.input) and (src := g.value_source(n.input[i]))]
    return len(nodes), out


def _float_constants(g: _Graph) -> Iterator[tuple[str, onnx.NodeProto | None, np.ndarray]]:
    """(tensor name, its Constant-like node or None for an initializer, values) of every float constant."""
    floats = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)
    for name, t in g.initializers.items():
        if t.data_type in floats:
            yield name, None, numpy_helper.to_array(t)
    for n in g.nodes:
        for a in n.attribute:
            if a.type == AttributeProto.TENSOR and a.t.data_type in floats:
                yield n.output[0], n, numpy_helper.to_array(a.t)
            elif n.op_type == "Constant" and a.type in (AttributeProto.FLOAT, AttributeProto.FLOATS):
                yield n.output[0], n, np.asarray(get_attribute_value(a), dtype=np.float32)


def _worst_value(values: np.ndarray) -> float | None:
    """The first non-finite value, else the largest-magnitude one if beyond the fp16 range, else None."""
    flat = values.reshape(-1)
    if flat.size == 0:
        return None
    finite = np.isfinite(flat)
    if not finite.all():
        return float(flat[np.argmin(finite)])
    worst = float(flat[int(np.argmax(np.abs(flat)))])
    return worst if abs(worst) > FP16_MAX else None


def _rule_fp16_range(g: _Graph) -> tuple[int, list[Finding]]:
    out: list[Finding] = []
    count = 0
    for name, node, values in _float_constants(g):
        count += 1
        if (worst := _worst_value(values)) is None:
            continue
        user = node or next(iter(g.consumers.get(name, [])), None)
        where = _at(user) if user else ("<initializer>", "")
        kind = "constant" if node else "initializer"
        out.append((*where, f"{kind} '{name}' (shape {list(values.shape)}) holds {worst}, outside float16's "
                    f"range |v| <= {FP16_MAX:g}: use a finite fill value (e.g. -1e4) with an explicit guard, or "
                    "keep this tensor in float32"))
    return count, out


def _rule_layernorm(g: _Graph) -> tuple[int, list[Finding]]:
    out: list[Finding] = []
    if g.opset < 17:
        out.append((*_MODEL, f"default-domain opset {g.opset} < 17: torch decomposes LayerNorm; export with "
                    "opset >= 17 so it emits LayerNormalization"))
    means = g.of_type("ReduceMean")
    for mean in means:
        squares = [p for s in g.next(mean, "Sub") for p in g.next(s, "Pow", "Mul")]
        variances = [r for p in squares for r in g.next(p, "ReduceMean")]
        if variances:
            out.append((*_at(mean), f"decomposed LayerNorm (ReduceMean -> Sub -> {squares[0].op_type} -> "
                        f"ReduceMean {_at(variances[0])[0]}): export with opset >= 17 and nn.LayerNorm so "
                        "torch emits one LayerNormalization (fused, float32 statistics)"))
    return 1 + len(means), out


def _rule_argmax(g: _Graph) -> tuple[int, list[Finding]]:
    nodes = g.of_type("ArgMax", "ArgMin")
    out = [(*_at(n), "select_last_index = 1: ties must go to the first index, as in the official code; "
            f"use torch.{n.op_type.lower()} on the unflipped tensor")
           for n in nodes if any(a.name == "select_last_index" and a.i != 0 for a in n.attribute)]
    return len(nodes), out


Rule = Callable[[_Graph], tuple[int, list[Finding]]]
RULES: tuple[tuple[str, str, Rule], ...] = (
    ("onnx-checker", "onnx.checker full check passes", _rule_onnx_checker),
    ("static-shapes", "static shapes; only the object batch is dynamic", _rule_static_shapes),
    ("trt-supported-ops", "ops supported by TensorRT 10's ONNX parser", _rule_supported_ops),
    ("no-forbidden-ops", "no data-dependent or control-flow ops", _rule_forbidden_ops),
    ("topk-constant", f"TopK K constant and < {TOPK_K_LIMIT}", _rule_topk),
    ("resize-constant", "Resize scales/sizes independent of values", _rule_resize),
    ("fp16-range", f"float constants finite and |v| <= {FP16_MAX:g}", _rule_fp16_range),
    ("layernorm-native", "opset >= 17, no decomposed LayerNorm", _rule_layernorm),
    ("argmax-first-index", "ArgMax/ArgMin ties to the first index", _rule_argmax),
)


def check_model(model: onnx.ModelProto, path: Path | None = None) -> CheckReport:
    """Run every rule on a model; ``path``: the file of a model over 2 GB (external data)."""
    g = _Graph(model, path)
    report = CheckReport()
    for rule, description, fn in RULES:
        checked, findings = fn(g)
        report.checks.append(Check(rule, description, not findings, checked))
        report.violations.extend(Violation(rule, *f) for f in findings)
    return report


def check_file(path: str | Path) -> CheckReport:
    """Load an ONNX file (and its external data: any size) and run every rule on it; ExportError if unreadable."""
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
        external = any(uses_external_data(t) for t in model.graph.initializer)
        if external:
            load_external_data_for_model(model, str(path.parent))
    except Exception as e:  # onnx.load raises OSError, DecodeError, ValidationError...
        raise ExportError(f"cannot load ONNX file {path}: {e}; check the path, and that its external data "
                          "files sit beside it") from e
    return check_model(model, path if external else None)
