"""Size and structure of simvos_trt/: lines per package, largest modules, docstring share, exception
classes and the import arrows between packages (for issue 12's before/after figures).

    python tools/code_metrics.py [ROOT]
"""

import ast
import sys
from collections import Counter
from pathlib import Path

ROOT = Path("simvos_trt")


def package_of(module: str) -> str:
    """The package a module belongs to: its folder under simvos_trt/, or "core" for the top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (ROOT / parts[1]).is_dir() else "core"


def main() -> None:
    global ROOT
    root = ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else "simvos_trt")
    lines: Counter[str] = Counter()
    doc = total = 0
    sizes, errors, arrows = [], [], Counter()
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        is_pkg = rel.name == "__init__"
        n = len(text.splitlines())
        total += n
        src = package_of(module + (".__init__" if is_pkg else ""))
        lines[src] += n
        sizes.append((n, str(path)))
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                s = ast.get_docstring(node, clean=False)
                if s is not None and node.body:
                    d = node.body[0]
                    doc += d.end_lineno - d.lineno + 1
            if isinstance(node, ast.ClassDef) and any(
                getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception", "Unavailable"))
                for b in node.bases
            ):
                errors.append(f"{module}.{node.name}")
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")
                    base = base if is_pkg else base[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.startswith("simvos_trt"):
                    names = [target + "." + a.name for a in node.names] if not node.module else [target]
                    for t in names:
                        dst = package_of(t)
                        if dst != src:
                            arrows[(src, dst)] += 1
    print(f"total lines: {total}  docstring lines: {doc} ({100 * doc / total:.0f}%)")
    print("lines per package: " + ", ".join(f"{k} {v}" for k, v in sorted(lines.items())))
    print("largest modules: " + ", ".join(f"{p} {n}" for n, p in sorted(sizes, reverse=True)[:5]))
    print(f"exception classes ({len(errors)}): " + ", ".join(errors))
    print(f"import arrows between packages ({len(arrows)}):")
    for (a, b), k in sorted(arrows.items()):
        back = " <->" if (b, a) in arrows else ""
        print(f"  {a} -> {b} ({k}){back}")


if __name__ == "__main__":
    main()
