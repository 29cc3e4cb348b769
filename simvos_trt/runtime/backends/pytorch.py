"""The torch backend: the stage modules of ``simvos_trt.model.stages`` run eagerly, the reference
for the other backends. torch is imported only when it opens. Design: docs/runtime.md."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError, require
from ...manifest import Manifest, ManifestError, sha256_file
from ...precision import Precision
from .base import Backend, Handle
from .resample import Resample

log = logging.getLogger(__name__)


class TorchBackend(Backend):
    """The PyTorch stage wrappers of ``model`` (a ``SimVOS`` with the export's configuration, on its device;
    default ``load_model(manifest)`` on ``device``); the ONNX files are not read. ``compile``: run each stage
    through ``torch.compile`` with this backend (``inductor``, ``cudagraphs`` to replay CUDA graphs, ``eager``
    to check that a stage traces as one graph); None: eagerly."""

    name = "torch"

    def __init__(self, folder: str | Path, manifest: Manifest, *, model: Any = None,
                 device: str | None = None, compile: str | None = None) -> None:
        super().__init__(folder, manifest)
        self._model, self._device_name, self._compile = model, device, compile
        self._modules: dict[str, Any] = {}
        self._torch: Any = None
        self._device: Any = None

    def _open(self) -> None:
        require("torch", "torch", "The torch backend")
        require("timm", "torch", "The torch backend")
        import torch

        from ...model.stages import stage_modules

        self._torch = torch
        model = self._model if self._model is not None else load_model(self.manifest, self._device_name)
        half = self.manifest.precision == Precision.FP16
        if half and model is self._model:
            model = copy.deepcopy(model)  # the float16 conversion must not touch the caller's model
        if model.config != self.manifest.config:
            raise InputError(f"the model's configuration {model.config} differs from the export's "
                               f"{self.manifest.config}; pass the model that was exported")
        m = self.manifest
        self._device = next(model.parameters()).device
        mods = stage_modules(model, m.height, m.width, m.uint8_input)
        self._modules = {k: mod.to(self._device) for k, mod in mods.items()}
        if half:
            from ...model.precision import to_fp16

            for name, mod in self._modules.items():
                if self.manifest.graphs[name].precision == Precision.FP16:
                    to_fp16(mod)
        if self._compile is not None:
            self._modules = {name: torch.compile(mod, backend=self._compile, dynamic=False, fullgraph=True)
                             for name, mod in self._modules.items()}

    def _close(self) -> None:
        self._modules.clear()

    def _run(self, graph: str, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        entry = self.manifest.graphs[graph]
        with self._torch.inference_mode():  # the wrappers take their inputs in the graph's order
            out = self._modules[graph](*(inputs[t.name] for t in entry.inputs))
        out = out if isinstance(out, tuple) else (out,)
        return dict(zip((t.name for t in entry.outputs), out, strict=True))

    def _resample(self, plan: Resample, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        top, left, h, w = plan.box
        functional = self._torch.nn.functional
        with self._torch.inference_mode():
            crop = self._torch.cat([inputs["background"], inputs["objects"]])[:, :, top : top + h, left : left + w]
            prob = functional.interpolate(crop, size=plan.size, mode="bilinear", align_corners=False)  # (K+1, 1, H, W)
            labels = prob.argmax(0).to(self._torch.uint8)  # (1, H, W), the first maximum
        return {"frame_background": prob[:1], "frame_objects": prob[1:], "labels": labels}

    def to_host(self, handle: Handle) -> np.ndarray:
        return handle.detach().cpu().numpy()

    def from_host(self, array: np.ndarray) -> Handle:
        return self._torch.from_numpy(np.ascontiguousarray(array)).to(self._device)

    def synchronize(self) -> None:
        """Wait for queued CUDA work when the model is on a GPU (CPU execution is synchronous)."""
        if self._device is not None and getattr(self._device, "type", "cpu") == "cuda":
            self._torch.cuda.synchronize(self._device)

    def dtype_and_shape(self, handle: Handle) -> tuple[str, tuple[int, ...]]:
        return str(handle.dtype).removeprefix("torch."), tuple(handle.shape)

    def concat(self, handles: Sequence[Handle]) -> Handle:
        return handles[0] if len(handles) == 1 else self._torch.cat(list(handles), dim=0)

    def take(self, handle: Handle, start: int, stop: int) -> Handle:
        return handle[start:stop]


def load_model(manifest: Manifest, device: str | None = None) -> Any:
    """The exported model rebuilt from the manifest's ``Weights``: an official or MAE checkpoint at its
    recorded path (sha256 checked), or random weights from their seed."""
    from ...model.checkpoint import load_mae_backbone, load_official_checkpoint, random_model

    ck, config = manifest.checkpoint, manifest.config
    kind, path = ck.kind, ck.path
    if kind in ("official", "mae") and path:
        if not Path(path).is_file():
            raise ManifestError(f"the export's checkpoint {path} does not exist here; pass model= to the "
                                "torch backend")
        if ck.sha256 and sha256_file(path) != ck.sha256:
            raise ManifestError(f"{path} is not the checkpoint that was exported (sha256 differs)")
        model = (load_official_checkpoint(path, config) if kind == "official"
                 else load_mae_backbone(path, config, seed=ck.seed or 0))
    elif kind == "random" and ck.seed is not None:
        model = random_model(config, seed=ck.seed)
    else:
        raise InputError(f"cannot rebuild the exported weights from the manifest's checkpoint record {ck} "
                           "(it needs an official or MAE checkpoint's path, or random weights' seed); pass "
                           "model= to the torch backend, or use the onnxruntime backend")
    log.info("torch backend: %s weights (%s)", kind, path or f"seed {ck.seed}")
    return model.to(device) if device else model
