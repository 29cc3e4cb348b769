"""Export folders (and TensorRT engines) for benchmark rows, reused when their key matches.

A row's graphs live in ``<engines>/bench/<config>-<H>x<W>-b<objects>/``. They are reused
when the folder's manifest (checked: files present, sha256s match) records the same
*graph key*: the configuration, frame size, object limit, opset, input kind, precision, the
package version that exported them and the random weights' seed. Anything else (a
missing or broken folder, another version) re-exports them, atomically
(``export_folder`` builds beside the target and renames). TensorRT engines are then
built or reused by ``trt_build.build_engines``, whose own cache key covers the ONNX
file, the build settings, the target GPUs and the TensorRT library and version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import SimVOSConfig
from ..manifest import Manifest, ManifestError, Weights, read_manifest

log = logging.getLogger(__name__)

Progress = Callable[[str, dict[str, Any]], None]
OPSET = 17


@dataclass(frozen=True)
class GraphSpec:
    """What a row's export folder must hold: seeded random weights of ``config`` at H x W."""

    config: SimVOSConfig
    height: int
    width: int
    max_objects: int
    seed: int = 1
    opset: int = OPSET
    uint8_input: bool = True
    precision: str = "fp32"

    def key(self) -> dict[str, Any]:
        """The graph key compared with an existing folder's manifest (``manifest_key``)."""
        return {"config": self.config.to_dict(), "height": self.height, "width": self.width,
                "max_objects": self.max_objects, "opset": self.opset, "uint8_input": self.uint8_input,
                "precision": self.precision, "simvos_trt": __version__,
                "weights": {"kind": "random", "seed": self.seed}}

    def folder(self, engines: str | Path) -> Path:
        size = f"{self.height}x{self.width}"
        return Path(engines) / "bench" / f"{self.config.name}-{size}-b{self.max_objects}-{self.precision}"


def manifest_key(manifest: Manifest) -> dict[str, Any]:
    """The graph key of an existing export, from its manifest."""
    ck = manifest.checkpoint
    return {"config": manifest.config.to_dict(), "height": manifest.height, "width": manifest.width,
            "max_objects": manifest.max_objects, "opset": manifest.opset, "uint8_input": manifest.uint8_input,
            "precision": manifest.precision, "simvos_trt": manifest.versions.get("simvos_trt"),
            "weights": {"kind": ck.kind, "seed": ck.seed}}


def reusable(spec: GraphSpec, folder: Path) -> bool:
    """True if ``folder`` is an intact export with ``spec``'s key."""
    try:
        manifest = read_manifest(folder, verify=True)
    except ManifestError as exc:
        log.info("%s: not reusable (%s)", folder, exc)
        return False
    same = manifest_key(manifest) == spec.key()
    if not same:
        log.info("%s: graph key differs; exporting again", folder)
    return same


def ensure_graphs(spec: GraphSpec, engines: str | Path, progress: Progress | None = None) -> Path:
    """The export folder of ``spec`` under ``engines``: reused if its key matches, exported otherwise.

    ``progress`` gets ("graphs", {"folder", "status": "reused"|"exporting"|"exported", "seconds"})
    and, while exporting, ("graph", info) per graph (``export_folder``'s events).
    """
    folder = spec.folder(engines)
    say = progress or (lambda event, info: None)
    if reusable(spec, folder):
        say("graphs", {"folder": str(folder), "status": "reused", "seconds": 0.0})
        return folder
    from ..export.onnx_export import ExportSettings, export_folder
    from ..model.checkpoint import random_model

    t0 = time.perf_counter()
    say("graphs", {"folder": str(folder), "status": "exporting", "seconds": 0.0})
    model = random_model(spec.config, seed=spec.seed)
    settings = ExportSettings(spec.height, spec.width, spec.max_objects, spec.opset, spec.uint8_input,
                              spec.precision)
    export_folder(model, folder, settings, force=True, progress=say,
                  checkpoint=Weights("random", seed=spec.seed))
    say("graphs", {"folder": str(folder), "status": "exported", "seconds": time.perf_counter() - t0})
    return folder


def ensure_engines(folder: Path, progress: Progress | None = None) -> None:
    """Build (or reuse, by cache key) the TensorRT engines of ``folder``.

    Raises MissingDependencyError / BackendError without TensorRT or a GPU.
    """
    from ..export.trt_build import BuildEvent, build_engines
    from ..trt.plan import BuildSettings

    def forward(event: BuildEvent) -> None:
        if progress:
            progress("engine", {"graph": event.graph, "status": event.status, "seconds": event.seconds})

    build_engines(folder, BuildSettings(), progress=forward)
