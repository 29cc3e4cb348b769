"""What every command shares: logging by --verbose, SIGTERM handled as Ctrl-C, one line per error, exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import DeviceUnavailableError, MissingDependencyError, SimVOSError, describe_error
from ..io import interrupt_on_sigterm

if TYPE_CHECKING:
    from ..batch.cluster import RayPool
    from ..batch.pools import InProcess, Processes
    from ..batch.videos import SegmenterSpec

EXIT_OK, EXIT_ERROR, EXIT_MISSING, EXIT_INTERRUPTED = 0, 2, 3, 130


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default (none for options unset unless given); reflows prose, keeps indented examples."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text  # (zero-argument super() does not work inside the generator)
        return "\n\n".join(p if p.startswith(" ") else fill(p, width, indent) for p in text.split("\n\n"))


def command_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of command ``prog``: its module docstring's first paragraph above the options, the rest
    (examples, exit codes) below them."""
    about, _, more = (doc or "").partition("\n\n")
    return argparse.ArgumentParser(prog=prog, description=about, epilog=more or None, formatter_class=HelpFormatter)


def flag(parser: Any, *names: str, text: str, default: bool | None = False) -> None:
    """A boolean option that also takes ``--no-NAME``."""
    parser.add_argument(*names, action=argparse.BooleanOptionalAction, default=default, help=text)


def add_output_options(parser: Any, *, json: bool = True, progress: bool = False) -> None:
    """The switches commands share: ``--json``, ``--progress/--no-progress``, ``-v/--verbose``."""
    if json:
        flag(parser, "--json", text="print the result as JSON instead of tables")
    if progress:
        flag(parser, "--progress", default=True, text="progress lines on stderr")
    flag(parser, "-v", "--verbose", text="log library details on stderr")


def progress_printer(quiet: bool) -> Callable[[str], None]:
    """A function printing one progress line on stdout (flushed), or nothing when ``quiet`` (``--json``)."""

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    return say


def run_command(prog: str, args: argparse.Namespace, work: Callable[[argparse.Namespace], int], *,
                interrupted: str = "interrupted", missing_exit: int = EXIT_ERROR) -> int:
    """Run ``work(args)`` as command ``prog``: an error becomes one line on stderr and an exit code
    (``missing_exit`` when it cannot run here: a library or the GPU missing; ``EXIT_ERROR`` for every other
    error, a backend that failed while running included), Ctrl-C or SIGTERM prints ``interrupted``."""
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(message)s")
    interrupt_on_sigterm()
    try:
        return work(args)
    except (MissingDependencyError, DeviceUnavailableError) as exc:
        print(f"{prog}: error: {describe_error(exc)}", file=sys.stderr)
        return missing_exit
    except (SimVOSError, OSError) as exc:
        print(f"{prog}: error: {describe_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED


LOCAL_RAY = "local"


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--ray [ADDRESS]`` and ``--ship-export``: where the videos are segmented."""
    g = parser.add_argument_group("workers (many videos at once; each worker opens the export once)")
    g.add_argument("--workers", type=int, metavar="N", help="worker processes on this machine, each with "
                   "cores/N ONNX Runtime threads unless --threads [default: 1, this process]; with --ray, actors "
                   "on the cluster [default there: one per GPU, else one per --threads CPUs]")
    g.add_argument("--ray", nargs="?", const=LOCAL_RAY, metavar="ADDRESS", help="run the workers on a Ray cluster "
                   "(pip install 'simvos-trt[ray]'): its address (host:port, auto, ray://host:port), or none to start "
                   "one on this machine for the run; a worker whose process or node dies has its video redone by "
                   "another; every node must read the inputs at the same paths")
    flag(g, "--ship-export", default=None, text="with --ray: send the export folder to the workers through Ray's "
         "object store (no shared disk needed) instead of opening it by path on every node [default: on with an "
         "ADDRESS, off for a local cluster]")


def check_worker_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit 2 (argparse) on worker options that contradict each other."""
    if args.ship_export is not None and args.ray is None:
        parser.error("--ship-export needs --ray")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers: got {args.workers}, expected at least 1")


def worker_pool(args: argparse.Namespace, spec: SegmenterSpec) -> InProcess | Processes | RayPool:
    """The pool the worker options ask for, over the export ``spec``, not started."""
    from dataclasses import replace

    from ..batch.pools import InProcess, Processes, default_threads

    if args.ray is not None:
        from ..batch.cluster import RayPool

        address = None if args.ray == LOCAL_RAY else args.ray
        ship = args.ship_export if args.ship_export is not None else address is not None
        return RayPool(spec, address, args.workers, ship)
    if args.workers is not None and args.workers > 1:
        return Processes(replace(spec, threads=spec.threads or default_threads(args.workers)), args.workers)
    return InProcess(spec)
