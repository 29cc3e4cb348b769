"""simvos-export: export SimVOS to static ONNX graphs with a manifest, checked for TensorRT, then build the engines
where a TensorRT library can. Options override a --recipe, which overrides the defaults.

    simvos-export --variant BS --checkpoint simvos_bs.pth --height 480 --width 864  # without: random weights
    simvos-export --recipe export/bs.json     # or: simvos-export --check engines/bs (re-check an export folder)

Exit codes: 0 done; 1 --check found problems; 2 bad options, input or a failed export; 3 --require-engine and no
engine can be built here; 130 interrupted."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import BACKBONES, PRESETS, SimVOSConfig
from ..errors import DeviceUnavailableError, ExportError, InputError, MissingDependencyError, check_type
from ..io import Owner, claim_folder
from ..manifest import Weights
from ..tables import render
from .common import EXIT_MISSING, EXIT_OK, add_output_options, command_parser, flag, progress_printer, run_command

DEFAULTS: dict[str, Any] = {"variant": "BS", "height": 480, "width": 864, "max_objects": 8, "opset": 17,
                            "uint8_input": True, "seed": 1, "precision": "auto"}
#: Recipe keys and the JSON values they take (null leaves a path unset).
RECIPE_TYPES: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("variant", "backbone", "description", "precision"), (str,)),
    **dict.fromkeys(("out", "checkpoint", "mae"), (str, type(None))),
    **dict.fromkeys(("layer_index", "kf", "kb", "height", "width", "max_objects", "opset", "seed"), (int,)),
    **dict.fromkeys(("token_refinement", "uint8_input", "allow_large"), (bool,))}
_JSON_TYPE = {str: "a string", int: "an integer", bool: "true or false"}
#: Frames above this many tokens (1024x1024; 480x864 has 1,620) need --allow-large: cost grows as tokens squared.
MAX_TOKENS = 4096


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("simvos-export", __doc__)
    g = p.add_argument_group("model")
    g.add_argument("--variant", choices=sorted(PRESETS), help="paper preset: B, L (ViT-B/L, L=0), BS (ViT-B, L=4, "
                   "token refinement 384/384), T (tiny, for tests and CPU benchmarks) [default BS]")
    g.add_argument("--backbone", choices=sorted(BACKBONES), help="override the variant's ViT backbone")
    g.add_argument("--layer-index", type=int, help="override L: blocks[0:L] run per frame")
    flag(g, "--token-refinement", default=None, text="override token refinement (needs L >= 1)")
    g.add_argument("--kf", type=int, help="override the foreground prototypes per memory frame")
    g.add_argument("--kb", type=int, help="override the background prototypes per memory frame")
    w = p.add_argument_group("weights (default: seeded random weights, good for benchmarking only)")
    w.add_argument("--checkpoint", type=Path, help="an official SimVOS checkpoint (.pth) matching the variant")
    w.add_argument("--mae", type=Path, help="a MAE/timm ViT backbone file; the other parts stay random")
    w.add_argument("--seed", type=int, default=None, help="seed of the random weights [default 1]")
    s = p.add_argument_group("graphs")
    s.add_argument("--height", type=int, help="engine frame height, multiple of 16 [default 480]")
    s.add_argument("--width", type=int, help="engine frame width, multiple of 16 [default 864 = 854 padded]")
    s.add_argument("--max-objects", type=int, help="object-batch profile: min 1, opt 2, max this [default 8]")
    s.add_argument("--opset", type=int, help="ONNX opset, >= 17 for native LayerNormalization [default 17]")
    flag(s, "--uint8-input", default=None, text="graphs take uint8 RGB frames (else normalised, padded float32 "
         "ones) [default on]")
    s.add_argument("--precision", choices=("auto", "fp16", "fp32"), help="fp16 graphs (float32 islands: "
                   "docs/precision.md) for TensorRT, fp32, or auto: fp16 where TensorRT is installed [default auto]")
    flag(s, "--allow-large", default=None, text=f"export frames above {MAX_TOKENS} tokens (1024x1024; time and "
         "memory grow with the tokens squared)")
    s.add_argument("--recipe", type=Path, help="a JSON recipe (see export/*.json) with any of the options above")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, help="export folder [default engines/<variant or config name>-<H>x<W>]")
    flag(o, "--force", text="replace an earlier export in --out (never a folder of other files)")
    o.add_argument("--check", type=Path, metavar="DIR",
                   help="only check an existing export folder (files, sha256s, TensorRT readiness) and exit")
    flag(o, "--engines", default=True, text="build the engines after the export where a TensorRT library can "
         "(TensorRT-RTX needs no GPU; see simvos-build)")
    flag(o, "--require-engine", text="exit 3 when engines cannot be built here, instead of printing the "
         "simvos-build command to run where they can")
    add_output_options(o)
    return p


@dataclass(frozen=True)
class ExportOptions:
    """What to export, resolved from the defaults, a recipe and the command line."""

    config: SimVOSConfig
    variant: str  # the preset the configuration starts from
    out: Path
    height: int
    width: int
    max_objects: int
    opset: int
    uint8_input: bool
    precision: str  # auto, fp16 or fp32
    seed: int
    checkpoint: Path | None = None
    mae: Path | None = None
    recipe: Path | None = None
    allow_large: bool = False

    @property
    def preset_name(self) -> str | None:
        """The variant's name when the configuration is its preset unchanged, else None."""
        return self.variant if self.config == PRESETS[self.variant] else None


