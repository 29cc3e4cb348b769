"""Figure 5 of the paper, from measured rows: FPS against the layer index L, with and without
token refinement, one line per backend; beside it the speedup over B against L, measured,
the paper's, and the FLOP ratio.

matplotlib is imported only here (``pip install matplotlib``), with the Agg backend.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .results import RowResult

log = logging.getLogger(__name__)

PLOT_FILE = "fps_vs_L.png"


def _group(r: RowResult) -> str:
    return f"TR {r.kf}/{r.kb}" if r.token_refinement else "no TR"


def _lines(rows: Sequence[RowResult]) -> dict[tuple[str, str], list[RowResult]]:
    """(backend, TR group) -> measured rows sorted by L (the ViT-L row left out)."""
    lines: dict[tuple[str, str], list[RowResult]] = defaultdict(list)
    for r in rows:
        if r.ok and r.backbone != "large":
            lines[(r.backend, _group(r))].append(r)
    return {k: sorted(v, key=lambda r: r.layer_index) for k, v in lines.items()}


def plot_sweep(rows: Sequence[RowResult], path: str | Path, title: str = "") -> Path | None:
    """Write the figure to ``path``; None (and nothing written) when no row was measured.

    Groups measured at two or more L (Table 2's) are drawn as lines; groups at a single
    L (Table 3's Kf/Kb variants) as crosses, with the paper's figure for each.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = _lines(rows)
    if not lines:
        log.info("no measured row to plot")
        return None
    backends = sorted({b for b, _ in lines})
    colours = {b: f"C{i}" for i, b in enumerate(backends)}
    fig, (ax_fps, ax_x) = plt.subplots(1, 2, figsize=(12, 5))
    reference_done: set[str] = set()
    labelled: set[str] = set()
    for (backend, group), pts in sorted(lines.items()):
        L = [r.layer_index for r in pts]
        if len(set(L)) < 2:  # a single point: a Table 3 variant
            first = backend not in labelled
            labelled.add(backend)
            for ax, values in ((ax_fps, [r.fps for r in pts]), (ax_x, [r.speedup for r in pts])):
                ax.plot(L, values, "x", ms=8, color=colours[backend],
                        label=f"{backend}, other Kf/Kb" if first else None)
            paper = [r.paper_speedup for r in pts if r.paper_speedup is not None]
            if paper:
                ax_x.plot(L[: len(paper)], paper, "x", ms=8, color="black",
                          label="paper (A100), other Kf/Kb" if "points" not in reference_done else None)
                reference_done.add("points")
            continue
        style, marker = ("-", "o") if group == "no TR" else ("--", "s")
        kwargs = {"marker": marker, "color": colours[backend], "label": f"{backend}, {group}"}
        ax_fps.plot(L, [r.fps for r in pts], style, **kwargs)
        ax_x.plot(L, [r.speedup for r in pts], style, **kwargs)
        if group not in reference_done:
            reference_done.add(group)
            ax_x.plot(L, [r.flop_ratio for r in pts], style, color="0.6", lw=1, label=f"FLOP ratio, {group}")
            with_paper = [r for r in pts if r.paper_speedup is not None]
            ax_x.plot([r.layer_index for r in with_paper], [r.paper_speedup for r in with_paper], style,
                      marker=marker, color="black", mfc="none", label=f"paper (A100), {group}")
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
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
