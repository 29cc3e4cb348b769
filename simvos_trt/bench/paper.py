"""The SimVOS paper's reference speed and accuracy (Tables 2 and 3) as typed rows.

The data ship with the package (``simvos_trt/data/paper_tables.json``; a copy for
readers sits in ``benchmarks/``). Each number records where it was taken from.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..config import SimVOSConfig

_RESOURCE = "data/paper_tables.json"


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Table 2 or 3.

    Attributes:
        table: 2 (layer index L, with and without token refinement) or 3 (Kf, Kb at L=4).
        label: the row as a reader would name it, e.g. ``L=4 + TR 256/256``.
        variant: the preset this row is (``B``, ``L``, ``BS``), or None.
        kf, kb: prototypes per memory frame; None without token refinement.
        fps: frames per second on an A100 (DAVIS-2017 val, 480p), as the paper reports.
        jf: J&F (percent) of this row, None where no source at hand gives it.
        fps_source, jf_source: where the numbers were taken from.
    """

    table: int
    label: str
    variant: str | None
    backbone: str
    layer_index: int
    token_refinement: bool
    kf: int | None
    kb: int | None
    fps: float
    fps_source: str
    jf: float | None
    jf_source: str | None

    def config(self) -> SimVOSConfig:
        """The model configuration of this row."""
        config = SimVOSConfig(backbone=self.backbone, layer_index=self.layer_index,
                              token_refinement=self.token_refinement)
        if self.kf is not None and self.kb is not None:
            config = dataclasses.replace(config, kf=self.kf, kb=self.kb)
        return config


@dataclass(frozen=True)
class PaperTables:
    """The paper's identity, measurement setting, notes, and rows (Table 2 first)."""

    title: str
    venue: str
    arxiv: str
    gpu: str
    dataset: str
    resolution: str
    notes: tuple[str, ...]
    rows: tuple[PaperRow, ...]

    def table(self, number: int) -> tuple[PaperRow, ...]:
        """The rows of Table ``number`` (2 or 3), in the paper's order."""
        if number not in (2, 3):
            raise ValueError(f"number: got {number!r}, expected 2 or 3")
        return tuple(r for r in self.rows if r.table == number)


def _row(d: dict[str, Any]) -> PaperRow:
    return PaperRow(
        table=int(d["table"]), label=str(d["label"]), variant=d["variant"], backbone=str(d["backbone"]),
        layer_index=int(d["layer_index"]), token_refinement=bool(d["token_refinement"]),
        kf=d["kf"], kb=d["kb"], fps=float(d["fps"]), fps_source=str(d["fps_source"]),
        jf=None if d["jf"] is None else float(d["jf"]), jf_source=d["jf_source"],
    )


def load_paper_tables() -> PaperTables:
    """Read the paper's tables shipped with the package."""
    text = resources.files("simvos_trt").joinpath(_RESOURCE).read_text(encoding="utf-8")
    d = json.loads(text)
    return PaperTables(title=d["title"], venue=d["venue"], arxiv=d["arxiv"], gpu=d["gpu"],
                       dataset=d["dataset"], resolution=d["resolution"], notes=tuple(d["notes"]),
                       rows=tuple(_row(r) for r in d["rows"]))