def resolve(args: argparse.Namespace) -> ExportOptions:
    """Merge built-in defaults < recipe < explicit options."""
    merged = dict(DEFAULTS)
    if args.recipe is not None:
        merged.update(read_recipe(args.recipe))
        merged["recipe"] = args.recipe
    for key in RECIPE_TYPES.keys() - {"description"}:
        value = getattr(args, key, None)
        if value is not None:
            merged[key] = value
    config = make_config(merged)
    name = merged["variant"] if config == PRESETS[merged["variant"]] else config.name
    out = merged.get("out") or Path("engines") / f"{name}-{merged['height']}x{merged['width']}"
    keys = ("variant", "height", "width", "max_objects", "opset", "uint8_input", "precision", "seed", "checkpoint",
            "mae", "recipe", "allow_large")
    return ExportOptions(config=config, out=out, **{k: merged[k] for k in keys if k in merged})


def read_recipe(path: Path) -> dict[str, Any]:
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise InputError(f"--recipe {path} {what}; give a JSON file (the shipped recipes are in export/)")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(f"--recipe {path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"--recipe {path} holds a JSON {type(data).__name__}, expected an object such as "
                         '{"variant": "BS", "height": 480}')
    unknown = sorted(data.keys() - RECIPE_TYPES.keys())
    if unknown:
        raise InputError(f"--recipe {path}: unknown keys {unknown}; allowed: {sorted(RECIPE_TYPES)}")
    for key, value in data.items():
        check_type(f"--recipe {path}: {key}", value, RECIPE_TYPES[key],
                   " or ".join(_JSON_TYPE.get(t, "null") for t in RECIPE_TYPES[key]))
    if data.get("variant", "BS") not in PRESETS:
        raise InputError(f"--recipe {path}: variant {data['variant']!r} is not one of {', '.join(sorted(PRESETS))}")
    for key in ("checkpoint", "mae", "out"):
        if data.get(key) is not None:
            data[key] = Path(data[key])
    return data


def make_config(opts: dict[str, Any]) -> SimVOSConfig:
    """The preset of ``opts["variant"]`` with the options' overrides."""
    base = PRESETS[opts["variant"]]
    fields = {k: opts[k] for k in ("backbone", "layer_index", "token_refinement", "kf", "kb") if k in opts}
    if "layer_index" in fields and fields["layer_index"] == 0 and "token_refinement" not in fields:
        fields["token_refinement"] = False
    try:
        return SimVOSConfig(**{**base.to_dict(), "train_grid": base.train_grid, **fields})
    except ValueError as exc:
        raise InputError(f"invalid model settings: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    return run_command("simvos-export", build_parser().parse_args(argv), run,
                       interrupted="interrupted; nothing was written")


