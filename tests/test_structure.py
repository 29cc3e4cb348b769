"""The package's shape (issue 12, docs/design.md): packages import only the layers below them, modules stay
readable, exception kinds live in errors.py (and ManifestError in manifest.py)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "simvos_trt"
LAYER = {"core": 0, "trt": 1, "model": 1, "runtime": 2, "export": 2, "eval": 3, "serve": 3, "bench": 4, "batch": 4,
         "cli": 5}
MAX_MODULE_LINES = 450
#: Issue 23: the budget for every feature of the 2026-12-06 wave; a guard against bloat, not a target.
MAX_PACKAGE_LINES = 13_000


def package(parts: list[str]) -> str:
    return parts[0] if parts and (ROOT / parts[0]).is_dir() else "core"


def sources() -> list[tuple[list[str], ast.Module, int]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        out.append((list(path.relative_to(ROOT).with_suffix("").parts), ast.parse(text), len(text.splitlines())))
    return out


def imported_packages(parts: list[str], tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:-1][: len(parts) - node.level]
                target = base + (node.module.split(".") if node.module else [])
            elif (node.module or "").startswith("simvos_trt"):
                target = node.module.split(".")[1:]
            else:
                continue
            found |= {package(target or [a.name]) for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {package(a.name.split(".")[1:]) for a in node.names if a.name.startswith("simvos_trt.")}
    return found


def test_packages_import_only_layers_below_them():
    wrong = []
    for parts, tree, _ in sources():
        src = package(parts)
        wrong += [f"{'/'.join(parts)}.py ({src}) imports {dst}" for dst in sorted(imported_packages(parts, tree))
                  if dst != src and LAYER[dst] >= LAYER[src]]
    assert not wrong, "\n".join(wrong)


def test_the_import_check_sees_a_wrong_arrow():
    tree = ast.parse("from ...export.onnx_export import x\nfrom ...errors import y\nfrom . import z\n")
    assert imported_packages(["runtime", "backends", "m"], tree) == {"export", "core", "runtime"}


def test_modules_and_the_package_stay_small():
    files = sources()
    big = [f"{'/'.join(p)}.py: {n} lines" for p, _, n in files if n > MAX_MODULE_LINES]
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"
    total = sum(n for *_, n in files)
    assert total <= MAX_PACKAGE_LINES, f"simvos_trt/ has {total} lines, over the budget of {MAX_PACKAGE_LINES}"


def test_exception_classes_live_in_errors_and_manifest():
    stray = [f"{'/'.join(p)}.py: {node.name}" for p, tree, _ in sources() if p not in (["errors"], ["manifest"])
             for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
             and any(getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception")) for b in node.bases)]
    assert not stray, f"exception classes outside errors.py: {stray}"
