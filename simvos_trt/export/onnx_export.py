"""Export the stage graphs of a SimVOS model to an export folder, atomically: trace, fold, convert,
stamp and save each graph, then move the finished folder into place (export/README.md)."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from .. import __version__
from ..config import SimVOSConfig
from ..errors import InputError, check_type
from ..io import MANIFEST, Owner, claim_folder, staging_folder, swap_into_place, write_json_atomic
from ..manifest import GRAPH_TENSORS, OBJECTS_AXIS, Graph, GraphEntry, Manifest, TensorSpec, Weights, sha256_file
from ..model.simvos import SimVOS
from ..model.stages import stage_modules
from ..precision import Precision, graph_precision
from .events import GraphExported
from .fp16 import to_float16

log = logging.getLogger(__name__)

MAX_OPSET = 20  # torch's TorchScript exporter and TensorRT 10's ONNX parser (data/trt10_onnx_ops.json)
_PROTOBUF_LIMIT = 1_800_000_000  # stay clear of protobuf's 2 GB limit: use external data beyond


@dataclass(frozen=True)
class ExportSettings:
    height: int = 480
    width: int = 864
    max_objects: int = 8
    opset: int = 17
    uint8_input: bool = True
    precision: Precision = Precision.FP32

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision(self.precision))
        for name in ("height", "width", "max_objects", "opset"):
            check_type(f"--{name.replace('_', '-')}", getattr(self, name), int, "an int")
        check_type("--uint8-input", self.uint8_input, bool, "a bool")
        for name in ("height", "width"):
            if (v := getattr(self, name)) < 16 or v % 16:
                raise InputError(f"--{name}: {v} is not a positive multiple of 16; e.g. 480x864 for 854x480 video")
        if not 1 <= self.max_objects <= 255:
            raise InputError(f"--max-objects: {self.max_objects} is outside 1..255")
        if not 17 <= self.opset <= MAX_OPSET:
            raise InputError(f"--opset: {self.opset} is outside 17..{MAX_OPSET}: TensorRT needs LayerNormalization "
                              f"(opset 17+), and torch's exporter and TensorRT 10's parser stop at {MAX_OPSET}")


def _example_inputs(name: str, model: SimVOS, s: ExportSettings) -> dict[str, torch.Tensor]:
    H, W, C = s.height, s.width, model.config.embed_dim
    B = min(2, s.max_objects)
    N, M = (H // 16) * (W // 16), model.config.memory_tokens((H // 16, W // 16))
    frame = ({"frame": torch.zeros(1, H, W, 3, dtype=torch.uint8), "padding": torch.zeros(4, dtype=torch.int64)}
             if s.uint8_input else {"frame": torch.zeros(1, 3, H, W)})
    g = torch.Generator().manual_seed(0)
    if name == Graph.QUERY_ENCODER:
        return frame
    if name == Graph.MEMORY_ENCODER:
        return {**frame, "masks": torch.rand(B, 1, H, W, generator=g)}
    if name == Graph.AGGREGATE:
        return {"prob": torch.rand(B, 1, H, W, generator=g)}
    mems = {"memory_first": torch.randn(B, M, C, generator=g)}
    if name == Graph.JOINT_DECODER_2MEM:
        mems["memory_prev"] = torch.randn(B, M, C, generator=g)
    return {"query": torch.randn(1, N, C, generator=g), **mems}


_OBJECT_TENSORS = {"masks", "memory", "memory_first", "memory_prev", "prob", "objects"}


def export_graph(module: torch.nn.Module, inputs: dict[str, torch.Tensor], outputs: list[str],
                 path: Path, opset: int) -> tuple[int, dict[str, tuple[int | str, ...]]]:
    """Trace one wrapper to ONNX at ``path``; returns the exported node count and the output shapes of a run
    on ``inputs``, the object axis named."""
    dynamic = {n: {0: OBJECTS_AXIS} for n in [*inputs, *outputs] if n in _OBJECT_TENSORS}
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(inputs.values()), str(path), input_names=list(inputs),
                          output_names=outputs, dynamic_axes=dynamic, opset_version=opset,
                          dynamo=False, do_constant_folding=True)
        result = module(*inputs.values())
    result = result if isinstance(result, tuple) else (result,)
    shapes = {n: ((OBJECTS_AXIS, *t.shape[1:]) if n in _OBJECT_TENSORS else tuple(t.shape))
              for n, t in zip(outputs, result, strict=True)}
    return len(onnx.load(str(path), load_external_data=False).graph.node), shapes


def fold_and_clean(path: Path, output_shapes: dict[str, tuple[int | str, ...]],
                   precision: Precision = Precision.FP32) -> onnx.ModelProto:
    """Constant folding, dead-node removal, topological sort (onnx-graphsurgeon), the float16 pass for FP16
    graphs, then static shapes: the outputs' known ones, the rest by symbolic inference (export/README.md)."""
    import onnx_graphsurgeon as gs

    from .shapes import infer_symbolic_shapes

    graph = gs.import_onnx(onnx.load(str(path)))
    graph.fold_constants().cleanup().toposort()
    model = gs.export_onnx(graph)
    del model.graph.value_info[:]
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        for d, v in zip(dims, output_shapes[out.name], strict=True):  # dim_param and dim_value: a oneof
            setattr(d, "dim_param" if isinstance(v, str) else "dim_value", v)
    if precision == Precision.FP16:
        model = to_float16(model)
    return infer_symbolic_shapes(model)


