"""A small export folder for the engine-identity tests: tiny ONNX graphs (onnx.helper) and a manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from simvos_trt.config import preset
from simvos_trt.io import write_json_atomic
from simvos_trt.manifest import MANIFEST, GraphEntry, Manifest, TensorSpec, Weights, sha256_file

#: name -> (inputs, outputs, precision); "objects" marks the object axis.
GRAPHS = {
    "query_encoder": ([("frame", "uint8", (1, 32, 48, 3)), ("padding", "int64", (4,))],
                      [("query", "float16", (1, 6, 192))], "fp16"),
    "joint_decoder_1mem": ([("query", "float16", (1, 6, 192)), ("memory_first", "float16", ("objects", 32, 192))],
                           [("prob", "float32", ("objects", 1, 32, 48))], "fp16"),
    "aggregate": ([("prob", "float32", ("objects", 1, 32, 48))],
                  [("objects", "float32", ("objects", 1, 32, 48)), ("labels", "uint8", (1, 32, 48))], "fp32"),
}


def make_export_folder(folder: Path, max_objects: int = 4) -> Path:
    """An export folder whose graph files are placeholders and whose manifest verifies."""
    folder.mkdir(parents=True, exist_ok=True)
    graphs = {}
    for name, (inputs, outputs, precision) in GRAPHS.items():
        path = folder / f"{name}.onnx"
        path.write_bytes(name.encode())
        graphs[name] = GraphEntry(path.name, sha256_file(path), tuple(TensorSpec(*t) for t in inputs),
                                  tuple(TensorSpec(*t) for t in outputs), precision=precision)
    manifest = Manifest(config=preset("T"), height=32, width=48, uint8_input=True, max_objects=max_objects,
                        opset=17, checkpoint=Weights("random", seed=1), graphs=graphs,
                        precision="fp16")
    write_json_atomic(folder / MANIFEST, manifest.to_dict())
    return folder


@pytest.fixture()
def folder(tmp_path) -> Path:
    return make_export_folder(tmp_path / "exp")
