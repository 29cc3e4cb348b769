"""Entry point of the GPU measurement kit (called by run.sh): run every phase, print the report.

    python benchmarks/gpu/kit.py [--dry-run] --seconds 480 --golden tests/data/golden OUTDIR

Exit codes: 0 golden checks passed and rows were measured; 1 a golden check failed or
nothing was measured; 3 no CUDA device (without --dry-run).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kit.py", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for results.json, results.csv, report.txt, fps_vs_L.png")
    parser.add_argument("--dry-run", action="store_true", help="the same phases on a CPU with tiny sizes")
    parser.add_argument("--seconds", type=float, required=True, help="wall-clock budget of this process")
    parser.add_argument("--golden", type=Path, required=True, help="the golden videos (tests/data/golden)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    import torch

    import simvos_trt
    from simvos_trt.bench.gpukit import run_kit
    from simvos_trt.bench.results import read_results

    logging.info("simvos_trt %s from %s", simvos_trt.__version__, Path(simvos_trt.__file__).parent)
    if not args.dry_run and not torch.cuda.is_available():
        print("kit.py: no CUDA device here; use --dry-run on a CPU", file=sys.stderr)
        return 3
    meta = run_kit(args.out, dry_run=args.dry_run, seconds=args.seconds, golden=args.golden)
    print((args.out / "report.txt").read_text())
    if not args.dry_run:
        gpu = re.sub(r"[^a-z0-9]+", "-", str(meta["host"]["gpu"]).lower().removeprefix("nvidia ")).strip("-")
        print(f"commit as benchmarks/results/{meta['host']['date'][:10]}-{gpu}-torch/")
    golden_ok = bool(meta["golden"]) and all(g["passed"] for g in meta["golden"])
    measured = any(r.ok for r in read_results(args.out)[1])
    return 0 if golden_ok and measured else 1


if __name__ == "__main__":
    sys.exit(main())