def run(args: argparse.Namespace) -> int:
    """Check a folder, or export (then build the engines where a library can)."""
    if args.check is not None:
        return run_check(args.check, as_json=args.json)
    opts = resolve(args)
    run_export(opts, force=args.force, as_json=args.json)
    return build_engines_here(opts, args)


def run_export(opts: ExportOptions, *, force: bool, as_json: bool) -> None:
    from ..export.events import GraphExported
    from ..export.onnx_export import ExportSettings, export_folder

    config, out = opts.config, opts.out
    settings = ExportSettings(opts.height, opts.width, opts.max_objects, opts.opset, opts.uint8_input,
                              resolve_precision(opts.precision))
    if opts.checkpoint and opts.mae:
        raise InputError("give either --checkpoint or --mae, not both")
    inputs = [opts.recipe, opts.checkpoint, opts.mae]
    check_cost(config, settings, opts.allow_large)
    claim_folder(out, Owner("simvos-export"), inputs=inputs, force=force, replace=True)  # before the slow part
    say = progress_printer(quiet=as_json)
    t0 = time.perf_counter()
    tr = f"{config.kf}/{config.kb}" if config.token_refinement else "off"
    say(f"simvos-export: {config.name} ({config.backbone} ViT, L={config.layer_index}, token refinement {tr}) at "
        f"{settings.height}x{settings.width}, objects 1..{settings.max_objects}, opset {settings.opset}, "
        f"{settings.precision.value} graphs")
    model, weights = load_model(opts, config, say)
    say(f"[2/3] exporting graphs to {out}")
    rows: list[dict[str, Any]] = []

    def progress(event: GraphExported) -> None:
        rows.append(asdict(event))
        say(f"      {event.name:<20} {event.seconds:6.1f} s  {event.bytes / 1e6:8.1f} MB  "
            f"nodes {event.nodes_exported} -> {event.nodes_final}")

    reports: dict[str, Any] = {}

    def verify(folder: Path) -> None:
        say("[3/3] checking TensorRT readiness")
        reports.update(check_graphs(folder))
        failed = [n for n, r in reports.items() if not r.ok]
        if failed:
            raise ExportError("the exported graphs fail the TensorRT-readiness checks ("
                              + ", ".join(failed) + "):\n" + "\n".join(reports[n].format_violations() for n in failed))

    manifest = export_folder(model, out, settings, checkpoint=weights, variant=opts.preset_name, force=force,
                             progress=progress, verify=verify)
    if as_json:
        print(json.dumps({"out": str(out), "seconds": time.perf_counter() - t0, "graphs": rows,
                          "manifest": manifest.to_dict()}, indent=1))
    else:
        say(summary_table(reports))
        say(f"done in {time.perf_counter() - t0:.1f} s: {out}/ ({len(rows)} graphs + manifest.json)")


def load_model(opts: ExportOptions, config: SimVOSConfig, say: Callable[[str], None]) -> tuple[Any, Weights]:
    """The model to export and its weights' provenance: a checkpoint, a MAE backbone, or seeded random weights."""
    from ..model.checkpoint import load_mae_backbone, load_official_checkpoint, random_model

    seed = opts.seed
    if opts.checkpoint:
        say(f"[1/3] loading checkpoint {opts.checkpoint}")
        return load_official_checkpoint(opts.checkpoint, config), Weights.from_file("official", opts.checkpoint)
    if opts.mae:
        say(f"[1/3] loading MAE backbone {opts.mae} (mask embedding, token refinement and decoder random)")
        return load_mae_backbone(opts.mae, config, seed=seed), Weights.from_file("mae", opts.mae, seed=seed)
    print("!" * 78 + f"\n!! WARNING: no --checkpoint given: exporting RANDOM weights (seed {seed}).\n"
          "!! The graphs are good for benchmarking only; their masks mean nothing.\n" + "!" * 78, file=sys.stderr)
    say(f"[1/3] building seeded random weights (seed {seed})")
    return random_model(config, seed=seed), Weights("random", seed=seed)


