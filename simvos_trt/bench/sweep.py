"""What a benchmark sweeps: the paper's Tables 2 and 3 (typed rows read from
``simvos_trt/data/paper_tables.json``) or a custom grid, mapped to a backbone and frame size.
How rows are mapped (backbone, K scaled to the tokens per frame) is in ``bench/README.md``."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..config import SimVOSConfig
from ..errors import InputError

log = logging.getLogger(__name__)

#: The paper's padded frame size (DAVIS 854x480) and its tokens per frame.
PAPER_SIZE = (480, 864)
PAPER_TOKENS = (480 // 16) * (864 // 16)
REFINEMENT_CHOICES = ("both", "on", "off")


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Table 2 or 3: its configuration, FPS on an A100 and J&F (None where no
    source gives it), each with where it was taken from."""

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
        ks = {"kf": self.kf, "kb": self.kb} if self.kf is not None and self.kb is not None else {}
        return SimVOSConfig(backbone=self.backbone, layer_index=self.layer_index,
                            token_refinement=self.token_refinement, **ks)


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
        return tuple(r for r in self.rows if r.table == number)


def load_paper_tables() -> PaperTables:
    """Read the paper's tables shipped with the package."""
    d = json.loads(resources.files("simvos_trt").joinpath("data/paper_tables.json").read_text(encoding="utf-8"))
    identity = {k: d[k] for k in ("title", "venue", "arxiv", "gpu", "dataset", "resolution")}
    return PaperTables(**identity, notes=tuple(d["notes"]), rows=tuple(PaperRow(**r) for r in d["rows"]))


@dataclass(frozen=True)
class SweepRow:
    """One configuration to measure: the paper's label (or the grid's), the tables it belongs to (none for a
    custom-grid row in neither), the configuration measured (backbone mapped, K scaled) and its paper row."""

    label: str
    tables: tuple[int, ...]
    config: SimVOSConfig
    paper: PaperRow | None


def is_baseline(row: SimVOSConfig | Any) -> bool:
    """Whether ``row`` (a configuration, or a result with its fields) is the B row (L=0, no token refinement,
    not ViT-L) that speedups are measured against."""
    return row.layer_index == 0 and not row.token_refinement and row.backbone != "large"


def scale_k(k: int, tokens: int) -> int:
    """K prototypes at the paper's 1620 tokens per frame, scaled to ``tokens`` (at least 1)."""
    return max(1, round(k * tokens / PAPER_TOKENS))


def map_config(paper: SimVOSConfig, backbone: str, size: tuple[int, int], scale: bool) -> SimVOSConfig | None:
    """The paper's configuration on ``backbone`` at ``size`` (None: the ViT-L row off ``base``)."""
    if paper.backbone == "large" and backbone != "base":
        return None
    config = dataclasses.replace(paper, backbone=paper.backbone if paper.backbone == "large" else backbone)
    if scale and config.token_refinement:
        n = (size[0] // 16) * (size[1] // 16)  # tokens per frame
        config = dataclasses.replace(config, kf=scale_k(paper.kf, n), kb=scale_k(paper.kb, n))
    return config


def table_rows(number: int, backbone: str = "base", size: tuple[int, int] = PAPER_SIZE,
               scale: bool = True) -> list[SweepRow]:
    """The rows of the paper's Table ``number`` (2 or 3), mapped to ``backbone`` and ``size``."""
    if number not in (2, 3):
        raise InputError(f"--table {number}: expected 2 or 3")
    rows = []
    for paper in load_paper_tables().table(number):
        config = map_config(paper.config(), backbone, size, scale)
        if config is None:
            log.info("%s (ViT-L) is left out: it is measured only with backbone base", paper.label)
            continue
        rows.append(SweepRow(paper.label, (number,), config, paper))
    return rows


def grid_rows(layers: Sequence[int], ks: Sequence[tuple[int, int]], refinement: str = "both",
              backbone: str = "tiny", size: tuple[int, int] = PAPER_SIZE, scale: bool = True) -> list[SweepRow]:
    """A custom grid: every L of ``layers`` without token refinement (``refinement`` both or off; L=0 always)
    and/or with each (Kf, Kb) of the paper's terms, scaled like the tables' (``refinement`` both or on)."""
    if refinement not in REFINEMENT_CHOICES:
        raise InputError(f"--refinement {refinement}: expected one of {REFINEMENT_CHOICES}")
    papers: dict[SimVOSConfig, list[PaperRow]] = {}
    for r in load_paper_tables().rows:
        papers.setdefault(r.config(), []).append(r)
    rows = []
    # The paper's rows are ViT-B and ViT-L: a ViT-L grid is checked and labelled against the ViT-L rows.
    paper_backbone, target = ("large", "base") if backbone == "large" else ("base", backbone)
    for L in layers:
        wanted: list[SimVOSConfig] = []
        try:
            if L == 0 or refinement in ("both", "off"):
                wanted.append(SimVOSConfig(backbone=paper_backbone, layer_index=L))
            if L > 0 and refinement in ("both", "on"):
                wanted += [SimVOSConfig(backbone=paper_backbone, layer_index=L, token_refinement=True, kf=kf, kb=kb)
                           for kf, kb in ks]
            mapped = [map_config(c, target, size, scale) for c in wanted]
        except ValueError as exc:
            raise InputError(f"--layers/--k: {exc}") from exc
        for paper_config, config in zip(wanted, mapped, strict=True):
            assert config is not None  # base rows always map
            found = papers.get(paper_config, [])
            paper = found[0] if found else None
            label = paper.label if paper else grid_label(paper_config)
            rows.append(SweepRow(label, tuple(sorted({p.table for p in found})), config, paper))
    return rows


def grid_label(config: SimVOSConfig) -> str:
    """The paper's style of label for a configuration (``L=4 + TR 128/128``)."""
    if config.layer_index == 0 and not config.token_refinement:
        return "SimVOS-B (L=0)"
    tr = f" + TR {config.kf}/{config.kb}" if config.token_refinement else ""
    return f"L={config.layer_index}{tr}"


def build_sweep(groups: Iterable[Sequence[SweepRow]], backbone: str) -> list[SweepRow]:
    """Merge row groups: one row per configuration (tables united), the B baseline first (added if absent)."""
    merged: dict[SimVOSConfig, SweepRow] = {}
    for rows in groups:
        for row in rows:
            old = merged.get(row.config, row)
            merged[row.config] = dataclasses.replace(old, tables=tuple(sorted(set(old.tables) | set(row.tables))))
    if not any(is_baseline(r.config) for r in merged.values()):
        paper = next(r for r in load_paper_tables().rows if r.variant == "B")
        base = SweepRow(paper.label, (paper.table,), dataclasses.replace(paper.config(), backbone=backbone), paper)
        merged = {base.config: base, **merged}
    return sorted(merged.values(), key=lambda r: not is_baseline(r.config))  # stable: the baseline first, then as given


def parse_ks(text: str) -> list[tuple[int, int]]:
    """``384/384,128/128`` -> [(384, 384), (128, 128)]; a single number means Kf = Kb."""
    ks = []
    for item in text.split(","):
        parts = item.strip().split("/")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise InputError(f"--k {text}: {item!r} is not Kf/Kb (e.g. 384/384 or 256/512)") from None
        if len(values) == 1:
            values *= 2
        if len(values) != 2 or min(values) < 1:
            raise InputError(f"--k {text}: {item!r} is not Kf/Kb with positive integers (e.g. 384/384)")
        ks.append((values[0], values[1]))
    return ks