def tensor_specs(values: Any) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(v.name, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)).name,
                            tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)) for v in values)


def save_graph(model: onnx.ModelProto, path: Path, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    if model.ByteSize() > _PROTOBUF_LIMIT:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))


def graph_stamp(config: SimVOSConfig, settings: ExportSettings) -> dict[str, str]:
    """The settings stamped into every graph's ``metadata_props`` (and compared by ``graph_problems``)."""
    return {"simvos_trt.config": json.dumps(config.to_dict()), "simvos_trt.frame_size": f"{settings.height}x"
            f"{settings.width}", "simvos_trt.uint8_input": str(settings.uint8_input).lower(),
            "simvos_trt.precision": settings.precision.value}


def export_folder(model: SimVOS, out: str | Path, settings: ExportSettings, *, checkpoint: Weights,
                  variant: str | None = None, force: bool = False,
                  progress: Callable[[GraphExported], None] | None = None,
                  verify: Callable[[Path], None] | None = None) -> Manifest:
    """Export every stage graph of ``model`` into ``out`` (absent, empty, or with ``force`` an earlier export)
    with its manifest. ``progress`` gets a ``GraphExported`` per graph; ``verify`` gets the finished temporary
    folder before it moves into place: raising there leaves nothing behind."""
    out = Path(out)
    claim_folder(out, Owner("simvos-export"), inputs=[checkpoint.path], force=force, replace=True)
    model = model.eval()
    meta = {**graph_stamp(model.config, settings), "simvos_trt.version": __version__}
    tmp = staging_folder(out)
    try:
        graphs: dict[str, GraphEntry] = {}
        modules = stage_modules(model, settings.height, settings.width, settings.uint8_input)
        for name, module in modules.items():
            t0 = time.perf_counter()
            path = tmp / f"{name}.onnx"
            inputs = _example_inputs(name, model, settings)
            exported, shapes = export_graph(module, inputs, list(GRAPH_TENSORS[name][1]), path, settings.opset)
            precision = graph_precision(name, settings.precision)
            graph = fold_and_clean(path, shapes, precision)
            save_graph(graph, path, {**meta, "simvos_trt.graph": name, "simvos_trt.graph_precision": precision.value})
            graphs[name] = GraphEntry(path.name, sha256_file(path), tensor_specs(graph.graph.input),
                                      tensor_specs(graph.graph.output), exported, len(graph.graph.node),
                                      precision=precision)
            size = sum(f.stat().st_size for f in tmp.glob(f"{name}.onnx*"))
            log.info("exported %s: %d -> %d nodes, %.1f MB", name, exported, len(graph.graph.node), size / 1e6)
            if progress:
                progress(GraphExported(name, time.perf_counter() - t0, size, exported, len(graph.graph.node)))
        versions = {"simvos_trt": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                    "onnxruntime": __import__("onnxruntime").__version__, "timm": __import__("timm").__version__}
        manifest = Manifest(config=model.config, height=settings.height, width=settings.width,
                            uint8_input=settings.uint8_input, max_objects=settings.max_objects, opset=settings.opset,
                            checkpoint=checkpoint, graphs=graphs, precision=settings.precision,
                            versions=versions, variant=variant,
                            created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
        write_json_atomic(tmp / MANIFEST, manifest.to_dict())
        if verify is not None:
            verify(tmp)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def graph_problems(folder: Path, manifest: Manifest) -> list[str]:
    """Where ``manifest`` disagrees with the graphs of ``folder``: their stamped settings and tensors."""
    stamp = graph_stamp(manifest.config, ExportSettings(manifest.height, manifest.width, manifest.max_objects,
                                                        manifest.opset, manifest.uint8_input, manifest.precision))
    problems = []
    for entry in manifest.graphs.values():
        graph = onnx.load(str(folder / entry.file), load_external_data=False)
        meta = {p.key: p.value for p in graph.metadata_props}
        differ = sorted(k.removeprefix("simvos_trt.") for k, v in stamp.items() if meta.get(k) != v)
        if differ:
            problems.append(f"{entry.file} was exported with other {', '.join(differ)}")
        if (tensor_specs(graph.graph.input), tensor_specs(graph.graph.output)) != (entry.inputs, entry.outputs):
            problems.append(f"{entry.file} has other inputs or outputs than recorded")
    return problems