def resolve_precision(choice: str) -> Any:
    """``auto``: FP16 graphs where a TensorRT library is installed (its engines are FP16), else FP32."""
    from ..precision import Precision
    from ..trt.library import installed

    if choice == "auto":
        return Precision.FP16 if installed() else Precision.FP32
    if choice not in {p.value for p in Precision}:
        raise InputError(f"precision {choice!r} is not one of auto, fp16, fp32")
    return Precision(choice)


def check_cost(config: SimVOSConfig, settings: Any, allow_large: bool) -> None:
    """Refuse frames above MAX_TOKENS unless ``allow_large``, with the size of one attention map."""
    tokens = (settings.height // 16) * (settings.width // 16)
    if tokens > MAX_TOKENS and not allow_large:
        joint = tokens + 2 * config.memory_tokens((settings.height // 16, settings.width // 16))
        gib = config.num_heads * joint**2 * 4 / 2**30
        raise InputError(f"{settings.height}x{settings.width} is {tokens} tokens per frame (above {MAX_TOKENS}; "
                         f"480x864 has 1620): one attention map of the joint decoder takes about {gib:.1f} GiB and "
                         "export time grows with the tokens squared; choose a smaller size or pass --allow-large")


def build_engines_here(opts: ExportOptions, args: argparse.Namespace) -> int:
    """Build the engines when a library can build here (TensorRT-RTX needs no GPU); else say how, exit 0 (or 3)."""
    from ..trt.engine import device_here
    from ..trt.library import select_library
    from . import build

    command = f"simvos-build {opts.out}"
    try:
        if not select_library().ahead_of_time:
            device_here()  # TensorRT builds on the GPU it builds for
    except (MissingDependencyError, DeviceUnavailableError) as exc:
        if args.require_engine:
            print(f"simvos-export: error: --require-engine: {exc}\n  then run: {command}", file=sys.stderr)
            return EXIT_MISSING
        note = f"engines not built here ({exc}).\nWhere TensorRT and the GPU are (or TensorRT-RTX), run: {command}"
    else:
        if args.engines or args.require_engine:
            build_args = [str(opts.out)] + (["--json"] if args.json else [])
            return build.run(build.build_parser().parse_args(build_args))  # logging and signals are set up
        note = f"engines not built (--no-engines); build them with: {command}"
    if not args.json:
        print(note)
    return EXIT_OK


def check_graphs(folder: Path) -> dict[str, Any]:
    from ..export.check import check_file

    return {p.stem: check_file(p) for p in sorted(folder.glob("*.onnx"))}


def summary_table(reports: dict[str, Any]) -> str:
    """A row per rule, a column per graph, each cell "ok (items checked)" or "FAIL (violations)"."""
    rules = [c.rule for c in next(iter(reports.values())).checks] if reports else []
    cells = {n: {c.rule: f"ok ({c.checked})" if c.passed else f"FAIL ({len(r.violations_of(c.rule))})"
                 for c in r.checks} for n, r in reports.items()}
    header = ["rule", *(n.replace("joint_decoder_", "decoder_").replace("_encoder", "_enc") for n in reports)]
    return render(header, [[rule, *(cells[n].get(rule, "-") for n in reports)] for rule in rules])


def run_check(folder: Path, *, as_json: bool) -> int:
    from ..export.onnx_export import graph_problems
    from ..manifest import MANIFEST, ManifestError, read_manifest

    manifest = read_manifest(folder, verify=True)
    problems = graph_problems(folder, manifest)
    if problems:
        raise ManifestError(f"{folder}: {MANIFEST} disagrees with the graphs ({'; '.join(problems)}): it was "
                            "edited or belongs to another export; export again")
    reports = {name: r for name, r in check_graphs(folder).items() if name in manifest.graphs}
    missing = sorted(set(manifest.graphs) - set(reports))
    ok = not missing and all(r.ok for r in reports.values())
    if as_json:
        print(json.dumps({"folder": str(folder), "ok": ok, "graphs": {
            n: {"ok": r.ok, "violations": [v.__dict__ for v in r.violations]} for n, r in reports.items()}},
            indent=1, default=str))
    else:
        print(f"simvos-check {folder}: files and sha256s match the manifest")
        print(summary_table(reports))
        for name, r in reports.items():
            if not r.ok:
                print(f"{name}:\n{r.format_violations()}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
