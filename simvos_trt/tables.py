"""The one text-table formatter: aligned plain text for terminals, or Markdown for reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fmt(value: Any, spec: str = "") -> str:
    """``value`` formatted with ``spec``, "-" for None."""
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def render(header: Sequence[str], body: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """A table: first column left-aligned, the others right-aligned, a rule under the header (or Markdown)."""
    if markdown:
        return "\n".join("| " + " | ".join(r) + " |" for r in [header, ["---"] * len(header), *body])
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        others = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *others])

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body)])
